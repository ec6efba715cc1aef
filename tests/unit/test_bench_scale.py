"""The scale benchmark's bookkeeping (benchmarks/scale): config names -> recipe keys (the agreed
issue-14 names), plan selection, the FLOP count behind MFU, the step/token/RSS probe, and the
README verdicts computed from results.json."""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from tunesmith.config import parse_recipe
from tunesmith.config.training import TrainConfig
from tunesmith.testing import tiny_config

HERE = Path(__file__).resolve().parents[2] / "benchmarks" / "scale"


def _load(name: str):
    sys.path.insert(0, str(HERE))  # run.py imports worker / tables by name
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bench():
    return _load("scale_worker"), _load("run"), _load("scale_tables")


def _args(**kw) -> argparse.Namespace:
    base = dict(batch=8, steps=10, max_length=512, limit=2000, chunk_tokens=512, quick=False,
                cases=None, impls=None, configs=None, repeats=None)  # fmt: skip
    return argparse.Namespace(**{**base, **kw})


def test_config_names(bench):
    worker, _, _ = bench
    assert worker.parse_config("bf16base+ckpt+chunk") == {
        "precision": "bf16", "frozen_dtype": "bf16", "grad_ckpt": True, "chunked_loss": True,
        "packed_attention": True,
    }  # fmt: skip
    assert worker.parse_config("fp32") == {
        "precision": "fp32", "frozen_dtype": "fp32", "grad_ckpt": False, "chunked_loss": False,
        "packed_attention": True,
    }  # fmt: skip
    assert not worker.parse_config("bf16base+nopack_attn")["packed_attention"]
    with pytest.raises(ValueError, match="unknown config"):
        worker.parse_config("fp16+ckpt")


def test_recipe_uses_the_agreed_keys(bench, tmp_path):
    worker, _, _ = bench
    cfg = worker.parse_config("bf16base+ckpt+chunk")
    r = worker.recipe_dict("gemma3_lora", cfg, _args(), tmp_path)
    assert r["model"] == {"name": "gemma3", "dtype": "bf16"}
    assert r["train"]["precision"] == "bf16"
    assert r["train"]["gradient_checkpointing"] is True
    assert r["train"]["loss_chunk_tokens"] == 512
    assert r["data"]["packing"] is True and r["data"]["max_length"] == 512
    plain = worker.recipe_dict("smollm2_full", worker.parse_config("fp32"), _args(), tmp_path)
    assert plain["model"] == "smollm2" and plain["adapter"] is None
    assert "gradient_checkpointing" not in plain["train"]  # defaults left out
    off = worker.recipe_dict(
        "smollm2_lora", worker.parse_config("fp32+nopack_attn"), _args(), tmp_path
    )
    assert off["model"] == {"name": "smollm2", "attn_implementation": "sdpa"}
    assert parse_recipe(off).model_options.attn_implementation == "sdpa"
    parse_recipe(plain)  # valid on every tree


def test_every_planned_recipe_parses(bench, tmp_path):
    worker, run, _ = bench
    fields = TrainConfig.__dataclass_fields__
    if "gradient_checkpointing" not in fields or "loss_chunk_tokens" not in fields:
        pytest.skip("train.gradient_checkpointing / loss_chunk_tokens not in this tree yet")
    for case, _impl, config, _ in run.PLAN:
        parse_recipe(worker.recipe_dict(case, worker.parse_config(config), _args(), tmp_path))


def test_plan_selection(bench):
    _, run, _ = bench
    assert run.build_plan(_args(quick=True)) == run.QUICK_PLAN
    configs = ["fp32", "fp32+chunk", "fp32+nopack_attn"]
    grid = run.build_plan(_args(cases=["gemma3_lora"], configs=configs))
    assert grid == [  # the Trainer has no chunked loss and no choice of attention
        ("gemma3_lora", "tunesmith", "fp32", 1),
        ("gemma3_lora", "trainer", "fp32", 1),
        ("gemma3_lora", "tunesmith", "fp32+chunk", 1),
        ("gemma3_lora", "tunesmith", "fp32+nopack_attn", 1),
    ]
    more = run.build_plan(_args(repeats=5, cases=["smollm2_lora"]))
    assert {reps for *_, reps in more} == {5, 1}  # only the repeated rows change
    assert all(case == "smollm2_lora" for case, *_ in more)
    assert 30 * 60 < run.estimate_s(run.PLAN, 10) < 50 * 60  # the documented ~45 min budget


def test_flop_count_on_a_tied_model(bench):
    worker, _, _ = bench
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(tiny_config("llama", 50, tie_word_embeddings=True))
    total = sum(p.numel() for p in model.parameters())  # the tied head counted once
    lora = {"r": 4, "targets": ["q_proj", "v_proj"]}
    n = worker.count_flop_params(model, lora)
    attn = model.model.layers[0].self_attn
    per_layer = 4 * (attn.q_proj.in_features + attn.q_proj.out_features) + 4 * (
        attn.v_proj.in_features + attn.v_proj.out_features
    )
    assert n["n_trainable"] == 2 * per_layer and n["n_frozen"] == total
    assert n["flops_per_token"] == 6 * n["n_trainable"] + 4 * total
    full = worker.count_flop_params(model, None)
    assert full == {"n_trainable": total, "n_frozen": 0, "flops_per_token": 6 * total}


def test_probe_times_steps_after_the_first(bench):
    worker, _, _ = bench
    emb = torch.nn.Embedding(10, 4)
    opt = torch.optim.SGD(emb.parameters(), lr=0.1)
    probe = worker.Probe(steps=3)
    probe.watch()
    try:
        for _ in range(3):
            emb(torch.zeros(2, 5, dtype=torch.long)).sum().backward()
            time.sleep(0.02)
            opt.step()
        emb.eval()
        emb(torch.zeros(7, dtype=torch.long))  # evaluation lookups are not counted
    finally:
        probe.handle.remove()
        probe.hook.remove()
    s = probe.summary()
    assert s["steps_done"] == 3 and s["tokens_per_step"] == 10 and len(s["step_s"]) == 2
    assert s["tokens_per_s"] == pytest.approx(20 / (probe.ends[-1] - probe.ends[0]), rel=1e-3)
    assert s["peak_rss_mb"] > 0


def _run(impl, config, tok, rss, case="smollm2_lora", losses=(2.0, 1.5, 1.2)):
    return {"case": case, "impl": impl, "config": config, "tokens_per_s": tok,
            "peak_rss_mb": rss, "peak_rss_steady_mb": rss, "mfu": 0.1,
            "loss_at_steps": dict(zip(("1", "5", "10"), losses, strict=True))}  # fmt: skip


def test_verdicts_from_results(bench):
    _, _, tables = bench
    runs = [
        _run("tunesmith", "fp32", 100.0, 10000.0),
        _run("tunesmith", "bf16base+ckpt+chunk", 250.0, 4000.0, losses=(2.0, 1.52, 1.2)),
        _run("tunesmith", "bf16base+ckpt+chunk", 230.0, 4100.0),
        _run("tunesmith", "bf16base+ckpt+chunk", 240.0, 3900.0),
        _run("trainer", "bf16base+ckpt", 200.0, 5000.0),
        _run("tunesmith", "bf16base+ckpt", 50.0, 9000.0, case="gemma3_lora"),
        _run("tunesmith", "bf16base+ckpt+chunk", 50.0, 6000.0, case="gemma3_lora"),
        {"case": "smollm2_lora", "impl": "trainer", "config": "fp32", "error": "killed"},
    ]
    md = tables.render({"runs": runs})
    assert "| smollm2_lora | tunesmith | bf16base+ckpt+chunk | 3 | 240.0 | 4000 |" in md
    assert "tokens/s vs tunesmith fp32 = 2.40x (meets" in md
    assert "tokens/s vs Trainer bf16base+ckpt = 1.20x (MISSES" in md
    assert "peak RSS vs tunesmith fp32 = 0.40x (meets" in md
    assert "peak RSS vs Trainer bf16base+ckpt = 0.80x (MISSES" in md
    assert "= 0.020 (bf16base+ckpt+chunk)" in md  # first repeat's losses vs fp32
    assert "9000 MB unchunked vs 6000 MB chunked (0.67x)" in md
    assert "error: killed" in md


def test_packed_attention_benchmark_counts_the_attention_work():
    micro = _load("packed_attention")
    # rows of 6 tokens: examples 2 + 4 and 3 + 3 -> (4 + 16 + 9 + 9) / (2 x 36)
    work = micro.attention_work(torch.tensor([[0, 1, 0, 1, 2, 3], [0, 1, 2, 0, 1, 2]]))
    assert work == {"rows": 2, "examples": 4, "work_ratio": round(38 / 72, 4)}
    assert micro.BACKENDS == ("tunesmith_packed", "sdpa")

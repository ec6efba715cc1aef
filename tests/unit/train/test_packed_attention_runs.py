"""Packed causal-LM runs attend per example by default (``tunesmith_packed``, recorded in the
summary) with the same loss curve as SDPA's block-diagonal mask; naming the attention keeps it."""

import pytest

from tunesmith import packedattn
from tunesmith.train import setup
from tunesmith.train.loop import train

from .conftest import make_recipe
from .test_loop_chunked import LM, assert_same_curve, curve

PACKED = {"data.packing": "true", "train.max_steps": 4, "train.log_every": 1}
PACKED["train.eval_every"] = 2


@pytest.fixture
def per_example_calls(monkeypatch):
    calls = []
    grouped = packedattn._grouped
    monkeypatch.setattr(packedattn, "_grouped", lambda *a, **k: calls.append(1) or grouped(*a, **k))
    return calls


def test_lora_run_with_checkpointing_and_chunked_loss_attends_per_example(
    tiny_models, tiny_data, tmp_path, per_example_calls, capsys
):
    model = tiny_models["llama", LM]
    over = {
        **PACKED,
        "adapter": "{type: lora, r: 4, targets: [q_proj, v_proj]}",
        "train.gradient_checkpointing": "true",
        "train.loss_chunk_tokens": 7,
    }
    summary = train(make_recipe(model, LM, tiny_data, tmp_path / "packed", **over))
    assert summary["attention"] == "tunesmith_packed"
    assert "tunesmith: attention tunesmith_packed (packed rows" in capsys.readouterr().out
    assert per_example_calls  # training rows ran per example
    calls = len(per_example_calls)
    plain_model = f"{{name: {model}, attn_implementation: sdpa}}"
    plain = train(make_recipe(model, LM, tiny_data, tmp_path / "sdpa", **over, model=plain_model))
    assert plain["attention"] == "sdpa" and len(per_example_calls) == calls
    assert "attention sdpa (packed rows: block-diagonal mask; model.attn_implementation)" in (
        capsys.readouterr().out
    )
    assert_same_curve(curve(tmp_path / "packed"), curve(tmp_path / "sdpa"))


def test_live_distillation_on_packed_rows_has_the_same_curve(
    tiny_models, tiny_data, tmp_path, monkeypatch, per_example_calls
):
    teacher = tiny_models["llama", LM]
    over = {
        **PACKED,
        "model": "null",
        "distill": f"{{teacher: {teacher}, cache: false}}",
        "student": "{from_teacher: {layers: [1]}}",
        "objectives": "[{name: lm_kd, params: {beta: 0.5}}, {name: hidden_mse, weight: 0.1}]",
        "task_weight": 0.5,
    }
    summary = train(make_recipe(teacher, LM, tiny_data, tmp_path / "packed", **over))
    assert summary["attention"] == "tunesmith_packed" and per_example_calls
    monkeypatch.setattr(setup, "use_packed_attention", lambda model: False)
    plain = train(make_recipe(teacher, LM, tiny_data, tmp_path / "sdpa", **over))
    assert plain["attention"] == "sdpa"
    assert_same_curve(curve(tmp_path / "packed"), curve(tmp_path / "sdpa"))


def test_unpacked_runs_record_no_attention(tiny_models, tiny_data, tmp_path):
    over = {"train.max_steps": 1}
    summary = train(make_recipe(tiny_models["llama", LM], LM, tiny_data, tmp_path / "r", **over))
    assert "attention" not in summary


def test_bf16_packed_run_records_its_attention_kernel(
    tiny_models, tiny_data, tmp_path, monkeypatch
):
    from tunesmith import causalattn

    monkeypatch.setattr(causalattn, "_chosen", {})
    monkeypatch.setenv(causalattn.KERNEL_ENV, "gemm")
    model = tiny_models["llama", LM]
    over = {  # a bf16 frozen base: the attention's inputs are bf16 (fp32 weights give fp32 q, k)
        **PACKED,
        "model": f"{{name: {model}, dtype: bf16}}",
        "adapter": "{type: lora, r: 4, targets: [q_proj, v_proj]}",
        "train.precision": "bf16",
        "train.eval_every": 4,
    }
    summary = train(make_recipe(model, LM, tiny_data, tmp_path / "r", **over))
    assert summary["attention"] == "tunesmith_packed"
    assert set(summary["attention_kernels"].values()) == {"gemm"}
    assert all(k.startswith("cpu bfloat16 H") for k in summary["attention_kernels"])

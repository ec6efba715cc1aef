"""FSDP (``train.distributed.strategy: fsdp``) on two CPU processes: torchrun, gloo, tiny Llama.

The two-process runs take batches of 4 per process; the one-process reference takes batches of 8,
so each optimiser step sees the same 8 examples (the plan hands batch 2k to process 0 and 2k+1 to
process 1, see ``SingleTask.plan``) and the averaged gradients are the same. Three launches start
at once and the reference trains here meanwhile; the resume launch follows the interrupted one.
"""

from __future__ import annotations

import json
import random
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tunesmith.config import load_recipe, parse_recipe
from tunesmith.errors import ConfigError
from tunesmith.testing import save_tiny_model
from tunesmith.train.loop import train
from tunesmith.train.setup import check_fsdp

from .conftest import NEG, POS, sentence
from .launch import Launch, free_ports

INTERRUPT = textwrap.dedent(
    """
    import sys
    from tunesmith.config import load_recipe
    from tunesmith.train.loop import Interrupted, train

    try:
        train(load_recipe(sys.argv[1]), sys.argv[2], interrupt_at_step=int(sys.argv[3]))
    except Interrupted:
        sys.exit(0)  # as if killed after step 3: the newest checkpoint is of step 2
    """
)

TRAIN = {
    "eval_batch_size": 5,
    "max_steps": 4,
    "eval_every": 2,
    "save_every": 2,
    "length_grouping": False,  # the same batches whatever the batch size (see the docstring)
    "progress": False,
    "tensorboard": False,
    "distributed": {"strategy": "fsdp"},
    "precision": "fp32",  # exact parity with one process, whatever the CPU has
}


def write_recipes(root: Path) -> dict[str, Path]:
    save_tiny_model(root / "llama-cls", "llama", "sequence_classification")
    save_tiny_model(root / "llama-lm", "llama", "causal_lm")
    rng = random.Random(0)
    lines = [f"{i % 2} {sentence(rng, POS if i % 2 else NEG)}" for i in range(96)]
    (root / "sent.txt").write_text("\n".join(lines) + "\n")
    inst = [{"instruction": f"say {w}", "input": "", "output": f"{w} {w} yes"} for w in POS + NEG]
    (root / "inst.json").write_text(json.dumps(inst * 2))
    full = {
        "model": str(root / "llama-cls"),
        "task": "sequence_classification",
        "seed": 3,
        "data": {
            "root": str(root),
            "train": {"path": "sent.txt", "format": "label_text"},
            "split": {"dev": 0.25},
        },
        "optim": {"lr": 2e-3, "warmup_steps": 1, "max_grad_norm": 0.5},  # clipping is active
        "train": {"batch_size": 4, **TRAIN},
    }
    lora = {
        "model": str(root / "llama-lm"),
        "task": "causal_lm",
        "seed": 3,
        "adapter": {"type": "lora", "r": 4, "targets": ["q_proj", "v_proj"]},
        "data": {"root": str(root), "train": "inst.json", "split": {"dev": 0.25}, "max_length": 32},
        "optim": {"lr": 1e-2, "warmup_steps": 1},
        "train": {"batch_size": 4, **TRAIN, "max_steps": 2},
    }
    # the same LoRA run through the chunked LM loss and gradient checkpointing (the head is called
    # outside the sharded model's forward, again in the backward's recompute)
    chunked = {**lora, "train": {**lora["train"], "loss_chunk_tokens": 8}}
    chunked["train"]["gradient_checkpointing"] = True
    paths = {}
    for name, recipe in (("full", full), ("lora", lora), ("lora-chunked", chunked)):
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(recipe))
    return paths


def torchrun(*args: str):
    def make(port: int, out: Path) -> list[str]:
        head = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        return [*head, "--master_port", str(port), *(a.replace("{out}", str(out)) for a in args)]

    return make


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdp")
    recipes = write_recipes(root)
    (root / "interrupt.py").write_text(INTERRUPT)
    cli = ("--module", "tunesmith.cli", "train")
    launches = {
        "fsdp": Launch("fsdp", root, torchrun(*cli, str(recipes["full"]), "--output-dir", "{out}")),
        "killed": Launch(
            "killed", root, torchrun(str(root / "interrupt.py"), str(recipes["full"]), "{out}", "3")
        ),
        "lora": Launch(
            "lora", root, torchrun(*cli, str(recipes["lora-chunked"]), "--output-dir", "{out}")
        ),
    }
    for launch, port in zip(launches.values(), free_ports(len(launches)), strict=True):
        launch.start(port)
    try:  # the same global batch in one process
        one = load_recipe(recipes["full"])
        one.train.batch_size = 8
        train(one, root / "one-process")
        one_lora = load_recipe(recipes["lora"])  # unchunked, no checkpointing
        one_lora.train.batch_size = 8
        train(one_lora, root / "one-process-lora")
    except BaseException:
        for launch in launches.values():
            launch.kill()
        raise
    yield {"root": root, "recipes": recipes, "launches": launches}
    for launch in launches.values():
        launch.kill()


def close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], tol: float) -> None:
    assert sorted(a) == sorted(b)
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= tol, f"weights differ by {worst}"


def test_fsdp_run_equals_one_process_run(launched):
    launched["launches"]["fsdp"].finished()
    root = launched["root"]
    run, one = root / "fsdp", root / "one-process"
    summary, ref = (json.loads((r / "summary.json").read_text()) for r in (run, one))
    assert summary["distributed"] == "fsdp" and summary["steps"] == ref["steps"] == 4
    assert summary["best_step"] == ref["best_step"]
    assert summary["dev"] == pytest.approx(ref["dev"])
    best = load_file(str(run / "best" / "model.safetensors"))  # gathered full weights
    close(best, load_file(str(one / "best" / "model.safetensors")), 1e-5)
    initial = load_file(str(root / "llama-cls" / "model.safetensors"))
    assert any(not torch.equal(best[k], initial[k]) for k in best)  # it trained
    # the checkpoint is sharded: each process wrote its own shards of weights and AdamW state
    names = {p.name for p in (run / "checkpoints" / "step-4").iterdir()}
    assert {
        "model-0.safetensors",
        "model-1.safetensors",
    } <= names and "model.safetensors" not in names
    shards = [
        load_file(str(run / "checkpoints" / "step-4" / f"model-{r}.safetensors")) for r in (0, 1)
    ]
    assert shards[0]["score.weight"].shape[0] + shards[1]["score.weight"].shape[0] == 2
    # each process holds half of the parameters, gradients and optimiser state
    ours, theirs = summary["state_bytes_per_rank"], ref["state_bytes_per_rank"]
    assert len(ours) == 2 and len(theirs) == 1
    for key in ("params", "grads", "optimizer"):
        assert 0.45 < ours[0][key] / theirs[0][key] < 0.55, (key, ours, theirs)


def test_killed_fsdp_run_resumes_exactly(launched):
    root = launched["root"]
    launched["launches"]["killed"].finished()
    killed = root / "killed"
    assert not (killed / "summary.json").exists()
    assert sorted(p.name for p in (killed / "checkpoints").iterdir()) == ["step-2"]
    resume = torchrun(
        "--module", "tunesmith.cli", "train", str(launched["recipes"]["full"]),
        "--output-dir", str(killed), "--resume",
    )  # fmt: skip
    Launch("resumed", root, resume).start(free_ports(1)[0]).finished()
    launched["launches"]["fsdp"].finished()
    for name in (
        "best/model.safetensors",
        *(f"checkpoints/step-4/model-{r}.safetensors" for r in (0, 1)),
    ):
        close(load_file(str(killed / name)), load_file(str(root / "fsdp" / name)), 0.0)


def test_fsdp_lora_run_with_chunked_loss_saves_a_peft_adapter(launched):
    launched["launches"]["lora"].finished()
    best = launched["root"] / "lora" / "best"
    config = json.loads((best / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4
    tensors = load_file(str(best / "adapter_model.safetensors"))
    lora_b = [k for k in tensors if "lora_B" in k]
    assert lora_b and all(k.startswith("base_model.model.") for k in tensors)
    assert all(tensors[k].shape[1] == 4 for k in lora_b)  # full (gathered), not one shard
    assert any(tensors[k].abs().sum() > 0 for k in lora_b)  # B starts at zero: it trained
    assert not (best / "model.safetensors").exists()  # adapter-only
    one = launched["root"] / "one-process-lora" / "best" / "adapter_model.safetensors"
    close(tensors, load_file(str(one)), 1e-5)  # chunked + checkpointed + sharded = plain


def test_fsdp_refuses_gradual_unfreezing(tmp_path):
    recipe = parse_recipe(
        {"model": "x", "task": "causal_lm", "data": {"train": "a.json"}},
        ["train.distributed.strategy=fsdp", "transfer.gradual_unfreeze={every: 1}"],
    )
    with pytest.raises(ConfigError, match="gradual_unfreeze"):
        check_fsdp(recipe)

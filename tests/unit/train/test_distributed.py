"""Two-process CPU training through the real launchers (torchrun, accelerate launch).

Each launch starts two Python processes (gloo backend, ``OMP_NUM_THREADS=1``) on a tiny BERT. The
data is sized so the step counts are exact: 64 training examples in batches of 8 are 8 batches
per epoch, so 2 epochs are 16 optimiser steps on one process and 8 on each of two.
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

from tunesmith.config import load_recipe
from tunesmith.testing import save_tiny_model
from tunesmith.train.loop import train

from .conftest import NEG, POS, sentence
from .launch import Launch, free_ports

# Gradual unfreezing turns parameters on after DDP has wrapped the model; DDP must still
# all-reduce their gradients, or each process trains its own copy of the lower layers. This
# wrapper saves every process's weights just before the best model is reloaded.
REPLICA_DUMP = textwrap.dedent(
    """
    import sys
    from safetensors.torch import save_file
    import tunesmith.train.loop as loop
    from tunesmith.cli import main

    finish = loop.finish
    def dump_then_finish(run):
        weights = {k: v.detach().contiguous() for k, v in run.raw_model.state_dict().items()}
        save_file(weights, str(run.run_dir / f"replica{run.accelerator.process_index}.safetensors"))
        return finish(run)
    loop.finish = dump_then_finish
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory):
    """A tiny recipe: 80 lines -> 64 train / 16 dev; 2 epochs; no test split."""
    root = tmp_path_factory.mktemp("dist")
    save_tiny_model(root / "bert", "bert", "sequence_classification")
    rng = random.Random(0)
    lines = [f"{i % 2} {sentence(rng, POS if i % 2 else NEG)}" for i in range(80)]
    (root / "sent.txt").write_text("\n".join(lines) + "\n")
    recipe = {
        "model": str(root / "bert"),
        "task": "sequence_classification",
        "seed": 3,
        "data": {
            "root": str(root),
            "train": {"path": "sent.txt", "format": "label_text"},
            "split": {"dev": 0.2},
        },
        "optim": {"lr": 2e-3, "warmup_steps": 1},
        "train": {
            "batch_size": 8,
            "eval_batch_size": 3,
            "epochs": 2,
            "progress": False,
            "tensorboard": False,
            "precision": "fp32",  # parity with one process, exact: whatever the CPU has
        },
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def launched(recipe_file, tmp_path_factory):
    """Both launches start at once (each is mostly two processes importing torch) and the
    one-process reference run trains here meanwhile: the module takes ~20 s instead of ~35 s."""
    tmp = tmp_path_factory.mktemp("launch")
    (tmp / "dump_replicas.py").write_text(REPLICA_DUMP)

    def torchrun(port: int, out: Path) -> list[str]:
        return [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--master_port", str(port), "--module", "tunesmith.cli",
            "train", str(recipe_file), "--output-dir", str(out),
        ]  # fmt: skip

    # `accelerate launch --multi_gpu` with CUDA hidden. Not `--cpu --num_processes 2`: accelerate
    # 1.x sends --cpu to its single-process launcher, which starts one process whatever
    # --num_processes says.
    def accelerate(port: int, out: Path) -> list[str]:
        return [
            sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
            "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
            "--dynamo_backend", "no", "--main_process_port", str(port),
            str(tmp / "dump_replicas.py"), "train", str(recipe_file),
            "--output-dir", str(out), "transfer.gradual_unfreeze={every: 1, unit: steps}",
        ]  # fmt: skip

    ports = free_ports(2)
    launches = {
        "torchrun": Launch("torchrun", tmp, torchrun).start(ports[0]),
        "accelerate": Launch("accelerate", tmp, accelerate).start(ports[1]),
    }
    try:
        one = train(load_recipe(recipe_file), tmp / "one-process")
    except BaseException:
        for launch in launches.values():
            launch.kill()
        raise
    yield {"tmp": tmp, "one_process_steps": one["steps"], "launches": launches}
    for launch in launches.values():
        launch.kill()


def check_two_process_run(run: Path, one_process_steps: int) -> dict:
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] * 2 == one_process_steps  # each process took half of the batches
    assert summary["train_examples"] == 64 and summary["epochs"] == 2
    assert 0.0 <= summary["dev"]["accuracy"] <= 1.0 and "macro_f1" in summary["dev"]
    assert (run / "best" / "model.safetensors").is_file() and (run / "report.md").is_file()
    # the checkpoint is complete (both processes' RNG state) and nothing half-written is left
    names = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert names == [f"step-{summary['steps']}"], f"{names}: a process wrote after the rename"
    ckpt = run / "checkpoints" / names[0]
    rng = {f"rng-{i}.{ext}" for i in (0, 1) for ext in ("safetensors", "json")}
    assert rng <= {p.name for p in ckpt.iterdir()}
    logged = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logged if x["split"] == "dev"] == [4, 8]  # once per epoch
    return summary


def test_torchrun_two_processes(launched):
    assert launched["one_process_steps"] == 16
    out = launched["launches"]["torchrun"].finished()
    check_two_process_run(launched["tmp"] / "torchrun", launched["one_process_steps"])
    assert out.count("dev: accuracy=") == 1, out  # the summary is printed once


def test_accelerate_launch_with_gradual_unfreezing_keeps_replicas_equal(launched, recipe_file):
    launched["launches"]["accelerate"].finished()
    run = launched["tmp"] / "accelerate"
    check_two_process_run(run, launched["one_process_steps"])
    a, b = (load_file(str(run / f"replica{i}.safetensors")) for i in (0, 1))
    emb = "bert.embeddings.word_embeddings.weight"  # frozen for the first 3 steps
    initial = load_file(str(Path(recipe_file).parent / "bert" / "model.safetensors"))
    assert not torch.equal(a[emb], initial[emb])
    diverged = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diverged, f"the two processes hold different weights: {diverged[:4]}"


@pytest.mark.parametrize("n_train", [6, 8])  # one batch of 8, two processes
def test_every_process_gets_a_batch_on_tiny_data(recipe_file, n_train):
    from types import SimpleNamespace

    from tunesmith.data.pipeline import Datasets
    from tunesmith.train.modes.single import SingleTask, steps_per_epoch

    recipe = load_recipe(recipe_file)
    data = Datasets(train=[{"input_ids": [2, 10, 3]}] * n_train)
    plans = [
        SingleTask(recipe, tokenizer=None, accelerator=acc, data=data).plan(epoch=0)
        for acc in (SimpleNamespace(num_processes=2, process_index=i) for i in (0, 1))
    ]
    expected = steps_per_epoch(recipe, n_train, world=2)
    assert [len(plan) for plan in plans] == [expected, expected]

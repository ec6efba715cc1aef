"""Shared pieces of the reliability benchmark: the tiny models, data and recipe every probe trains,
running the CLI in a subprocess (with a time limit, or killed with SIGKILL on a condition),
and comparing a run's result with the reference run.

The run is small on purpose: a tiny random BERT (tunesmith.testing), 64 "neg"/"pos" training
lines and 16 dev lines, batch 8, 16 steps (2 epochs), a checkpoint every 2 steps (two kept), dev
every 4 steps. One run takes a few seconds, most of them importing torch.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from verdicts import Finished

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
LABELS = ("neg", "pos")
POS = "good happy love yes great well right".split()
NEG = "bad sad hate no low off end".split()
FILL = "the movie film book was a very it is this one".split()
STEPS = 16


def sentence(rng: random.Random, label: str) -> str:
    return " ".join(rng.sample(FILL, 3) + rng.sample(POS if label == "pos" else NEG, 2))


def label_lines(n: int, seed: int) -> list[str]:
    """``n`` balanced ``<label> <text>`` lines."""
    rng = random.Random(seed)
    return [f"{LABELS[i % 2]} {sentence(rng, LABELS[i % 2])}" for i in range(n)]


def make_template(root: Path) -> Path:
    """A trial folder every probe clones: ``model`` and ``model_other`` (tiny BERT classifiers of
    one config, different weights), ``data/train.txt`` (64 lines), ``data/dev.txt`` (16) and
    ``recipe.yaml``. Paths in the recipe are relative: runs start with the clone as cwd, so every
    clone's recipe is the same text (resume compares it)."""
    from tunesmith.testing import save_tiny_model

    root.mkdir(parents=True, exist_ok=True)
    save_tiny_model(root / "model", "bert", "sequence_classification", seed=0)
    save_tiny_model(root / "model_other", "bert", "sequence_classification", seed=1)
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "train.txt").write_text("\n".join(label_lines(64, 0)) + "\n")
    (root / "data" / "dev.txt").write_text("\n".join(label_lines(16, 1)) + "\n")
    write_recipe(root / "recipe.yaml", recipe_dict())
    return root


def clone(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    return dest


def recipe_dict(**extra) -> dict:
    """The probes' recipe (relative paths); ``extra`` sections are merged into the defaults."""
    recipe = {
        "model": "./model",
        "task": "sequence_classification",
        "seed": 3,
        "data": {
            "root": "data",
            "train": {"path": "train.txt", "format": "label_text"},
            "dev": {"path": "dev.txt", "format": "label_text"},
        },
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "train": {
            "batch_size": 8,
            "max_steps": STEPS,
            "save_every": 2,
            "eval_every": 4,
            "keep_checkpoints": 2,
            "log_every": 1,
            "progress": False,
            "tensorboard": False,
        },
    }
    for key, value in extra.items():
        recipe[key] = value if not isinstance(value, dict) else {**recipe.get(key, {}), **value}
    return recipe


def write_recipe(path: Path, recipe: dict) -> Path:
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def cli_env() -> dict[str, str]:
    """The child's environment: this tree's ``src`` first, one thread, offline, no launcher vars."""
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        CUDA_VISIBLE_DEVICES="",
    )
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_PORT", "MASTER_ADDR"):
        env.pop(var, None)
    return env


def tunesmith_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tunesmith", *map(str, args)]


def start(cmd: list[str], cwd: Path) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (a kill reaches torchrun's children); its output
    goes to temporary files, so a child is never blocked on a full pipe while it is polled."""
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=cli_env(), stdout=out, stderr=err, text=True, start_new_session=True
    )
    proc.logs = (out, err)  # type: ignore[attr-defined]
    return proc


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _logs(proc: subprocess.Popen) -> tuple[str, str]:
    texts = []
    for f in proc.logs:  # type: ignore[attr-defined]
        f.seek(0)
        texts.append(f.read())
        f.close()
    return texts[0], texts[1]


def wait(proc: subprocess.Popen, timeout: float) -> Finished:
    """Wait up to ``timeout`` s; past it the process group is killed and the run is a hang."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = _logs(proc)
        return Finished(None, err, out, timed_out=True)
    kill_group(proc)  # leftovers of the group (torchrun workers), if any
    out, err = _logs(proc)
    return Finished(proc.returncode, err, out)


def run_cli(cwd: Path, *args: str, timeout: float) -> Finished:
    return wait(start(tunesmith_cmd(*args), cwd), timeout)


def kill_when(
    proc: subprocess.Popen, cond: Callable[[], bool], limit: float, poll: float = 0.002
) -> bool:
    """SIGKILL ``proc``'s group as soon as ``cond()`` holds (polled every ``poll`` s); False if
    the process ended, or ``limit`` s passed, first (it is killed then too)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if proc.poll() is not None:
            _logs(proc)
            return False
        if cond():
            kill_group(proc)
            _logs(proc)
            return True
        time.sleep(poll)
    kill_group(proc)
    _logs(proc)
    return False


def final_weights(run_dir: Path) -> dict | None:
    """The run's final model (``best/model.safetensors``), or None when it is missing/unreadable."""
    from safetensors.torch import load_file

    path = run_dir / "best" / "model.safetensors"
    try:
        return load_file(str(path))
    except Exception:  # noqa: BLE001 - a missing or damaged result is a "differs"
        return None


def weights_differ(run_dir: Path, reference: dict) -> str | None:
    """Why the run's final weights are not bit-identical to ``reference`` (None: they are)."""
    got = final_weights(run_dir)
    if got is None:
        return "no readable best/model.safetensors"
    if got.keys() != reference.keys():
        return "other tensor names"
    worst = max(float((got[k].double() - reference[k].double()).abs().max()) for k in got)
    return None if worst == 0 else f"final weights differ (max |diff| {worst:.2e})"


def duplicated_metrics(run_dir: Path) -> str | None:
    """Why ``metrics.jsonl`` is wrong after a resume: a (step, split) row written twice."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return "no metrics.jsonl"
    seen: set[tuple] = set()
    dups = 0
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            return "metrics.jsonl has a broken line"
        key = (row.get("step"), row.get("split"))
        dups += key in seen
        seen.add(key)
    return f"metrics.jsonl: {dups} duplicated (step, split) rows" if dups else None


def newest_checkpoint(run_dir: Path) -> Path | None:
    root = run_dir / "checkpoints"
    done = [d for d in root.glob("step-*") if d.is_dir() and not d.name.endswith(".tmp")]
    return max(done, key=lambda d: int(d.name.split("-")[1].split(".")[0]), default=None)

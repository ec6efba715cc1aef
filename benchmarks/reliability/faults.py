"""Probes (a) kill -9 then ``--resume``, and (d) inputs changed between the kill and the resume.

Every trial is a clone of the template folder (harness.make_template) and runs the real CLI in a
subprocess with that clone as cwd, so the recipe text is the same in every clone.
"""

from __future__ import annotations

import random
import re
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import harness as h
from verdicts import Finished, Tally, verdict

TRAIN = ("train", "recipe.yaml", "--output-dir", "run")
RESUME = (*TRAIN, "--resume")


@dataclass
class Reference:
    """The uninterrupted run every resumed run is compared with."""

    weights: dict
    wall_s: float
    run_dir: Path

    @property
    def limit(self) -> float:
        """Time limit for one command: past it, the command hangs."""
        return max(120.0, 8 * self.wall_s)


def reference_run(template: Path, work: Path) -> Reference:
    folder = h.clone(template, work / "reference")
    t0 = time.monotonic()
    done = h.run_cli(folder, *TRAIN, timeout=900)
    wall = time.monotonic() - t0
    weights = h.final_weights(folder / "run")
    if done.code != 0 or weights is None:
        raise SystemExit(f"the reference run failed (exit {done.code}):\n{done.stderr[-3000:]}")
    return Reference(weights, wall, folder / "run")


def _tmp_exists(run: Path, pattern: str) -> bool:
    return any(run.glob(pattern))


def kill_moment(kind: str, rng: random.Random, ref: Reference, run: Path):
    """(condition, description) for one kill: at start-up, inside a checkpoint write, inside the
    best-model write, or at a random time."""
    t0 = time.monotonic()
    if kind == "startup":
        delay = rng.uniform(0.05, 0.45) * ref.wall_s
        return (lambda: time.monotonic() - t0 >= delay), f"start-up +{delay:.2f}s"
    if kind in ("checkpoint", "best"):
        delay = rng.uniform(0.3, 0.8) * ref.wall_s
        pattern = "checkpoints/*.tmp" if kind == "checkpoint" else "best.tmp"

        def cond() -> bool:
            return time.monotonic() - t0 >= delay and _tmp_exists(run, pattern)

        return cond, f"inside a {kind} write after +{delay:.2f}s"
    delay = rng.uniform(0.0, 0.95) * ref.wall_s  # before the reference run ends
    return (lambda: time.monotonic() - t0 >= delay), f"random +{delay:.2f}s"


KINDS = ("startup", "checkpoint", "random", "best", "checkpoint", "random")


def probe_kill9(template: Path, work: Path, ref: Reference, trials: int, seed: int) -> Tally:
    """(a) SIGKILL at ``trials`` seeded moments, then the same command with ``--resume``. A run
    that ends before its kill moment is not a trial: another moment is drawn (at most ``trials``
    extra draws)."""
    tally = Tally("a: kill -9 then --resume")
    rng = random.Random(seed)
    not_killed = dup_rows = killed = 0
    for i in range(2 * trials):
        if killed == trials:
            break
        folder = h.clone(template, work / f"kill{i}")
        kind = KINDS[i % len(KINDS)]
        proc = h.start(h.tunesmith_cmd(*TRAIN), folder)
        cond, where = kill_moment(kind, rng, ref, folder / "run")
        if not h.kill_when(proc, cond, limit=ref.limit):
            not_killed += 1
            shutil.rmtree(folder, ignore_errors=True)
            continue
        killed += 1
        done = h.run_cli(folder, *RESUME, timeout=ref.limit)
        wrong = h.weights_differ(folder / "run", ref.weights)
        dup_rows += bool(done.code == 0 and h.duplicated_metrics(folder / "run"))
        tally.add(verdict(done, wrong=wrong), f"{where}: {reason(done, wrong)}")
        shutil.rmtree(folder, ignore_errors=True)
    if not_killed:
        tally.note(f"{not_killed} draw(s) ended before their kill moment and were drawn again")
    if dup_rows:
        tally.note(f"{dup_rows} resumed run(s) have duplicated metrics rows (counted in probe d)")
    return tally


def reason(done: Finished, wrong: str | None) -> str:
    """The note of a trial: why its completed result is wrong, or how it failed."""
    return (wrong or "same result") if done.code == 0 and not done.timed_out else last_line(done)


def last_line(done: Finished) -> str:
    """The error line of a failed command (the exception line of a traceback)."""
    if done.timed_out:
        return "timed out"
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    errors = [x for x in lines if re.match(r"^[\w.]*(Error|Exception|Interrupt)\b|^error: ", x)]
    return ((errors or lines or [f"exit {done.code}"])[-1])[:160]


def interrupted(template: Path, work: Path, ref: Reference, after_step: int = 4) -> Path:
    """A clone whose run was SIGKILLed once checkpoint ``step-<after_step>`` was complete and
    at least one later training step was logged."""
    folder = h.clone(template, work / "interrupted")
    run = folder / "run"
    proc = h.start(h.tunesmith_cmd(*TRAIN), folder)

    def cond() -> bool:
        if not (run / "checkpoints" / f"step-{after_step}").is_dir():
            return False
        text = (run / "metrics.jsonl").read_text() if (run / "metrics.jsonl").is_file() else ""
        return f'"step": {after_step + 1},' in text

    if not h.kill_when(proc, cond, limit=ref.limit, poll=0.001):
        raise SystemExit("probe d: could not interrupt the run after its first checkpoints")
    return folder


def changed_input_trials(folder: Path) -> dict:
    """name -> a function that changes ``folder`` between the kill and the resume (data-changing
    ones make any completed resume wrong)."""
    data = folder / "data"

    def shrink():
        lines = (data / "train.txt").read_text().splitlines()
        (data / "train.txt").write_text("\n".join(lines[:16]) + "\n")  # 2 batches < position

    def new_label():
        extra = [f"neu the film was {w} one" for w in ("a", "very", "the")]
        with open(data / "train.txt", "a") as f:
            f.write("\n".join(extra) + "\n")

    def empty_dev():
        (data / "dev.txt").write_text("")

    def replace_base():
        shutil.rmtree(folder / "model")
        shutil.copytree(folder / "model_other", folder / "model")

    return {
        "training file shrank (64 -> 16 lines)": shrink,
        "training file gained a label": new_label,
        "dev file emptied": empty_dev,
        "base model replaced (same config, other weights)": replace_base,
    }


def probe_changed(template: Path, work: Path, ref: Reference, torchrun: bool, quick: bool) -> Tally:
    """(d) the inputs or the saved state change between the kill and the resume."""
    tally = Tally("d: changed inputs/state, then --resume")
    base = interrupted(template, work, ref)
    adapter_base_replaced(template, work, ref, tally)
    for i, name in enumerate(changed_input_trials(base)):
        folder = h.clone(base, work / f"changed{i}")
        changed_input_trials(folder)[name]()
        done = h.run_cli(folder, *RESUME, timeout=ref.limit)
        if name.startswith("base model"):  # full fine-tuning: the checkpoint holds every weight
            wrong = h.weights_differ(folder / "run", ref.weights)
        else:
            wrong = "resumed on changed data without a word"
        tally.add(verdict(done, wrong=wrong), f"{name}: {reason(done, wrong)}")
    folder = h.clone(base, work / "metrics")
    done = h.run_cli(folder, *RESUME, timeout=ref.limit)
    wrong = h.weights_differ(folder / "run", ref.weights) or h.duplicated_metrics(folder / "run")
    tally.add(verdict(done, wrong=wrong), f"plain resume: {reason(done, wrong)}")
    folder = h.clone(base, work / "config")
    (folder / "run" / "config.yaml").write_text("")
    done = h.run_cli(folder, *RESUME, timeout=ref.limit)
    wrong = h.weights_differ(folder / "run", ref.weights)
    tally.add(verdict(done, wrong=wrong), f"config.yaml emptied: {reason(done, wrong)}")
    two_resumes(base, work, ref, tally)
    truncated_state(base, work, ref, tally, only=("model.safetensors",) if quick else None)
    if torchrun:
        world_size_changed(template, work, ref, tally)
    else:
        tally.note("world-size change skipped (--no-torchrun)")
    return tally


def two_resumes(base: Path, work: Path, ref: Reference, tally: Tally) -> None:
    """Two ``--resume`` processes on one run folder: one must refuse, the other finish exactly."""
    folder = h.clone(base, work / "two")
    procs = [h.start(h.tunesmith_cmd(*RESUME), folder) for _ in range(2)]
    runs = [h.wait(p, ref.limit) for p in procs]
    worst = next((k for k in ("hang", "traceback") if any(verdict(r) == k for r in runs)), None)
    finished = [r for r in runs if r.code == 0]
    wrong = h.weights_differ(folder / "run", ref.weights) or h.duplicated_metrics(folder / "run")
    if worst:
        tally.add(worst, "two --resume at once: " + "; ".join(last_line(r) for r in runs))
    elif len(finished) == 2:
        tally.add("silent_wrong", f"two --resume at once: both ran ({wrong or 'same weights'})")
    elif finished:
        tally.add(verdict(finished[0], wrong=wrong), f"two --resume at once: {wrong}")
    else:
        tally.add("clear_error", "two --resume at once: both refused")


def truncated_state(
    base: Path, work: Path, ref: Reference, tally: Tally, only: tuple[str, ...] | None = None
) -> None:
    """Each file of the newest checkpoint cut to half its size: the resume falls back to the
    previous checkpoint (exact) or refuses clearly."""
    newest = h.newest_checkpoint(base / "run")
    files = sorted(p.relative_to(newest) for p in newest.rglob("*") if p.is_file())
    files = [f for f in files if only is None or f.name in only] or files[:1]
    for i, rel in enumerate(files):
        folder = h.clone(base, work / f"trunc{i}")
        path = h.newest_checkpoint(folder / "run") / rel
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
        done = h.run_cli(folder, *RESUME, timeout=ref.limit)
        wrong = h.weights_differ(folder / "run", ref.weights)
        tally.add(verdict(done, wrong=wrong), f"{rel} truncated: {reason(done, wrong)}")
        shutil.rmtree(folder, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def world_size_changed(template: Path, work: Path, ref: Reference, tally: Tally) -> None:
    """Started on 2 processes (torchrun, gloo), killed after its first checkpoint, resumed on 1:
    no resume can be exact across world sizes, so a completed one is wrong."""
    folder = h.clone(template, work / "world")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    cmd = [*launcher, "--master_port", str(free_port()), "--module", "tunesmith", *TRAIN]
    proc = h.start(cmd, folder)
    if not h.kill_when(proc, lambda: (folder / "run/checkpoints/step-2").is_dir(), ref.limit * 2):
        tally.note("world-size change: the 2-process run did not reach a checkpoint; skipped")
        return
    done = h.run_cli(folder, *RESUME, timeout=ref.limit)
    wrong = "a 2-process run resumed on 1 process"
    tally.add(verdict(done, wrong=wrong), f"world size 2 -> 1: {reason(done, wrong)}")


LORA = {"type": "lora", "r": 4, "targets": ["query", "value"]}


def adapter_base_replaced(template: Path, work: Path, ref: Reference, tally: Tally) -> None:
    """A finished LoRA run whose base folder is then replaced by another model of the same
    config: ``eval`` must refuse (any completed eval scores another model)."""
    folder = h.clone(template, work / "adapter")
    h.write_recipe(folder / "recipe.yaml", h.recipe_dict(adapter=LORA))
    first = h.run_cli(folder, *TRAIN, timeout=ref.limit)
    if first.code != 0:
        tally.note(f"adapter base trial skipped: the LoRA run failed ({last_line(first)})")
        return
    shutil.rmtree(folder / "model")
    shutil.copytree(folder / "model_other", folder / "model")
    done = h.run_cli(folder, "eval", "run", "--split", "dev", timeout=ref.limit)
    wrong = "evaluated the adapter on a replaced base"
    tally.add(verdict(done, wrong=wrong), f"adapter base replaced, eval: {reason(done, wrong)}")

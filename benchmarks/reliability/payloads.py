"""Probe (c): a pickle whose ``__reduce__`` creates a marker file, planted wherever tunesmith may
read state or weights; then resume / train / distill / eval. The payload only ever creates an
empty file inside the trial's temporary folder; nothing else runs.

Places: every file of the checkpoints (replacing it) plus the usual accelerate / transformers
state names that are not there (added), a model folder (``pytorch_model.bin`` alone and next to
``model.safetensors``, stray ``*.bin``/``*.pt`` files), a teacher folder, the distillation cache
(each cache file replaced, pickle-named files added) and a run's ``best/`` folder (eval).
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import harness as h
from faults import RESUME, TRAIN, Reference, interrupted, last_line, reason
from verdicts import Tally, verdict

MARKER = "PAYLOAD_RAN"

# accelerate / transformers names that a loader might pick up if they existed
EXTRA_STATE = (
    "custom_checkpoint_0.pkl",
    "custom_checkpoint_1.pkl",
    "random_states_0.pkl",
    "random_states_1.pkl",
    "optimizer.bin",
    "optimizer_1.bin",
    "scheduler.bin",
    "scheduler.pt",
    "scaler.pt",
    "sampler.bin",
    "dl_state_dict.bin",
    "pytorch_model.bin",
    "training_args.bin",
    "rng_state.pth",
)


class Payload:
    """Unpickling this opens ``path`` for writing, i.e. creates an empty marker file."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def plant(target: Path, marker: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(pickle.dumps(Payload(marker)))


def judge(tally: Tally, folder: Path, done, wrong: str | None, what: str) -> None:
    ran = (folder / MARKER).exists()
    tally.add(verdict(done, code_ran=ran, wrong=wrong), f"{what}: {reason(done, wrong)}")


def checkpoint_names(base: Path) -> list[str]:
    newest = h.newest_checkpoint(base / "run")
    present = sorted(str(p.relative_to(newest)) for p in newest.rglob("*") if p.is_file())
    return present + [n for n in EXTRA_STATE if n not in present]


def in_checkpoints(base: Path, work: Path, ref: Reference, tally: Tally, names: list[str]) -> None:
    """Each name planted in every checkpoint of an interrupted run, then ``--resume``."""
    for i, name in enumerate(names):
        folder = h.clone(base, work / f"ckpt{i}")
        for ckpt in (folder / "run" / "checkpoints").glob("step-*"):
            plant(ckpt / name, folder / MARKER)
        done = h.run_cli(folder, *RESUME, timeout=ref.limit)
        wrong = h.weights_differ(folder / "run", ref.weights)
        judge(tally, folder, done, wrong, f"checkpoint {name}")
        shutil.rmtree(folder, ignore_errors=True)


def in_model_folder(template: Path, work: Path, ref: Reference, tally: Tally, quick: bool) -> None:
    cases = {
        "model/pytorch_model.bin only": ("pytorch_model.bin",),
        "model/pytorch_model.bin next to model.safetensors": ("pytorch_model.bin",),
        "model/ stray training_args.bin, optimizer.pt": ("training_args.bin", "optimizer.pt"),
    }
    for i, (what, names) in enumerate(list(cases.items())[: 1 if quick else None]):
        folder = h.clone(template, work / f"model{i}")
        if what.endswith("only"):
            (folder / "model" / "model.safetensors").unlink()
        for name in names:
            plant(folder / "model" / name, folder / MARKER)
        done = h.run_cli(folder, *TRAIN, timeout=ref.limit)
        wrong = (
            "trained from a pickled model"
            if what.endswith("only")
            else h.weights_differ(folder / "run", ref.weights)
        )
        judge(tally, folder, done, wrong, what)


DISTILL = {
    "distill": {"teacher": "./teacher", "cache": True, "cache_dir": "cache"},
    "task_weight": 0.5,
    "objectives": [{"name": "kd", "weight": 0.5, "params": {"temperature": 2.0}}],
}


def distill_template(template: Path, work: Path, ref: Reference) -> Path:
    """A clone whose recipe distils from ``teacher/`` (the reference run's best model)."""
    folder = h.clone(template, work / "distill")
    shutil.copytree(ref.run_dir / "best", folder / "teacher")
    h.write_recipe(folder / "recipe.yaml", h.recipe_dict(**DISTILL))
    return folder


def in_teacher_and_cache(
    template: Path, work: Path, ref: Reference, tally: Tally, quick: bool
) -> None:
    """The teacher's ``pytorch_model.bin``, then each file of a filled teacher-output cache."""
    base = distill_template(template, work, ref)
    folder = h.clone(base, work / "teacher0")
    (folder / "teacher" / "model.safetensors").unlink()
    plant(folder / "teacher" / "pytorch_model.bin", folder / MARKER)
    done = h.run_cli(folder, *TRAIN, timeout=ref.limit)
    judge(tally, folder, done, "distilled from a pickled teacher", "teacher/pytorch_model.bin")
    if quick:
        return
    first = h.run_cli(base, *TRAIN, timeout=ref.limit)  # fills the cache
    weights = h.final_weights(base / "run")
    if first.code != 0 or weights is None:
        tally.note(f"distill cache trials skipped: the distill run failed ({last_line(first)})")
        return
    shutil.rmtree(base / "run")
    cached = sorted(p for p in (base / "cache").rglob("*") if p.is_file())
    if not cached:
        tally.note("distill cache trials skipped: no cache files were written")
        return
    shard_dir = cached[0].parent
    targets = [p.relative_to(base) for p in cached]
    targets += [(shard_dir / n).relative_to(base) for n in ("shard-00000.pt", "logits.pkl")]
    for i, rel in enumerate(targets):
        folder = h.clone(base, work / f"cache{i}")
        plant(folder / rel, folder / MARKER)
        done = h.run_cli(folder, *TRAIN, timeout=ref.limit)
        judge(tally, folder, done, h.weights_differ(folder / "run", weights), f"cache {rel.name}")


def in_best_folder(template: Path, work: Path, ref: Reference, tally: Tally) -> None:
    """A finished run whose ``best/`` weights are a pickle, then ``eval``."""
    folder = h.clone(template, work / "best")
    shutil.copytree(ref.run_dir, folder / "run")
    (folder / "run" / "best" / "model.safetensors").unlink()
    plant(folder / "run" / "best" / "pytorch_model.bin", folder / MARKER)
    done = h.run_cli(folder, "eval", "run", "--split", "dev", timeout=ref.limit)
    judge(tally, folder, done, "evaluated a pickled model", "run/best/pytorch_model.bin, eval")


def probe_payloads(template: Path, work: Path, ref: Reference, quick: bool) -> Tally:
    tally = Tally("c: planted pickle payloads")
    base = interrupted(template, work / "c", ref)
    names = checkpoint_names(base)
    if quick:
        names = ["custom_checkpoint_0.pkl", "random_states_0.pkl"]
    in_checkpoints(base, work, ref, tally, names)
    in_model_folder(template, work, ref, tally, quick)
    in_teacher_and_cache(template, work, ref, tally, quick)
    in_best_folder(template, work, ref, tally)
    return tally

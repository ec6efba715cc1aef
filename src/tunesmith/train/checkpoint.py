"""Checkpoints: resumable training state, and the best model as a plain HF folder.

Layout of a run directory::

    run.lock               held by the training process (pid inside; see train.runfolder)
    config.yaml            resolved recipe
    fingerprint.json       what the run depends on (recipe, data digests, labels, model digest,
                           world size); --resume refuses when any of it changed
    labels.json            label vocabulary (classification tasks)
    metrics.jsonl          one line per log/eval event (no step twice after a resume)
    checkpoints/step-N/    model.safetensors        weights that can change (frozen base: not saved)
                           optimizer.safetensors    AdamW state tensors   (newest checkpoints only)
                           optimizer.json           parameter groups      (newest checkpoints only)
                           scheduler.json           LR schedule state
                           scaler.json              fp16 gradient scaler state (fp16 runs only)
                           rng-<rank>.safetensors   torch CPU/CUDA generator states, one per process
                           rng-<rank>.json          Python and NumPy RNG states, one per process
                           objective_terms.safetensors  state of the loss terms (when any)
                           trainer_state.json       position, best metric, counters + a manifest of
                                                    every file's size and digest (written last)
                           model-<rank>.safetensors, optimizer-<rank>.safetensors/.json: instead of
                                                    the model and optimizer files when the model
                                                    is sharded (FSDP): each process's own shards
    best/                  model.safetensors + config + tokenizer + tunesmith.json (usable by HF)
    summary.json, report.md, curves.png   written at the end

Nothing here is a pickle: tunesmith writes and reads every file itself (safetensors and JSON), and
refuses a ``*.pkl`` / ``*.bin`` / ``*.pt`` file found in a checkpoint instead of loading it.

A checkpoint is written under ``step-N.tmp`` and renamed when complete, so a run killed while
saving never leaves a half-written checkpoint. On resume the newest checkpoint whose files match
its manifest is used; a damaged newer one is skipped with a warning. Optimizer state (two thirds
of a full fine-tuning checkpoint) is kept only in the newest :data:`OPTIMIZER_KEPT` checkpoints
(the newest one and its fall-back) and dropped from all of them when the run finishes.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim import Optimizer
from transformers import PreTrainedTokenizerBase

from tunesmith.adapters import save_adapter
from tunesmith.atomic import atomic_write_json, atomic_write_text
from tunesmith.config.sources import PICKLE_SUFFIXES
from tunesmith.fingerprint import file_digest
from tunesmith.objectives import ObjectiveTerm
from tunesmith.train import statefiles
from tunesmith.train.runfolder import RunFolderError
from tunesmith.train.state import TrainState

STATE_FILE = "trainer_state.json"
TERMS_FILE = "objective_terms.safetensors"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILES = ("optimizer.safetensors", "optimizer.json")
SCHEDULER_FILE = "scheduler.json"
SCALER_FILE = "scaler.json"  # fp16 runs: the gradient scaler's scale and growth tracker
FORMAT = 1  # trainer_state.json "format": the layout above
OPTIMIZER_KEPT = 2  # checkpoints that keep optimizer state: the newest and its fall-back


def rng_files(rank: int) -> tuple[str, str]:
    return f"rng-{rank}.safetensors", f"rng-{rank}.json"


def model_file(rank: int | None) -> str:
    """The weights file: one for the run, or process ``rank``'s shards (a sharded model)."""
    return MODEL_FILE if rank is None else f"model-{rank}.safetensors"


def optimizer_files(rank: int | None) -> tuple[str, str]:
    return (
        OPTIMIZER_FILES
        if rank is None
        else (f"optimizer-{rank}.safetensors", f"optimizer-{rank}.json")
    )


def is_optimizer_file(name: str) -> bool:
    return name in OPTIMIZER_FILES or (name.startswith("optimizer-") and name[10:11].isdigit())


@dataclass
class Resumable:
    """The live objects a checkpoint saves and restores (besides :class:`TrainState`)."""

    model: nn.Module  # the unwrapped model
    optimizer: Optimizer
    scheduler: Any
    terms: list[ObjectiveTerm]
    sharded: bool = False  # FSDP: every process saves and loads its own shards
    scaler: Any = None  # torch.amp.GradScaler of an fp16 run


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Checkpoint folders (complete or damaged, not ``.tmp``), oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [d for d in root.glob("step-*") if d.is_dir() and d.name[5:].isdigit()]
    return sorted(found, key=lambda d: int(d.name[5:]))


# ---------------------------------------------------------------------------------------------
# Saving


def _write_state(ckpt: Path, state: TrainState, world_size: int, sharded: bool) -> None:
    """``trainer_state.json`` with the manifest of every other file: written last."""
    files = {
        p.name: {"bytes": p.stat().st_size, "digest": file_digest(p)}
        for p in sorted(ckpt.iterdir())
        if p.is_file() and p.name != STATE_FILE
    }
    payload = {**dataclasses.asdict(state), "format": FORMAT, "world_size": world_size}
    if sharded:
        payload["sharded"] = True
    atomic_write_json(ckpt / STATE_FILE, {**payload, "files": files})


def _save_weights_and_optimizer(tmp: Path, parts: Resumable, rank: int | None) -> None:
    """Trained weights and optimiser state (``rank``: this process's shards, or None: all)."""
    trainable = {id(p) for g in parts.optimizer.param_groups for p in g["params"]}
    statefiles.save_weights(parts.model, trainable, tmp / model_file(rank))
    statefiles.save_optimizer(parts.optimizer, *(tmp / f for f in optimizer_files(rank)))


def _save_main_process_files(tmp: Path, parts: Resumable) -> None:
    if not parts.sharded:
        _save_weights_and_optimizer(tmp, parts, None)
    statefiles.save_scheduler(parts.scheduler, tmp / SCHEDULER_FILE)
    if parts.scaler is not None:
        atomic_write_json(tmp / SCALER_FILE, parts.scaler.state_dict())
    term_state = {
        f"{i}.{key}": t.contiguous().cpu()
        for i, term in enumerate(parts.terms)
        for key, t in term.state_dict().items()
    }
    if term_state:
        save_file(term_state, str(tmp / TERMS_FILE))


def save_checkpoint(
    accelerator: Accelerator, run_dir: Path, state: TrainState, parts: Resumable, keep: int
) -> Path:
    """Save everything needed to resume; prune to the newest ``keep`` checkpoints."""
    final = run_dir / "checkpoints" / f"step-{state.step}"
    tmp = final.with_name(final.name + ".tmp")
    main = accelerator.is_main_process
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    statefiles.save_rng(*(tmp / f for f in rng_files(accelerator.process_index)))
    if parts.sharded:
        _save_weights_and_optimizer(tmp, parts, accelerator.process_index)
    if main:
        _save_main_process_files(tmp, parts)
    accelerator.wait_for_everyone()  # every rank's RNG state is written before the rename
    if main:
        _write_state(tmp, state, accelerator.num_processes, parts.sharded)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        prune(run_dir, keep)
    accelerator.wait_for_everyone()
    return final


def drop_optimizer(ckpt: Path, finished: bool = False) -> None:
    """Remove a checkpoint's optimizer state (manifest first, so a kill leaves it consistent)."""
    data = json.loads((ckpt / STATE_FILE).read_text())
    dropped = [k for k in data["files"] if is_optimizer_file(k)]
    if not dropped and data.get("finished") == finished:
        return
    data["files"] = {k: v for k, v in data["files"].items() if k not in dropped}
    data["finished"] = data.get("finished", False) or finished
    atomic_write_json(ckpt / STATE_FILE, data)
    for name in dropped:
        (ckpt / name).unlink(missing_ok=True)


def prune(run_dir: Path, keep: int) -> None:
    """Keep the newest ``keep`` checkpoints; only the newest OPTIMIZER_KEPT keep optimizer state."""
    ckpts = [d for d in checkpoint_dirs(run_dir) if (d / STATE_FILE).is_file()]
    for old in ckpts[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for old in ckpts[-keep:][:-OPTIMIZER_KEPT]:
        drop_optimizer(old)


def mark_finished(run_dir: Path, step: int) -> None:
    """The run is over. When its newest checkpoint is of the last step it is marked finished (so
    ``--resume`` goes straight to the end) and no checkpoint keeps optimizer state any more."""
    ckpts = [d for d in checkpoint_dirs(run_dir) if (d / STATE_FILE).is_file()]
    if not ckpts or ckpts[-1].name != f"step-{step}":
        return  # the last steps are not checkpointed: a resume redoes them and needs the state
    for ckpt in ckpts:
        drop_optimizer(ckpt, finished=ckpt is ckpts[-1])


# ---------------------------------------------------------------------------------------------
# Choosing and loading


def refuse_pickles(folder: Path) -> None:
    """A pickle where tunesmith expects state is refused, never opened (it could run code)."""
    for p in sorted(folder.iterdir()):
        if p.suffix in PICKLE_SUFFIXES:
            raise RunFolderError(
                f"{p} is a pickle; tunesmith never loads pickled state (it can run code). A "
                "checkpoint from tunesmith < 0.2 or a planted file: remove the file, or start "
                "the run again in a new output_dir"
            )


def _problem(ckpt: Path, world_size: int) -> str | None:
    """Why ``ckpt`` cannot be resumed from (damaged, incomplete), or None."""
    try:
        data = json.loads((ckpt / STATE_FILE).read_text())
        files, fmt = data["files"], data["format"]
    except FileNotFoundError:
        return f"no {STATE_FILE} (incomplete)"
    except (ValueError, KeyError, TypeError):
        return f"{STATE_FILE} is damaged"
    if fmt != FORMAT:
        return f"written in checkpoint format {fmt}, this tunesmith reads {FORMAT}"
    ranks = list(range(world_size)) if data.get("sharded") else [None]
    needed = [SCHEDULER_FILE, *(f for r in range(world_size) for f in rng_files(r))]
    needed += [model_file(r) for r in ranks]
    if not data.get("finished"):
        needed += [f for r in ranks for f in optimizer_files(r)]
    for name in needed:
        if name not in files:
            if is_optimizer_file(name):
                return "no optimizer state (only the newest checkpoints keep it)"
            return f"{name} is missing"
    for name, want in files.items():
        path = ckpt / name
        if not path.is_file() or path.stat().st_size != want["bytes"]:
            return f"{name} is missing or truncated"
        if file_digest(path) != want["digest"]:
            return f"{name} is damaged (its digest changed)"
    return None


def find_checkpoint(run_dir: Path, world_size: int, warn: Callable[[str], None]) -> Path | None:
    """The newest intact checkpoint (None when there is none at all). Damaged newer ones are
    skipped with a warning; pickles anywhere are refused; only damaged ones is an error."""
    ckpts = checkpoint_dirs(run_dir)
    for ckpt in ckpts:
        refuse_pickles(ckpt)
    skipped = []
    for ckpt in reversed(ckpts):
        problem = _problem(ckpt, world_size)
        if problem is None:
            for bad, why in skipped:
                warn(f"warning: checkpoint {bad} is not usable ({why}); resuming from {ckpt.name}")
            return ckpt
        skipped.append((ckpt, problem))
    if skipped:
        bad, why = skipped[0]
        raise RunFolderError(
            f"no intact checkpoint in {run_dir / 'checkpoints'} (newest: {bad.name}: {why}); "
            "the run cannot be resumed exactly: start it again in a new output_dir"
        )
    return None


def load_checkpoint(accelerator: Accelerator, ckpt: Path, parts: Resumable) -> TrainState:
    """Restore every piece of state from ``ckpt``; anything that does not restore is an error."""
    try:
        state = TrainState.load(ckpt / STATE_FILE)
        if bool(json.loads((ckpt / STATE_FILE).read_text()).get("sharded")) != parts.sharded:
            raise ValueError("saved by a sharded (fsdp) run and loaded by one that is not, or back")
        rank = accelerator.process_index if parts.sharded else None
        statefiles.load_weights(parts.model, ckpt / model_file(rank))
        if not state.finished:
            statefiles.load_optimizer(parts.optimizer, *(ckpt / f for f in optimizer_files(rank)))
        statefiles.load_scheduler(parts.scheduler, ckpt / SCHEDULER_FILE)
        if parts.scaler is not None:
            parts.scaler.load_state_dict(json.loads((ckpt / SCALER_FILE).read_text()))
        statefiles.load_rng(*(ckpt / f for f in rng_files(accelerator.process_index)))
        flat = load_file(str(ckpt / TERMS_FILE)) if (ckpt / TERMS_FILE).is_file() else {}
        for i, term in enumerate(parts.terms):
            prefix = f"{i}."
            sub = {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}
            if sub or term.state_dict():
                term.load_state_dict(sub)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RunFolderError(
            f"checkpoint {ckpt} cannot be restored ({type(exc).__name__}: {reason[:200]}); "
            "remove it to resume from an earlier one, or start the run again"
        ) from exc
    return state


# ---------------------------------------------------------------------------------------------
# best/


def save_best(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    run_dir: Path,
    meta: dict[str, Any],
    adapter: tuple[str, bool] | None = None,
) -> Path:
    """Write the current model to ``best/`` (atomic replace): a standalone HF folder, or, for an
    adapter run (``adapter = (name, with_head)``), the adapter-only files plus the tokenizer."""
    final = run_dir / "best"
    tmp = run_dir / "best.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    if adapter is None:
        model.save_pretrained(str(tmp), safe_serialization=True)
    else:
        save_adapter(model, tmp, adapter[0], include_head=adapter[1])
    tokenizer.save_pretrained(str(tmp))
    atomic_write_text(tmp / "tunesmith.json", json.dumps(meta, indent=2))  # last: complete
    old = run_dir / "best.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def recover_best(run_dir: Path) -> None:
    """After a kill between the two renames of :func:`save_best`: put a complete ``best/`` back
    (the new one when it was complete, else the previous one)."""
    final, tmp, old = run_dir / "best", run_dir / "best.tmp", run_dir / "best.old"
    if not final.exists():
        if (tmp / "tunesmith.json").is_file():
            tmp.rename(final)
        elif old.is_dir():
            old.rename(final)
    shutil.rmtree(old, ignore_errors=True)

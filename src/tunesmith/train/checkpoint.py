"""Checkpoints: resumable training state and the best model as a plain HF folder.

Layout of a run directory::

    config.yaml            resolved recipe
    labels.json            label vocabulary (classification tasks)
    metrics.jsonl          one line per log/eval event
    checkpoints/step-N/    accelerate state (model, optimizer, RNG) + scheduler + trainer_state.json
    best/                  model.safetensors + config + tokenizer + tunesmith.json (usable by HF)
    report.md, curves.png  written at the end

A checkpoint directory is written under a temporary name and renamed when complete, so a run
killed while saving never leaves a half-written checkpoint that ``--resume`` would pick up.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.adapters import save_adapter
from tunesmith.objectives import ObjectiveTerm
from tunesmith.train.state import TrainState

STATE_FILE = "trainer_state.json"
TERMS_FILE = "objective_terms.safetensors"


def checkpoint_dirs(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = run_dir / "checkpoints"
    if not root.is_dir():
        return []
    found = [d for d in root.glob("step-*") if (d / STATE_FILE).is_file()]
    return sorted(found, key=lambda d: int(d.name.split("-")[1]))


def save_checkpoint(
    accelerator: Accelerator,
    run_dir: Path,
    state: TrainState,
    terms: list[ObjectiveTerm],
    keep: int,
) -> Path:
    """Save everything needed to resume; prune to the newest ``keep`` checkpoints."""
    final = run_dir / "checkpoints" / f"step-{state.step}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(output_dir=str(tmp))
    accelerator.wait_for_everyone()  # every rank's RNG state is written before the rename
    if accelerator.is_main_process:
        term_state = {
            f"{i}.{key}": t.contiguous().cpu()
            for i, term in enumerate(terms)
            for key, t in term.state_dict().items()
        }
        if term_state:
            save_file(term_state, str(tmp / TERMS_FILE))
        state.save(tmp / STATE_FILE)  # written last: marks the checkpoint complete
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in checkpoint_dirs(run_dir)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, ckpt: Path, terms: list[ObjectiveTerm]) -> TrainState:
    accelerator.load_state(str(ckpt))
    if (ckpt / TERMS_FILE).is_file():
        flat = load_file(str(ckpt / TERMS_FILE))
        for i, term in enumerate(terms):
            prefix = f"{i}."
            term.load_state_dict(
                {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}
            )
    return TrainState.load(ckpt / STATE_FILE)


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
    (tmp / "tunesmith.json").write_text(json.dumps(meta, indent=2))
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    return final

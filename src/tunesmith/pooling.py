"""What a sequence-classification head reads: BERT's pooler, the [CLS] state or the masked mean.

BERT-like ``*ForSequenceClassification`` models feed ``dropout -> classifier`` with the backbone's
pooler output (``tanh(W h_[CLS] + b)``). Sentence-transformers checkpoints (the embedded MiniLM)
were trained on the *mean* of the token states and never trained that pooler, so a head on a frozen
encoder (a linear probe, an adapter run) reads an untrained projection. ``head.pooling`` picks the
input; ``auto`` (:func:`resolve_pooling`) takes the checkpoint's own pooling whenever the pooler
would stay frozen, and keeps the pooler (HF's default) when it trains with the run.

Mechanism (no transformers class is patched or rewritten): :func:`apply_pooling` swaps the
backbone's ``pooler`` module for a :class:`MaskedPooler` that keeps the pooler's children under
the same names (so ``state_dict`` keys, and a saved folder, are unchanged) and reads the attention
mask that a forward pre-hook on the backbone hands it. The choice is recorded as
``config.tunesmith_pooling`` (saved in ``config.json`` / an adapter's base config), which
:func:`tunesmith.models.load_model` reads back. Plain ``AutoModelForSequenceClassification``
ignores that key and uses the pooler, so a mean- or cls-pooled run loads exactly only through
tunesmith.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch import nn

from tunesmith.errors import ConfigError

__all__ = [
    "CONFIG_KEY",
    "POOLINGS",
    "MaskedPooler",
    "apply_pooling",
    "checkpoint_pooling",
    "configure_pooling",
    "current_pooling",
    "describe",
    "masked_mean",
    "resolve_pooling",
]

logger = logging.getLogger(__name__)

POOLINGS = ("auto", "cls", "mean", "pooler")
CONFIG_KEY = "tunesmith_pooling"
"""``config.json`` key recording a run's pooling (``pooler``, ``cls`` or ``mean``)."""


def masked_mean(states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of the unmasked token states. states (B, T, H), mask (B, T) of 0/1 -> (B, H).

    A row with no unmasked token gives zeros (the count is clamped to 1)."""
    if mask is None:
        return states.mean(dim=1)
    m = mask.to(states.dtype).unsqueeze(-1)  # (B, T, 1)
    return (states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)


class MaskedPooler(nn.Module):
    """Stands in for a backbone's ``pooler``: ``cls`` (first token state) or ``mean`` (masked
    mean). hidden_states (B, T, H) -> (B, H).

    The replaced pooler's children stay registered under their names (``dense``), unused, so the
    parameter names and a saved ``state_dict`` are those of the original model; the original
    module is kept (outside the module tree) so :func:`apply_pooling` can put it back.
    """

    def __init__(self, mode: str, original: nn.Module):
        super().__init__()
        if mode not in ("cls", "mean"):
            raise ValueError(f"MaskedPooler pools by 'cls' or 'mean', not {mode!r}")
        self.mode = mode
        for name, child in original.named_children():
            self.add_module(name, child)
        object.__setattr__(self, "original", original)  # not a submodule: no duplicate keys
        self.mask: torch.Tensor | None = None  # set by the backbone's pre-hook, used once

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        mask, self.mask = self.mask, None
        if self.mode == "cls":
            return hidden_states[:, 0]
        if mask is not None and tuple(mask.shape) != tuple(hidden_states.shape[:2]):
            mask = None  # not a (B, T) token mask: every position counts
        return masked_mean(hidden_states, mask)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


def _hand_mask(module: nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook on the backbone: give its :class:`MaskedPooler` this call's mask.

    A module-level function reading ``module.pooler`` (no closure), so a deep copy of the model
    feeds its own pooler."""
    pooler = getattr(module, "pooler", None)
    if isinstance(pooler, MaskedPooler):
        mask = kwargs.get("attention_mask")
        if mask is None and len(args) > 1:
            mask = args[1]
        pooler.mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None


def _backbone(model: nn.Module) -> nn.Module | None:
    """The module owning a ``pooler`` (``model.bert`` for BERT), or None when there is none."""
    base = getattr(model, "base_model", None)
    if isinstance(base, nn.Module) and isinstance(getattr(base, "pooler", None), nn.Module):
        return base
    return None


def current_pooling(model: nn.Module) -> str | None:
    """``pooler``, ``cls`` or ``mean`` for a model with a pooler to replace; None otherwise."""
    base = _backbone(model)
    if base is None:
        return None
    return base.pooler.mode if isinstance(base.pooler, MaskedPooler) else "pooler"


def apply_pooling(model: nn.Module, mode: str) -> None:
    """Make ``model``'s sequence head read ``mode`` (``pooler``, ``cls``, ``mean``), in place, and
    record it as ``config.tunesmith_pooling``. With ``cls`` or ``mean`` the unused pooler weights
    are frozen (they receive no gradient). A :class:`ConfigError` for a model without a pooler."""
    if mode not in POOLINGS[1:]:
        raise ConfigError("head.pooling", f"unknown pooling {mode!r}", "use cls, mean or pooler")
    base = _backbone(model)
    if base is None:
        raise ConfigError(
            "head.pooling",
            f"pooling {mode!r} needs a BERT-like encoder with a pooler; "
            f"{type(model).__name__} has none",
            "remove head.pooling (the model's own head input is used)",
        )
    pooler = base.pooler
    original = pooler.original if isinstance(pooler, MaskedPooler) else pooler
    if mode == "pooler":
        base.pooler = original
    else:
        base.pooler = MaskedPooler(mode, original)
        original.requires_grad_(False)
        if not getattr(base, "_tunesmith_pool_hook", False):
            base.register_forward_pre_hook(_hand_mask, with_kwargs=True, prepend=True)
            base._tunesmith_pool_hook = True
    setattr(model.config, CONFIG_KEY, mode)


def checkpoint_pooling(folder: str | Path | None) -> str | None:
    """The pooling a checkpoint folder was trained with, from its sentence-transformers
    ``modules.json`` + ``<Pooling path>/config.json`` (``mean`` or ``cls``); None when the folder
    has no such config or names a pooling the head cannot use (max, weighted mean, ...)."""
    if folder is None or not (Path(folder) / "modules.json").is_file():
        return None
    try:
        modules = json.loads((Path(folder) / "modules.json").read_text())
        entry = next(m for m in modules if str(m.get("type", "")).endswith(".Pooling"))
        config = json.loads((Path(folder) / entry.get("path", "") / "config.json").read_text())
    except (OSError, ValueError, StopIteration, AttributeError):
        return None
    modes = [k for k, on in config.items() if k.startswith("pooling_mode_") and on is True]
    found = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
    return found.get(modes[0]) if len(modes) == 1 else None


def resolve_pooling(
    requested: str,
    *,
    has_pooler: bool,
    pooler_trains: bool,
    recorded: str | None = None,
    checkpoint: str | None = None,
) -> tuple[str | None, str]:
    """(pooling, why) for ``head.pooling: requested``. None = leave the model's own head input.

    An explicit value wins; ``auto`` takes, in order: the pooling a tunesmith run recorded
    (``recorded``); the pooler when it trains with this run (HF's default, so full fine-tuning is
    unchanged); the checkpoint's own pooling (``checkpoint``, e.g. ``mean`` from a
    sentence-transformers config) when the pooler stays frozen; else the pooler.
    """
    if requested not in POOLINGS:
        raise ConfigError("head.pooling", f"unknown pooling {requested!r}", f"use {POOLINGS}")
    if not has_pooler:
        if requested != "auto":
            raise ConfigError(
                "head.pooling",
                f"pooling {requested!r} needs a BERT-like encoder with a pooler",
                "remove head.pooling for this model",
            )
        return None, "the model has no pooler; its own sequence head input is used"
    if requested != "auto":
        return requested, "set by head.pooling"
    if recorded in POOLINGS[1:]:
        return recorded, "recorded by the starting checkpoint, config tunesmith_pooling"
    if pooler_trains:
        return "pooler", "the pooler trains with this run, as transformers does by default"
    if checkpoint is not None:
        return checkpoint, (
            f"the pooler stays frozen and the checkpoint was trained with {checkpoint} pooling, "
            "says its sentence-transformers pooling config"
        )
    return "pooler", "the pooler stays frozen; the checkpoint names no other pooling"


def configure_pooling(
    model: nn.Module, requested: str, checkpoint_folder: str | Path | None
) -> tuple[str | None, str]:
    """Resolve ``requested`` for ``model`` as it will train (after freezing and adapters) and
    apply it. Returns (pooling or None, why)."""
    base = _backbone(model)
    trains = base is not None and any(p.requires_grad for p in base.pooler.parameters())
    recorded = getattr(getattr(model, "config", None), CONFIG_KEY, None)
    mode, why = resolve_pooling(
        requested,
        has_pooler=base is not None,
        pooler_trains=trains,
        recorded=recorded,
        checkpoint=checkpoint_pooling(checkpoint_folder),
    )
    if mode is not None:
        apply_pooling(model, mode)
    return mode, why


def describe(mode: str | None, why: str) -> str:
    """One line for the run's log: ``head pooling: mean (why)``."""
    return f"head pooling: {mode or 'model default'} ({why})"

"""Freezing: embeddings, the first *n* blocks, name patterns, or everything but the task head (a
linear probe); patterns that match nothing are recipe errors at their key."""

from __future__ import annotations

import fnmatch
import re
import warnings
from collections.abc import Iterable
from typing import Any

from torch import nn

from tunesmith.errors import ConfigError
from tunesmith.transfer.layout import LayerLayout, _aliases, _classify, layer_layout


def _compile(patterns: Iterable[str], key: str) -> list[tuple[str, Any]]:
    """``re:<regex>`` is searched in the name; anything else is an fnmatch pattern on the name."""
    out = []
    for p in patterns:
        try:
            out.append((p, re.compile(p[3:]) if p.startswith("re:") else None))
        except re.error as e:
            raise ConfigError(key, f"bad regular expression {p!r}: {e}") from None
    return out


def _hit(compiled: list[tuple[str, Any]], names: list[str], used: set[str]) -> bool:
    hit = False
    for pattern, rx in compiled:
        if any(rx.search(n) if rx else fnmatch.fnmatchcase(n, pattern) for n in names):
            used.add(pattern)
            hit = True
    return hit


def _check_freezing(layout: LayerLayout, first_n_layers: int, linear_probe: bool) -> None:
    n_layers = layout.num_layers
    if not 0 <= first_n_layers <= n_layers:
        raise ConfigError(
            "transfer.freeze_layers",
            f"cannot freeze {first_n_layers} layers: the model has {n_layers}",
            f"use a number from 0 to {n_layers}",
        )
    if linear_probe and not layout.head:
        raise ConfigError(
            "transfer.linear_probe",
            "the model has no separate task head (a tied lm_head is the input embedding)",
            "use a model with a task head, untie the embeddings or use freeze_layers",
        )


def _check_all_used(
    check: tuple[str, list[tuple[str, Any]], set[str]], aliases: dict[str, list[str]]
) -> None:
    """A pattern that matched no parameter is a ConfigError at its recipe key."""
    key, compiled, hit = check
    missed = [p for p, _ in compiled if p not in hit]
    if missed:
        raise ConfigError(
            key,
            f"pattern(s) {missed} match no parameter",
            f"parameter names look like {next(iter(aliases))!r}",
        )


def apply_freezing(
    model: nn.Module,
    *,
    embeddings: bool = False,
    first_n_layers: int = 0,
    patterns: Iterable[str] = (),
    linear_probe: bool = False,
    unfreeze_patterns: Iterable[str] = (),
    layout: LayerLayout | None = None,
) -> list[str]:
    """Set ``requires_grad=False`` on the chosen parameters; return the names of all frozen ones.

    Only freezes (then ``unfreeze_patterns`` re-enables): parameters already frozen, e.g. a base
    model under LoRA, stay frozen. ``patterns`` match parameter names, fnmatch by default or
    ``re:<regex>``; a tied tensor matches if any of its names does. ``linear_probe`` trains the
    task head only. Raises :class:`ConfigError` for more layers than the model has, a pattern that
    matches nothing, or a linear probe on a model with no separate head.
    """
    layout = layout or layer_layout(model)
    _check_freezing(layout, first_n_layers, linear_probe)
    freeze = _compile(patterns, "transfer.freeze_patterns")
    unfreeze = _compile(unfreeze_patterns, "transfer.unfreeze_patterns")
    used: set[str] = set()
    used_un: set[str] = set()
    aliases = _aliases(model)
    for name, p in model.named_parameters():
        kind, idx = _classify(name, layout)
        names = aliases[name]
        before = p.requires_grad
        by_pattern = _hit(freeze, names, used)  # always evaluated: records which patterns hit
        by_depth = (embeddings and idx == 0) or 1 <= idx <= first_n_layers
        if by_pattern or by_depth or (linear_probe and kind != "head"):
            p.requires_grad_(False)
        if _hit(unfreeze, names, used_un):
            p.requires_grad_(True)
        if len(names) > 1 and p.requires_grad != before:
            state = "trainable" if p.requires_grad else "frozen"
            warnings.warn(
                f"{name} is tied to {', '.join(names[1:])}: all are now {state}", stacklevel=2
            )
    _check_all_used(("transfer.freeze_patterns", freeze, used), aliases)
    _check_all_used(("transfer.unfreeze_patterns", unfreeze, used_un), aliases)
    return [n for n, p in model.named_parameters() if not p.requires_grad]

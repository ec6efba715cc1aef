"""Transfer-learning controls: which parameters train, when they start training, and at what LR.

Three practices from the fine-tuning literature, all driven by one per-architecture table
(:data:`LAYOUTS`) that says where a model keeps its embeddings, its ordered transformer blocks and
its top-of-stack modules:

* freezing (embeddings, the first *n* blocks, name patterns, or everything but the task head —
  a linear probe): :func:`apply_freezing`;
* gradual unfreezing, top group first (ULMFiT, Howard & Ruder 2018, §3.3):
  :class:`GradualUnfreezer`;
* discriminative / layer-wise LR decay (Howard & Ruder 2018; Sun et al. 2019 "How to fine-tune
  BERT"; ELECTRA, Clark et al. 2020): :func:`layerwise_lr_scales`, consumed by
  :func:`tunesmith.optim.param_groups`.

Groups are numbered bottom to top: 0 = embeddings, 1..L = blocks, L+1 = everything above the
blocks (final norm, pooler, task head).

Tied parameters (e.g. a causal LM whose ``lm_head.weight`` *is* ``embed_tokens.weight``) are one
tensor, so they can only be frozen or trained together. We decide by identity, once per tensor: a
tied tensor belongs to the *lowest* group that uses it (the embeddings). Hence freezing the
embeddings also freezes a tied ``lm_head`` (with a warning), a tied LM has no separate head for a
linear probe, and gradual unfreezing trains the tied output projection only once it reaches the
embeddings. Untie (``tie_word_embeddings: false``) to treat the output projection as a head.
"""

from __future__ import annotations

import fnmatch
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from tunesmith.errors import ConfigError, ModelError

__all__ = [
    "LAYOUTS",
    "ArchLayout",
    "GradualUnfreezer",
    "LayerLayout",
    "apply_freezing",
    "layer_index",
    "layer_layout",
    "layerwise_lr_scales",
]


@dataclass(frozen=True)
class ArchLayout:
    """Where one architecture keeps its parts, as module-name patterns.

    A pattern (fnmatch) matches a module's full dotted name or any dotted suffix of it, so
    ``"layers"`` finds ``model.layers`` in ``LlamaForCausalLM`` and
    ``base_model.model.model.layers`` once PEFT has wrapped it.
    """

    embeddings: tuple[str, ...]  # input embeddings (token, position, type) with their norm
    blocks: tuple[str, ...]  # nn.ModuleList(s) of transformer blocks, in bottom-to-top order
    top: tuple[str, ...] = ()  # backbone modules above the blocks: final norm, pooler


_BERT = ArchLayout(("embeddings",), ("encoder.layer",), ("pooler",))
_DECODER = ArchLayout(("embed_tokens",), ("layers",), ("norm",))

LAYOUTS: dict[str, ArchLayout] = {
    "bert": _BERT,
    "roberta": _BERT,
    "distilbert": ArchLayout(("embeddings",), ("transformer.layer",)),
    "llama": _DECODER,
    "mistral": _DECODER,
    "qwen2": _DECODER,
    "gpt2": ArchLayout(("wte", "wpe"), ("h",), ("ln_f",)),
    # encoder blocks, then decoder blocks: the decoder sits on top of the encoder's output
    "t5": ArchLayout(
        ("shared", "encoder.embed_tokens", "decoder.embed_tokens"),
        ("encoder.block", "decoder.block"),
        ("encoder.final_layer_norm", "decoder.final_layer_norm"),
    ),
}


@dataclass
class LayerLayout:
    """A model's parameters by depth, as module-name prefixes (see :func:`layer_layout`)."""

    embeddings: list[str]  # group 0
    layers: list[str]  # one prefix per transformer block, bottom to top: groups 1..L
    head: list[str]  # parameters outside the backbone (classifier, score, untied lm_head): L+1
    other: list[str]  # rest of the backbone above the blocks (final norm, pooler): L+1
    tied: dict[str, list[str]] = field(default_factory=dict)  # canonical name -> all its names

    @property
    def num_layers(self) -> int:
        return len(self.layers)


def _matches(name: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, "*." + pattern)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _outermost(names: Iterable[str]) -> list[str]:
    """Drop names nested inside another name of the list, keeping order."""
    names = list(dict.fromkeys(names))
    return [n for n in names if not any(o != n and _under(n, o) for o in names)]


def _table_layout(modules: dict[str, nn.Module], arch: ArchLayout) -> tuple[list, list, list]:
    layers: list[str] = []
    for pattern in arch.blocks:
        lists = [
            n for n, m in modules.items() if isinstance(m, nn.ModuleList) and _matches(n, pattern)
        ]
        for name in _outermost(lists):
            layers += [f"{name}.{i}" for i in range(len(modules[name]))]

    def find(patterns: tuple[str, ...]) -> list[str]:
        hits = [n for p in patterns for n in modules if n and _matches(n, p)]
        return _outermost(n for n in hits if not any(_under(n, b) for b in layers))

    return find(arch.embeddings), layers, find(arch.top)


def _fallback_layout(modules: dict[str, nn.Module]) -> tuple[list, list, list]:
    """The largest ModuleList of same-class blocks; nn.Embedding modules outside it."""

    def size(name: str) -> tuple[int, int]:
        m = modules[name]
        return len(m), sum(p.numel() for p in m.parameters())

    stacks = [
        n
        for n, m in modules.items()
        if isinstance(m, nn.ModuleList) and len(m) > 0 and len({type(b) for b in m}) == 1
    ]
    if not stacks:
        return [], [], []
    best = max(stacks, key=size)
    layers = [f"{best}.{i}" for i in range(len(modules[best]))]
    embeddings = [
        n for n, m in modules.items() if isinstance(m, nn.Embedding) and not _under(n, best)
    ]
    return _outermost(embeddings), layers, []


def layer_layout(model: nn.Module) -> LayerLayout:
    """Find embeddings, ordered blocks, task head and the rest of ``model``.

    Uses :data:`LAYOUTS` by ``model.config.model_type``; for unknown types (or when the table's
    patterns find no blocks) falls back to the largest ``nn.ModuleList`` of identical blocks, with
    the ``nn.Embedding`` modules outside it as embeddings. Parameters found by neither are backbone
    (``other``) when under the HF ``base_model_prefix`` module, else task head (``head``).
    """
    modules = dict(model.named_modules(remove_duplicate=False))
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    embeddings, layers, top = [], [], []
    if model_type in LAYOUTS:
        embeddings, layers, top = _table_layout(modules, LAYOUTS[model_type])
    if not layers:
        embeddings, layers, top = _fallback_layout(modules)
    if not layers:
        raise ModelError(
            f"cannot find the transformer blocks of {type(model).__name__} "
            f"(model_type {model_type!r}): no nn.ModuleList of identical blocks; "
            "add an entry to tunesmith.transfer.LAYOUTS"
        )
    prefix = getattr(model, "base_model_prefix", "") or ""
    # the innermost module named base_model_prefix that holds the blocks (PEFT nests a copy)
    backbone = [n for n in modules if prefix and n and _matches(n, prefix) and _under(layers[0], n)]
    backbone = sorted(backbone, key=len)[-1:]
    layout = LayerLayout(embeddings, layers, [], list(top))
    for name, aliases in _aliases(model).items():
        if len(aliases) > 1:
            layout.tied[name] = aliases
        if _prefix_match(name, layout) is not None:
            continue
        owner = name.rsplit(".", 1)[0] if "." in name else name
        side = layout.other if any(_under(name, b) for b in backbone) else layout.head
        if owner not in side:
            side.append(owner)
    return layout


def _aliases(model: nn.Module) -> dict[str, list[str]]:
    """Canonical parameter name (as ``named_parameters()`` gives it) -> all names of that tensor."""
    by_id: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(p), []).append(name)
    return {names[0]: names for names in by_id.values()}


def _prefix_match(name: str, layout: LayerLayout) -> tuple[str, int] | None:
    """(kind, group index) of the longest prefix of ``name`` in ``layout``, or None."""
    top = layout.num_layers + 1
    candidates = [(p, "embeddings", 0) for p in layout.embeddings]
    candidates += [(p, "layer", i + 1) for i, p in enumerate(layout.layers)]
    candidates += [(p, "other", top) for p in layout.other]
    candidates += [(p, "head", top) for p in layout.head]
    hits = [(len(p), kind, idx) for p, kind, idx in candidates if _under(name, p)]
    if not hits:
        return None
    _, kind, idx = max(hits, key=lambda h: h[0])
    return kind, idx


def _classify(param_name: str, layout: LayerLayout) -> tuple[str, int]:
    """(kind, group) of a parameter; a tied tensor takes the lowest group among its names."""
    names = [param_name]
    for aliases in layout.tied.values():
        if param_name in aliases:
            names = aliases
            break
    found = [m for m in (_prefix_match(n, layout) for n in names) if m is not None]
    if not found:
        raise KeyError(f"parameter {param_name!r} is not in the layout (built before it existed?)")
    return min(found, key=lambda m: (m[1], m[0] == "head"))


def layer_index(param_name: str, layout: LayerLayout) -> int:
    """Depth group of a parameter: 0 = embeddings, 1..L = blocks, L+1 = top norm/pooler/head."""
    return _classify(param_name, layout)[1]


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


class GradualUnfreezer:
    """ULMFiT gradual unfreezing (Howard & Ruder 2018, §3.3): train the top, then go down.

    At construction only the top group (task head, final norm, pooler: group L+1) keeps training;
    every ``every`` calls to :meth:`advance` one more group is unfrozen, top block first, down to
    the embeddings. The caller decides what a call means (a step or an epoch). Parameters already
    frozen when the unfreezer is built (by :func:`apply_freezing`, adapters, ...) are never
    touched. Build the optimizer with ``include=unfreezer.will_train`` so parameters unfrozen later
    are in it from the start.
    """

    def __init__(self, model: nn.Module, layout: LayerLayout, every: int):
        if every < 1:
            raise ConfigError(
                "transfer.gradual_unfreeze.every",
                f"must be a positive number of steps, got {every}",
            )
        self.every = every
        top = layout.num_layers + 1
        # groups[k]: what the k-th unfreezing turns on (k = 0: the top group)
        self.groups: list[list[tuple[str, nn.Parameter]]] = [[] for _ in range(top + 1)]
        for name, p in model.named_parameters():
            if p.requires_grad:
                self.groups[top - layer_index(name, layout)].append((name, p))
        self._managed = {id(p) for g in self.groups for _, p in g}
        self.steps = 0
        self._apply()

    @property
    def num_groups(self) -> int:
        return len(self.groups)

    @property
    def num_unfrozen_groups(self) -> int:
        return min(1 + self.steps // self.every, self.num_groups)

    def will_train(self, name: str, param: nn.Parameter) -> bool:
        """True for parameters this unfreezer trains now or will unfreeze later."""
        return id(param) in self._managed

    def advance(self) -> list[str]:
        """Count one step (or epoch); return the names of parameters unfrozen by it."""
        before = self.num_unfrozen_groups
        self.steps += 1
        self._apply()
        return [n for g in self.groups[before : self.num_unfrozen_groups] for n, _ in g]

    def _apply(self) -> None:
        for k, group in enumerate(self.groups):
            for _, p in group:
                p.requires_grad_(k < self.num_unfrozen_groups)

    def state_dict(self) -> dict[str, int]:
        return {"steps": self.steps, "every": self.every}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the step count and re-apply ``requires_grad`` (for resuming a run)."""
        if state["every"] != self.every:
            raise ConfigError(
                "transfer.gradual_unfreeze.every",
                f"checkpoint: every {state['every']} steps; recipe: every {self.every}",
                "resume with the value the run started with",
            )
        self.steps = int(state["steps"])
        self._apply()


def layerwise_lr_scales(model: nn.Module, layout: LayerLayout, decay: float) -> dict[str, float]:
    """Layer-wise LR decay: parameter name -> LR multiplier.

    Group L+1 (head, final norm, pooler) gets 1.0, block i (1..L) gets ``decay**(L+1-i)`` and the
    embeddings ``decay**(L+1)``: discriminative fine-tuning (Howard & Ruder 2018, §3.2) with a
    constant factor, as in Sun et al. 2019 and ELECTRA. Keys are ``named_parameters()`` names,
    tied tensors once.
    """
    if not 0.0 < decay <= 1.0:
        raise ConfigError(
            "transfer.layerwise_lr_decay",
            f"must be in (0, 1], got {decay}",
            "0.8-0.95 is typical; 1.0 turns it off",
        )
    top = layout.num_layers + 1
    return {n: decay ** (top - layer_index(n, layout)) for n, _ in model.named_parameters()}

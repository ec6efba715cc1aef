"""Where a model keeps its embeddings, its ordered transformer blocks and its top-of-stack modules.

One per-architecture table (:data:`LAYOUTS`) with a fallback for unknown types; every transfer
control (freezing, gradual unfreezing, layer-wise LR decay) reads a model's parameters by depth
group from the :class:`LayerLayout` built here: 0 = embeddings, 1..L = blocks, L+1 = everything
above the blocks (final norm, pooler, task head). A tied tensor belongs to the lowest group that
uses it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field

from torch import nn

from tunesmith.errors import ModelError


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

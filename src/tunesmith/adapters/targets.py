"""Where each adapter method goes in each architecture: ONE table, keyed by ``config.model_type``.

Every entry names modules by a regular expression searched in the full module name from
``named_modules()`` (``re.search``), or, for LoRA/IA3, by PEFT-style target names (exact name or
dotted suffix, ``"query"`` matches ``bert.encoder.layer.0.attention.self.query``). Nothing here
patches a transformers class: the adapters hook the modules these patterns find.

Bottleneck sites (Houlsby et al. 2019, Fig. 2; He et al. 2022 for the parallel form):

* ``attn_output`` / ``ffn_output``: the module whose *output* is the attention / feed-forward
  sub-layer output, inside the residual branch, before the residual add. In post-LN BERT that is
  the ``dropout`` of ``BertSelfOutput`` / ``BertOutput`` (whose forward is
  ``LayerNorm(dropout(dense(h)) + residual)``), so the adapter sits after dropout, before the
  residual add and the layer norm, exactly as in the paper. In pre-LN decoders (Llama, GPT-2, T5)
  it is the output projection (``o_proj``/``down_proj``, ``c_proj``, ``o``/``DenseReluDense``).
* ``attn_block`` / ``ffn_block``: the whole sub-layer, for parallel adapters
  ``h = sublayer(x) + s * adapter(x)``. In BERT the sub-layer output module takes the residual as
  its second argument and normalises ``dense(h) + residual``; since the residual *is* the
  sub-layer input ``x``, adding ``s * adapter(x)`` to that argument is the same sum
  (``residual_arg=True``).
* ``layer_norms``: the per-block norms whose output ``train_layer_norms`` re-scales.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from torch import nn
from transformers.pytorch_utils import Conv1D

from tunesmith.errors import ConfigError
from tunesmith.transfer import layer_layout

__all__ = [
    "SLOT",
    "TARGETS",
    "ArchTargets",
    "arch_targets",
    "candidates",
    "find_by_regex",
    "find_peft_targets",
    "head_modules",
    "linear_module_names",
    "resolve_linear_targets",
]

SLOT = "adapter_slot"  # attribute name of the container every adapted module gets (see base.py)


@dataclass(frozen=True)
class ArchTargets:
    """Default adapter placements of one architecture (module-name regexes / PEFT target names)."""

    attn_output: str  # sequential adapter after the attention sub-layer output
    ffn_output: str  # sequential adapter after the feed-forward sub-layer output
    attn_block: str  # parallel adapter around the attention sub-layer
    ffn_block: str  # parallel adapter around the feed-forward sub-layer
    layer_norms: str  # block layer norms (train_layer_norms)
    lora: tuple[str, ...]  # LoRA default target_modules (as PEFT)
    ia3: tuple[str, ...]  # IA3 default target_modules (as PEFT)
    ia3_feedforward: tuple[str, ...]  # IA3 targets whose *input* is scaled (as PEFT)
    residual_arg: bool = False  # parallel: add to the sub-layer's residual argument (post-LN BERT)
    prefix: bool = False  # decoder-only self-attention with a KV cache: prefix tuning applies


_BERT = ArchTargets(
    attn_output=r"layer\.\d+\.attention\.output\.dropout$",
    ffn_output=r"layer\.\d+\.output\.dropout$",
    attn_block=r"layer\.\d+\.attention\.output$",
    ffn_block=r"layer\.\d+\.output$",
    layer_norms=r"layer\.\d+\.(attention\.output|output)\.LayerNorm$",
    lora=("query", "value"),
    ia3=("key", "value", "output.dense"),
    ia3_feedforward=("output.dense",),
    residual_arg=True,
)
_LLAMA = ArchTargets(
    attn_output=r"layers\.\d+\.self_attn\.o_proj$",
    ffn_output=r"layers\.\d+\.mlp\.down_proj$",
    attn_block=r"layers\.\d+\.self_attn$",
    ffn_block=r"layers\.\d+\.mlp$",
    layer_norms=r"layers\.\d+\.(input_layernorm|post_attention_layernorm)$",
    lora=("q_proj", "v_proj"),
    ia3=("k_proj", "v_proj", "down_proj"),
    ia3_feedforward=("down_proj",),
    prefix=True,
)

TARGETS: dict[str, ArchTargets] = {
    "bert": _BERT,
    "roberta": _BERT,
    "distilbert": ArchTargets(
        attn_output=r"layer\.\d+\.attention\.out_lin$",
        ffn_output=r"layer\.\d+\.ffn$",
        attn_block=r"layer\.\d+\.attention$",
        ffn_block=r"layer\.\d+\.ffn$",
        layer_norms=r"layer\.\d+\.(sa_layer_norm|output_layer_norm)$",
        lora=("q_lin", "v_lin"),
        ia3=("k_lin", "v_lin", "ffn.lin2"),
        ia3_feedforward=("ffn.lin2",),
    ),
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": replace(_LLAMA, ia3=("q_proj", "v_proj", "down_proj")),  # as PEFT
    "gpt2": ArchTargets(
        attn_output=r"h\.\d+\.attn\.c_proj$",
        ffn_output=r"h\.\d+\.mlp\.c_proj$",
        attn_block=r"h\.\d+\.attn$",
        ffn_block=r"h\.\d+\.mlp$",
        layer_norms=r"h\.\d+\.ln_[12]$",
        lora=("c_attn",),
        ia3=("c_attn", "mlp.c_proj"),
        ia3_feedforward=("mlp.c_proj",),
        prefix=True,
    ),
    # self-attention and feed-forward of encoder and decoder blocks; cross-attention is left alone
    "t5": ArchTargets(
        attn_output=r"block\.\d+\.layer\.0\.SelfAttention\.o$",
        ffn_output=r"block\.\d+\.layer\.\d+\.DenseReluDense$",
        attn_block=r"block\.\d+\.layer\.0\.SelfAttention$",
        ffn_block=r"block\.\d+\.layer\.\d+\.DenseReluDense$",
        layer_norms=r"block\.\d+\.layer\.\d+\.layer_norm$",
        lora=("q", "v"),
        ia3=("k", "v", "wo"),
        ia3_feedforward=("wo",),
    ),
}


def arch_targets(model: nn.Module) -> ArchTargets | None:
    """The :data:`TARGETS` entry for ``model.config.model_type``, or None for other types."""
    return TARGETS.get(getattr(getattr(model, "config", None), "model_type", None))


def _adapter_internal(name: str) -> bool:
    return f".{SLOT}." in f".{name}."


def _base_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``named_modules()`` without the adapters' own submodules (their Linears are not targets)."""
    return [(n, m) for n, m in model.named_modules() if n and not _adapter_internal(n)]


def candidates(names: Iterable[str], limit: int = 40) -> str:
    """Module names with block indices folded (``layer.*.attention``), for error messages."""
    folded = list(dict.fromkeys(re.sub(r"\.\d+(?=\.|$)", ".*", n) for n in names))
    shown = ", ".join(folded[:limit])
    return shown + (f", ... ({len(folded) - limit} more)" if len(folded) > limit else "")


def find_by_regex(model: nn.Module, pattern: str, key: str) -> list[str]:
    """Names of the (non-adapter) modules whose full name matches ``pattern`` (``re.search``).

    Raises :class:`ConfigError` at ``key`` listing candidate module names when nothing matches.
    """
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ConfigError(key, f"bad regular expression {pattern!r}: {exc}") from None
    modules = _base_modules(model)
    hits = [n for n, _ in modules if rx.search(n)]
    if not hits:
        raise ConfigError(
            key,
            f"no module of {type(model).__name__} matches {pattern!r}",
            f"module names look like: {candidates(n for n, _ in modules)}",
        )
    return hits


def _peft_match(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def linear_module_names(model: nn.Module) -> list[str]:
    """Every ``nn.Linear`` / GPT-2 ``Conv1D`` outside the adapters."""
    return [n for n, m in _base_modules(model) if isinstance(m, nn.Linear | Conv1D)]


def find_peft_targets(
    model: nn.Module, targets: str | Sequence[str], key: str, exclude: Iterable[str] = ()
) -> list[str]:
    """Resolve PEFT-style ``target_modules`` to linear module names, as PEFT does.

    A list entry matches a module whose name equals it or ends with ``"." + entry``; a single
    string is a regular expression that must match the whole name (``re.fullmatch``). Modules
    under ``exclude`` (task head, output embedding) are skipped. Every list entry must match at
    least one linear module; otherwise :class:`ConfigError` lists the candidates.
    """
    excluded = tuple(exclude)
    names = [n for n in linear_module_names(model) if not any(_under(n, e) for e in excluded)]
    hint = f"linear modules are: {candidates(names)}"
    if isinstance(targets, str):
        hits = [n for n in names if re.fullmatch(targets, n)]
        if not hits:
            raise ConfigError(key, f"regular expression {targets!r} matches no linear module", hint)
        return hits
    missing = [t for t in targets if not any(_peft_match(n, t) for n in names)]
    if missing:
        raise ConfigError(
            key, f"target module(s) {missing} not found in {type(model).__name__}", hint
        )
    return [n for n in names if any(_peft_match(n, t) for t in targets)]


def head_modules(model: nn.Module) -> list[str]:
    """Task-head module names: ``transfer.layer_layout(model).head`` (classifier, score, an
    untied ``lm_head``; a tied ``lm_head`` is the input embedding, not a head)."""
    return [h for h in layer_layout(model).head if not _adapter_internal(h)]


def _output_layers(model: nn.Module) -> list[str]:
    """The task head plus the output embedding (``lm_head``), tied or not."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    names = [n for n, m in model.named_modules() if output is not None and m is output]
    return head_modules(model) + names


def resolve_linear_targets(
    model: nn.Module, targets: str | Sequence[str] | None, default: str, key: str
) -> list[str]:
    """Module names for LoRA/IA3 ``targets``: None = the table's ``default`` field for this
    ``model_type``; ``"all-linear"`` = every Linear/Conv1D but the task head and output layer;
    another string = a regex on the whole name; a list = PEFT target names."""
    if targets is None:
        table = arch_targets(model)
        if table is None:
            model_type = getattr(getattr(model, "config", None), "model_type", None)
            raise ConfigError(
                key,
                f"no default targets for model_type {model_type!r} "
                f"(known: {', '.join(sorted(TARGETS))})",
                f"set {key} to module names or 'all-linear'; linear modules are: "
                f"{candidates(linear_module_names(model))}",
            )
        targets = getattr(table, default)
    if targets == "all-linear":
        exclude = _output_layers(model)
        names = [n for n in linear_module_names(model) if not any(_under(n, e) for e in exclude)]
        if not names:
            raise ConfigError(key, "the model has no linear layers outside its head")
        return names
    return find_peft_targets(model, targets, key)


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")

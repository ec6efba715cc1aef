"""Bottleneck adapters: Houlsby (two per block), Pfeiffer (one per block), parallel (scaled).

A bottleneck adapter maps a hidden state ``x`` of shape ``(..., d)`` to
``s * W_up f(W_down x + b_down) + b_up`` of the same shape, with ``W_down: (b, d)``,
``W_up: (d, b)`` and ``b = d / reduction_factor`` (or ``bottleneck_size``), and adds it to a
sub-layer output:

* sequential (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP", Fig. 2):
  ``h <- h + A(h)`` on the attention and the feed-forward sub-layer outputs, inside the residual,
  before the residual add and the post-LN layer norm (BERT) -- on the output projection in pre-LN
  models (Llama, GPT-2, T5);
* Pfeiffer et al. 2021 ("AdapterFusion", §3.1 / their Fig. 2 search): one adapter per block,
  after the feed-forward sub-layer only, ReLU, reduction factor 16;
* parallel (He et al. 2022, "Towards a Unified View of Parameter-Efficient Transfer Learning",
  Eq. 8): ``h = sublayer(x) + s * A(x)`` beside the feed-forward sub-layer, ``s = 4``.

``init="identity"`` zero-initialises the up-projection, so the adapted model's output equals the
base model's exactly before training (the down-projection then gets gradient from step 2 on).
``train_layer_norms`` follows Houlsby §2.1 ("we also train the layer normalization parameters")
without touching the shared base weights: each block norm gets a per-adapter ``(1 + g) * LN(x) + c``
with ``g = c = 0`` at init. For a norm with gain ``w`` and bias ``b`` this is the norm with gain
``w (1 + g)`` and bias ``b (1 + g) + c``, i.e. the same family as training ``w`` and ``b`` (for
non-zero gains), and it works for LayerNorm, RMSNorm and T5's norm alike.

The placements per architecture are in :mod:`tunesmith.adapters.targets`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from tunesmith.adapters.base import AdapterLayer, adapter_dtype, attach, first_input, hidden_size
from tunesmith.adapters.methods import AdapterMethod, register
from tunesmith.adapters.targets import TARGETS, arch_targets, candidates, find_by_regex
from tunesmith.configschema import fld
from tunesmith.errors import ConfigError

__all__ = [
    "Bottleneck",
    "BottleneckConfig",
    "HoulsbyConfig",
    "LayerNormAffine",
    "ParallelConfig",
    "PfeifferConfig",
    "inject",
]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "swish": nn.SiLU}


@dataclass(frozen=True)
class BottleneckConfig:
    """A bottleneck adapter (Houlsby et al. 2019); presets: houlsby, pfeiffer, parallel."""

    method: ClassVar[str] = "bottleneck"

    type: Literal["houlsby", "pfeiffer", "parallel"] = fld(
        "houlsby", "preset the defaults come from (a paper name)"
    )
    reduction_factor: float = fld(16.0, "bottleneck size = hidden size / reduction_factor")
    bottleneck_size: int | None = fld(None, "bottleneck size; overrides reduction_factor")
    non_linearity: Literal["relu", "gelu", "swish"] = fld("swish", "activation in the bottleneck")
    attn: bool = fld(True, "adapter at the attention sub-layer of every block")
    ffn: bool = fld(True, "adapter at the feed-forward sub-layer of every block")
    parallel: bool = fld(False, "beside the sub-layer (h = f(x) + s*A(x)) instead of after it")
    scaling: float = fld(1.0, "s: multiplies the adapter output")
    init: Literal["identity", "houlsby"] = fld(
        "identity",
        "identity: up-projection zero, output == base output before training; houlsby: both "
        "projections ~ N(0, 1e-2) truncated at 2 sigma (near-identity, Houlsby §3.6)",
    )
    dropout: float = fld(0.0, "dropout on the adapter output")
    train_layer_norms: bool = fld(
        False, "learn a per-adapter gain/shift on each block layer norm (Houlsby §2.1)"
    )
    attn_module: str | None = fld(None, "regex of the attention site modules (default: table)")
    ffn_module: str | None = fld(None, "regex of the feed-forward site modules (default: table)")
    layer_norm_module: str | None = fld(None, "regex of the block layer norms (default: table)")

    def validate(self, path: str = "adapter") -> None:
        """Impossible combinations fail with the key path (called by ``configschema.build``)."""
        if not (self.attn or self.ffn):
            raise ConfigError(f"{path}.attn", "attn and ffn are both false: no adapter to add")
        if self.reduction_factor <= 0:
            raise ConfigError(f"{path}.reduction_factor", "must be > 0", "16 is typical")
        if self.bottleneck_size is not None and self.bottleneck_size < 1:
            raise ConfigError(f"{path}.bottleneck_size", "must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{path}.dropout", f"must be in [0, 1), got {self.dropout}")

    def size(self, hidden: int) -> int:
        if self.bottleneck_size is not None:
            return self.bottleneck_size
        return max(1, int(hidden / self.reduction_factor))


@dataclass(frozen=True)
class HoulsbyConfig(BottleneckConfig):
    """Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP" (ICML): two adapters
    per block, after attention and after the feed-forward, inside the residual, layer norms
    trained (AdapterHub's ``DoubleSeqBnConfig`` defaults: reduction 16, swish)."""

    type: Literal["houlsby"] = fld("houlsby", "preset the defaults come from (a paper name)")
    train_layer_norms: bool = fld(
        True, "learn a per-adapter gain/shift on each block layer norm (Houlsby §2.1)"
    )


@dataclass(frozen=True)
class PfeifferConfig(BottleneckConfig):
    """Pfeiffer et al. 2021, "AdapterFusion: Non-Destructive Task Composition for Transfer
    Learning" (EACL): one adapter per block after the feed-forward sub-layer, ReLU, reduction 16.
    (AdapterHub's ``SeqBnConfig`` also re-applies the block's layer norm before the adapter; we
    place it where Houlsby's second adapter goes.)"""

    type: Literal["pfeiffer"] = fld("pfeiffer", "preset the defaults come from (a paper name)")
    attn: bool = fld(False, "adapter at the attention sub-layer of every block")
    non_linearity: Literal["relu", "gelu", "swish"] = fld("relu", "activation in the bottleneck")


@dataclass(frozen=True)
class ParallelConfig(BottleneckConfig):
    """He et al. 2022, "Towards a Unified View of Parameter-Efficient Transfer Learning" (ICLR):
    a scaled parallel adapter beside the feed-forward sub-layer, ``h = FFN(x) + 4 * A(x)``
    (AdapterHub's ``ParBnConfig``: reduction 2, ReLU, scaling 4)."""

    type: Literal["parallel"] = fld("parallel", "preset the defaults come from (a paper name)")
    reduction_factor: float = fld(2.0, "bottleneck size = hidden size / reduction_factor")
    non_linearity: Literal["relu", "gelu", "swish"] = fld("relu", "activation in the bottleneck")
    attn: bool = fld(False, "adapter at the attention sub-layer of every block")
    parallel: bool = fld(True, "beside the sub-layer (h = f(x) + s*A(x)) instead of after it")
    scaling: float = fld(4.0, "s: multiplies the adapter output")


def _first(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, tuple) else value


def _add_to_first(output: Any, delta: torch.Tensor) -> Any:
    if isinstance(output, tuple):
        return (output[0] + delta, *output[1:])
    return output + delta


class Bottleneck(AdapterLayer):
    """``x (..., d) -> s * up(f(down(x))) (..., d)``, added where ``mode`` says.

    ``mode``: ``"sequential"`` adds ``A(y)`` to the module output ``y``; ``"parallel"`` adds
    ``A(x)`` for the module input ``x``; ``"residual_arg"`` adds ``A(r)`` to the module's second
    argument ``r`` (BERT's ``BertSelfOutput(h, r) = LN(dense(h) + r)``, where ``r`` is the
    sub-layer input).
    """

    def __init__(self, hidden: int, config: BottleneckConfig, mode: str) -> None:
        super().__init__()
        size = config.size(hidden)
        self.mode = mode
        self.scaling = config.scaling
        self.down = nn.Linear(hidden, size)  # W_down: (b, d)
        self.act = _ACTIVATIONS[config.non_linearity]()
        self.up = nn.Linear(size, hidden)  # W_up: (d, b)
        self.dropout = nn.Dropout(config.dropout)
        self.reset_parameters(config.init)

    @torch.no_grad()
    def reset_parameters(self, init: str) -> None:
        if init == "identity":
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))  # as He et al. / LoRA's A
            nn.init.zeros_(self.up.weight)
        else:
            for lin in (self.down, self.up):
                nn.init.trunc_normal_(lin.weight, std=1e-2, a=-2e-2, b=2e-2)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.bias)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter output ``s * A(x)``, shape of ``x``, in ``x``'s dtype."""
        h = self.up(self.act(self.down(x.to(self.down.weight.dtype))))
        return (self.dropout(h) * self.scaling).to(x.dtype)

    def pre(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if self.mode != "residual_arg":
            return None
        if len(args) >= 2:
            r = args[1]
            return (args[0], r + self.delta(r), *args[2:]), kwargs
        r = kwargs["input_tensor"]
        return args, {**kwargs, "input_tensor": r + self.delta(r)}

    def post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        if self.mode == "residual_arg":
            return output
        source = _first(output) if self.mode == "sequential" else first_input(args, kwargs)
        return _add_to_first(output, self.delta(source))


class LayerNormAffine(AdapterLayer):
    """A per-adapter gain and shift on a norm's output: ``(1 + g) * y + c``, ``g, c: (d,)``, 0 at
    init, so training it equals training the norm's own gain/bias without changing the base."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.zeros(hidden))
        self.shift = nn.Parameter(torch.zeros(hidden))

    def post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        y = _first(output)
        new = (y * (1 + self.gain) + self.shift).to(y.dtype)
        return (new, *output[1:]) if isinstance(output, tuple) else new


def _sites(model: nn.Module, config: BottleneckConfig) -> list[tuple[str, str]]:
    """(module name, mode) of every adapter position for ``config``."""
    table = arch_targets(model)
    wanted = [("attn", config.attn, config.attn_module), ("ffn", config.ffn, config.ffn_module)]
    sites: list[tuple[str, str]] = []
    for part, on, override in wanted:
        if not on:
            continue
        pattern = override
        if pattern is None and table is not None:
            pattern = getattr(table, f"{part}_block" if config.parallel else f"{part}_output")
        if pattern is None:
            model_type = getattr(model.config, "model_type", None)
            raise ConfigError(
                f"adapter.{part}_module",
                f"no default adapter position for model_type {model_type!r} "
                f"(known: {', '.join(sorted(TARGETS))})",
                "set adapter.attn_module / adapter.ffn_module to a regex of module names; "
                f"module names look like: {candidates(n for n, _ in model.named_modules() if n)}",
            )
        mode = "sequential"
        if config.parallel:
            residual = table is not None and override is None and table.residual_arg
            mode = "residual_arg" if residual else "parallel"
        key = f"adapter.{part}_module"
        sites += [(name, mode) for name in find_by_regex(model, pattern, key)]
    return sites


def inject(model: nn.Module, name: str, config: BottleneckConfig) -> list[str]:
    """Add bottleneck adapter ``name`` to ``model``; return the names of the modules it hooks."""
    modules = dict(model.named_modules())
    hidden = hidden_size(model)
    device, dtype = adapter_dtype(model)
    touched = []
    for site, mode in _sites(model, config):
        attach(modules[site], name, Bottleneck(hidden, config, mode).to(device, dtype))
        touched.append(site)
    if config.train_layer_norms:
        table = arch_targets(model)
        pattern = config.layer_norm_module or (table.layer_norms if table else None)
        if pattern is None:
            raise ConfigError(
                "adapter.layer_norm_module",
                "no default layer norms for this model type",
                "set adapter.layer_norm_module to a regex or train_layer_norms: false",
            )
        for site in find_by_regex(model, pattern, "adapter.layer_norm_module"):
            attach(modules[site], name, LayerNormAffine(hidden).to(device, dtype))
            touched.append(site)
    return touched


register(
    AdapterMethod(
        "bottleneck",
        inject,
        presets={
            "houlsby": (
                HoulsbyConfig,
                "bottleneck adapters after attention and feed-forward, inside the residual, layer "
                "norms trained (Houlsby et al. 2019, Parameter-Efficient Transfer Learning for NLP)",
            ),
            "pfeiffer": (
                PfeifferConfig,
                "one bottleneck adapter per block, after the feed-forward (Pfeiffer et al. 2021, "
                "AdapterFusion)",
            ),
            "parallel": (
                ParallelConfig,
                "scaled bottleneck beside the feed-forward, h = FFN(x) + 4 A(x) (He et al. 2022, "
                "Towards a Unified View of Parameter-Efficient Transfer Learning)",
            ),
        },
    )
)

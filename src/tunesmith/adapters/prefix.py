"""Prefix tuning: learned key/value vectors prepended to every self-attention layer.

Li & Liang 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation" (ACL), §4: each
layer attends to ``P`` extra positions whose keys and values are free parameters
``(P, L * 2 * kv_heads * head_dim)``, optionally produced by a reparametrisation MLP
``P_theta = MLP(P'_theta)`` (§4.3: ``Linear -> tanh -> Linear`` from a smaller embedding), which
the paper found steadier to train.

Mechanism (no transformers class is patched): a forward pre-hook on the backbone
(``model.base_model``, e.g. ``LlamaModel``) builds a ``transformers.DynamicCache`` holding the
prefix keys/values for the batch, passes it as the ``cache`` argument (``past_key_values`` before
transformers 5.x), and prepends ``P`` ones to a 2-D ``attention_mask``. The model then treats the
prefix as ``P`` already-processed tokens: inputs take positions ``P .. P+T-1`` (as in Li & Liang
and PEFT; explicit ``position_ids``, which ``generate`` passes, are shifted by ``P`` to match),
and logits/loss cover only the real tokens. During ``generate`` the hook fills the
empty cache generate creates on the first step, and on later steps only widens the mask.

What works: decoder-only models in :data:`~tunesmith.adapters.targets.TARGETS` with
``prefix=True`` (Llama, Mistral, Qwen2, GPT-2), forward/loss for causal LM and sequence
classification, ``generate`` with greedy or sampled decoding. Not supported: encoders (BERT) and
encoder-decoders (T5), gradient checkpointing (transformers drops the cache when it recomputes),
a caller-supplied non-empty cache on the first call, and merging (a prefix is not a weight delta).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import nn
from transformers import DynamicCache

from tunesmith.adapters.base import AdapterLayer, adapter_dtype, attach, hidden_size
from tunesmith.adapters.methods import AdapterMethod, register
from tunesmith.adapters.targets import TARGETS
from tunesmith.configschema import fld
from tunesmith.errors import ConfigError, TrainingError

__all__ = ["PrefixConfig", "PrefixLayer", "inject", "supports"]


@dataclass(frozen=True)
class PrefixConfig:
    """Prefix tuning (Li & Liang 2021): learned keys/values prepended at every layer."""

    method: ClassVar[str] = "prefix"

    type: Literal["prefix"] = fld("prefix", "prefix tuning (Li & Liang 2021)")
    num_virtual_tokens: int = fld(20, "prefix length P (PEFT's name)")
    prefix_projection: bool = fld(
        False, "reparametrise the prefix through an MLP (Li & Liang §4.3)"
    )
    projection_hidden: int = fld(512, "hidden size of the reparametrisation MLP")
    init_std: float = fld(0.02, "std of the normal init of the prefix (or its embedding)")

    def validate(self, path: str = "adapter") -> None:
        if self.num_virtual_tokens < 1:
            raise ConfigError(f"{path}.num_virtual_tokens", "must be >= 1", "10-30 is typical")
        if self.projection_hidden < 1:
            raise ConfigError(f"{path}.projection_hidden", "must be >= 1")


def _kv_shape(config: Any) -> tuple[int, int, int]:
    """(layers, kv heads, head dim) of a decoder config."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return text.num_hidden_layers, kv_heads, head_dim


class PrefixLayer(AdapterLayer):
    """Produces per-layer prefix keys and values ``(batch, kv_heads, P, head_dim)`` and feeds them
    to the backbone as a pre-filled cache."""

    def __init__(self, model_config: Any, hidden: int, config: PrefixConfig) -> None:
        super().__init__()
        self.model_config = model_config
        self.layers, self.kv_heads, self.head_dim = _kv_shape(model_config)
        self.length = config.num_virtual_tokens
        width = self.layers * 2 * self.kv_heads * self.head_dim
        if config.prefix_projection:
            self.embedding = nn.Embedding(self.length, hidden)  # P'_theta: (P, d)
            self.transform = nn.Sequential(
                nn.Linear(hidden, config.projection_hidden),
                nn.Tanh(),
                nn.Linear(config.projection_hidden, width),
            )
        else:
            self.embedding = nn.Embedding(self.length, width)  # P_theta: (P, L * 2 * kv * hd)
            self.transform = nn.Identity()
        nn.init.normal_(self.embedding.weight, std=config.init_std)
        self._params: list[str] | None = None

    def key_values(self, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer ``(keys, values)``, each ``(batch, kv_heads, P, head_dim)``."""
        flat = self.transform(self.embedding.weight)  # (P, L * 2 * kv * hd)
        kv = flat.view(self.length, 2 * self.layers, self.kv_heads, self.head_dim)
        kv = kv.permute(1, 2, 0, 3).unsqueeze(1).expand(-1, batch, -1, -1, -1)
        return [(kv[2 * i], kv[2 * i + 1]) for i in range(self.layers)]

    def _named(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[dict, list[str]]:
        if self._params is None:
            self._params = list(inspect.signature(module.forward).parameters)
        if len(args) > len(self._params):
            raise TypeError(f"{type(module).__name__} got too many positional arguments")
        return {**dict(zip(self._params, args, strict=False)), **kwargs}, self._params

    def pre(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if module.training and _checkpointing(module):
            raise TrainingError(
                "prefix tuning does not work with gradient checkpointing (transformers drops "
                "the cache that carries the prefix); turn gradient checkpointing off"
            )
        kwargs, params = self._named(module, args, kwargs)
        key = "cache" if "cache" in params else "past_key_values"
        given = [kwargs.pop(k, None) for k in ("cache", "past_key_values")]
        cache = given[0] if given[0] is not None else given[1]
        ref = kwargs.get("input_ids")
        if ref is None:
            ref = kwargs["inputs_embeds"]
        batch = ref.shape[0]
        if cache is None or cache.get_seq_length() == 0:
            cache = cache if cache is not None else DynamicCache(config=self.model_config)
            dtype = module.get_input_embeddings().weight.dtype  # the keys' dtype (bf16 base)
            for i, (k, v) in enumerate(self.key_values(batch)):
                cache.update(k.to(dtype), v.to(dtype), i)
        kwargs[key] = cache
        if kwargs.get("position_ids") is not None:  # generate passes positions from 0
            kwargs["position_ids"] = kwargs["position_ids"] + self.length
        mask = kwargs.get("attention_mask")
        if mask is not None and mask.dim() == 2:
            ones = mask.new_ones(batch, self.length)
            kwargs["attention_mask"] = torch.cat([ones, mask], dim=1)
        return (), kwargs


def supports(model_type: str | None) -> bool:
    """Whether prefix tuning applies: a decoder-only model type marked ``prefix`` in TARGETS."""
    table = TARGETS.get(model_type) if model_type is not None else None
    return table is not None and table.prefix


def inject(model: nn.Module, name: str, config: PrefixConfig) -> list[str]:
    """Add prefix adapter ``name`` to the backbone of ``model``; return ``[backbone name]``."""
    if not supports(getattr(model.config, "model_type", None)):
        supported = sorted(k for k, t in TARGETS.items() if t.prefix)
        raise ConfigError(
            "adapter.type",
            f"prefix tuning supports decoder-only models ({', '.join(supported)}), "
            f"not model_type {getattr(model.config, 'model_type', None)!r}",
            "use lora, ia3 or a bottleneck adapter for this model",
        )
    backbone = model.base_model
    backbone_name = next(n for n, m in model.named_modules() if m is backbone)
    device, dtype = adapter_dtype(model)
    layer = PrefixLayer(backbone.config, hidden_size(model), config).to(device, dtype)
    attach(backbone, name, layer)
    return [backbone_name]


def _checkpointing(module: nn.Module) -> bool:
    """Whether transformers' activation (gradient) checkpointing is on for ``module``; the
    attribute was ``is_gradient_checkpointing`` before transformers 5.2x renamed it."""
    if hasattr(module, "is_activation_checkpointing"):
        return bool(module.is_activation_checkpointing)
    return bool(getattr(module, "is_gradient_checkpointing", False))


register(
    AdapterMethod(
        "prefix",
        inject,
        presets={
            "prefix": (
                PrefixConfig,
                "learned key/value prefix at every layer of a decoder (Li & Liang 2021, "
                "Prefix-Tuning)",
            )
        },
        identity_at_init=False,  # the prefix positions change attention from the start
        supports=supports,
    )
)

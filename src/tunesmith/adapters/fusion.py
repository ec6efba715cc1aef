"""AdapterFusion (Pfeiffer et al. 2021, "AdapterFusion: Non-Destructive Task Composition for
Transfer Learning", EACL): learned attention over N trained, frozen adapters.

At every module the fused adapters act on, each adapter ``n`` changes the module output ``y``
(shape ``(..., d)``) by ``z_n`` (a bottleneck's ``s * A(y)``, a LoRA's ``(alpha/r) B A x``). The
fusion layer mixes those changes with attention whose query is the module's own output (§3.2,
Eq. 3-6)::

    q = Q y            k_n = K z_n            v_n = V z_n
    s = softmax_n(q . k_n)                    y' = y + sum_n s_n v_n

``Q``, ``K`` (``d -> key_dim``) start small (``N(0, 0.02)``, zero bias), ``V`` (``d -> d``) starts
as the identity, as in the paper (§3.2 "we initialise V with the identity"), so at
initialisation the fused model adds the (near-uniform) average of the adapters' changes, and with
a single adapter it *is* that adapter (softmax over one score is 1). The paper's ``V``
regularisation and AdapterHub's softmax temperature are not implemented.

Design choices (documented in docs/adapters.md):

* **Where.** Per adapted module, over the adapters present there. For bottleneck adapters that is
  the paper's placement (after a sub-layer); for LoRA the per-adapter deltas of each adapted
  linear layer are fused, with ``d`` that layer's output size. Adapters that act through a
  forward *pre*-hook (prefix tuning, a BERT parallel adapter on the residual argument) cannot be
  fused: the module would have to run once per adapter; that is refused with a message.
* **Copies, not references.** The fused adapters' weights become frozen sub-modules of the fusion
  layers (``...adapter_slot.<name>.members.<i>.*``), so the saved fusion is one adapter folder
  that reloads without its sources; its ``tunesmith_adapter.json`` records each source and its
  config (``members``).
* **A new target adapter** (``target: {type: ...}``) is fused beside them and trained with the
  fusion (member ``target``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from safetensors.torch import load_file
from torch import nn
from transformers.pytorch_utils import Conv1D

from tunesmith.adapters.base import (
    AdapterLayer,
    adapter_dtype,
    attach,
    hidden_size,
    slots,
    state_of,
)
from tunesmith.adapters.io import (
    META_FILE,
    WEIGHTS_FILE,
    base_weights_digest,
    read_adapter_meta,
)
from tunesmith.adapters.methods import AdapterMethod, adapter_config_from_dict, register
from tunesmith.adapters.model import (
    adapter_state_dict,
    add_adapter,
    delete_adapter,
    load_adapter_state_dict,
)
from tunesmith.adapters.peft_format import PEFT_PREFIX
from tunesmith.configschema import fld
from tunesmith.errors import ConfigError, ModelError, reading
from tunesmith.models import resolve_model

__all__ = ["FusionConfig", "FusionLayer", "fuse", "fusion_attention", "inject"]

TARGET = "target"  # the member key of the new trainable adapter


@dataclass(frozen=True)
class FusionConfig:
    """AdapterFusion (Pfeiffer et al. 2021): attention over trained, frozen adapters."""

    method: ClassVar[str] = "fusion"

    type: Literal["fusion"] = fld("fusion", "preset the defaults come from (a paper name)")
    adapters: list[str] = fld(
        [],
        "the trained adapters to fuse (kept frozen): tunesmith adapter run folders, their best/ "
        "folders, or PEFT adapter folders, trained on the same base model",
    )
    target: dict[str, Any] | None = fld(
        None,
        "a new adapter section (e.g. {type: pfeiffer}) fused beside them and trained with the "
        "fusion; none: only the fusion (and the head) trains",
    )
    key_dim: int | None = fld(
        None, "output size of the query/key projections (default: the module's output size)"
    )
    members: list[dict[str, Any]] = fld(
        [],
        "written by tunesmith, not by hand: each fused adapter's source and config, so a saved "
        "fusion reloads from its own copies",
    )

    def validate(self, path: str = "adapter") -> None:
        if not self.adapters and not self.members:
            raise ConfigError(
                f"{path}.adapters",
                "no adapters to fuse",
                "list trained adapters: run folders, best/ folders or PEFT adapter folders",
            )
        if self.target is not None:
            target = adapter_config_from_dict(self.target, key=f"{path}.target")
            if type(target).method == self.method:
                raise ConfigError(f"{path}.target", "a fusion cannot be fused again")
        if self.key_dim is not None and self.key_dim < 1:
            raise ConfigError(f"{path}.key_dim", "must be >= 1")


def fuse(
    y: torch.Tensor, deltas: torch.Tensor, query: nn.Linear, key: nn.Linear, value: nn.Linear
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fused change of a module output and the attention weights.

    y: (..., d) the module output (the query); deltas: (..., N, d) the adapters' changes
    ``z_n``. Returns ``sum_n s_n V z_n`` (..., d) and ``s = softmax_n((Q y) . (K z_n))`` (..., N),
    softmax in fp32 (Pfeiffer et al. 2021, Eq. 3-6; no 1/sqrt(d) scaling, as the paper).
    """
    q = query(y).unsqueeze(-2)  # (..., 1, k)
    k = key(deltas)  # (..., N, k)
    scores = (q * k).sum(-1)  # (..., N)
    probs = torch.softmax(scores.float(), dim=-1)
    values = value(deltas)  # (..., N, d)
    fused = (probs.unsqueeze(-1).to(values.dtype) * values).sum(-2)
    return fused, probs


def _first(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, tuple) else value


class FusionLayer(AdapterLayer):
    """At one module: the fused adapters' layers (``members``, frozen but ``target``) and the
    attention projections ``query``, ``key`` (``d -> key_dim``) and ``value`` (``d -> d``)."""

    def __init__(self, members: dict[str, AdapterLayer], width: int, key_dim: int | None) -> None:
        super().__init__()
        self.members = nn.ModuleDict(members)
        k = key_dim or width
        self.query = nn.Linear(width, k)
        self.key = nn.Linear(width, k)
        self.value = nn.Linear(width, width)
        with torch.no_grad():  # the paper's init: Q, K small, V the identity
            for lin in (self.query, self.key):
                nn.init.normal_(lin.weight, std=0.02)
                nn.init.zeros_(lin.bias)
            self.value.weight.copy_(torch.eye(width))
            nn.init.zeros_(self.value.bias)
        self.recording = False
        self.attention_sum: torch.Tensor | None = None  # (N,) float64, not a parameter
        self.attention_rows = 0

    def frozen_parameters(self) -> tuple[str, ...]:
        return tuple(
            f"members.{key}.{n}"
            for key, layer in self.members.items()
            if key != TARGET
            for n, _ in layer.named_parameters()
        )

    def pre(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        for key, layer in self.members.items():
            if layer.pre(module, args, kwargs) is not None:
                raise ModelError(
                    f"fused adapter {key} ({type(layer).__name__}) changes the input of "
                    f"{type(module).__name__}; AdapterFusion fuses adapters that change a module's "
                    "output (LoRA, IA3, sequential bottleneck adapters), not prefix tuning or a "
                    "parallel adapter on BERT's residual argument"
                )
        return None

    def post(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        y = _first(output)
        deltas = torch.stack(
            [_first(m.post(module, args, kwargs, output)) - y for m in self.members.values()],
            dim=-2,
        )  # (..., N, d)
        fused, probs = fuse(y, deltas.to(self.value.weight.dtype), self.query, self.key, self.value)
        if self.recording:
            self._record(probs)
        new = y + fused.to(y.dtype)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    @torch.no_grad()
    def _record(self, probs: torch.Tensor) -> None:
        flat = probs.detach().reshape(-1, probs.shape[-1]).double()
        total = flat.sum(0).cpu()
        self.attention_sum = total if self.attention_sum is None else self.attention_sum + total
        self.attention_rows += flat.shape[0]


def _width(model: nn.Module, module: nn.Module) -> int:
    """The size ``d`` of a module's output: a linear layer's output features, else the hidden size."""
    if isinstance(module, nn.Linear):
        return module.out_features
    if isinstance(module, Conv1D):
        return int(module.weight.shape[1])
    return hidden_size(model)


def _source_folder(source: str) -> Path:
    folder = Path(resolve_model(source))  # a run folder -> its best/
    if not folder.is_dir():
        raise ModelError(f"adapter to fuse {source!r}: no such folder")
    return folder


def _members_of(config: FusionConfig) -> list[dict[str, Any]]:
    """``[{"source", "config"}]`` of the adapters to fuse, read from their folders."""
    members = []
    for source in config.adapters:
        meta = read_adapter_meta(_source_folder(source))
        if meta["config"].get("type") == FusionConfig.method:
            raise ModelError(f"adapter to fuse {source!r} is itself a fusion; fuse its members")
        members.append({"source": str(source), "config": meta["config"]})
    return members


def _load_member(model: nn.Module, name: str, source: str) -> None:
    """The weights of ``source``'s adapter into ``model``'s adapter ``name``. A saved head (the
    source task's labels) is left out; the base is checked by its weights digest, which leaves
    the head out, since the fusion's model has its own task's head."""
    folder = _source_folder(source)
    strip = True
    if (folder / META_FILE).is_file():
        meta = read_adapter_meta(folder)
        strip = bool(meta.get("peft_format"))
        digest, dtype = meta.get("base_weights_digest"), meta.get("base_dtype")
        if digest and dtype == str(next(model.parameters()).dtype):
            if digest != base_weights_digest(model):
                raise ModelError(
                    f"adapter to fuse {source!r} was trained on another base model "
                    f"({meta['base'].get('name_or_path')!r}, weights digest {digest}); fuse "
                    "adapters trained on the fusion run's base model"
                )
    with reading(folder / WEIGHTS_FILE, ModelError):
        tensors = load_file(folder / WEIGHTS_FILE)
    if strip:
        tensors = {k.removeprefix(PEFT_PREFIX): v for k, v in tensors.items()}
    wanted = set(adapter_state_dict(model, name))
    load_adapter_state_dict(model, name, {k: v for k, v in tensors.items() if k in wanted})


def _move_into_fusion(model: nn.Module, name: str, parts: dict[str, str], config: FusionConfig):
    """Replace the member adapters' layers (``parts``: member key -> temporary adapter name) at
    every module by one :class:`FusionLayer` of adapter ``name``; returns the module names."""
    device, dtype = adapter_dtype(model)
    touched = []
    for module_name, module, slot in slots(model):
        present = {key: slot[tmp] for key, tmp in parts.items() if tmp in slot}
        if not present:
            continue
        for tmp in parts.values():
            if tmp in slot:
                del slot[tmp]
        layer = FusionLayer(present, _width(model, module), config.key_dim)
        attach(module, name, layer.to(device, dtype))
        touched.append(module_name)
    return touched


def inject(model: nn.Module, name: str, config: FusionConfig) -> tuple[list[str], FusionConfig]:
    """Load the adapters to fuse (or, reloading a saved fusion, build their layers from
    ``members``), add the target adapter, and put one fusion layer at every module they touch.
    Returns the modules and the config with ``members`` filled in (what a saved fusion records)."""
    fresh = not config.members
    members = _members_of(config) if fresh else [dict(m) for m in config.members]
    specs = {str(i): m["config"] for i, m in enumerate(members)}
    if config.target is not None:
        specs[TARGET] = config.target
    parts = {key: f"{name}--fused-{key}" for key in specs}
    try:
        for key, spec in specs.items():
            add_adapter(model, parts[key], adapter_config_from_dict(spec, key=f"adapter.{key}"))
        if fresh:
            for i, m in enumerate(members):
                _load_member(model, parts[str(i)], m["source"])
        touched = _move_into_fusion(model, name, parts, config)
    finally:
        state = state_of(model)
        for tmp in parts.values():
            if tmp in state.adapters:
                delete_adapter(model, tmp)  # detaches what was not moved (after a failure)
    return touched, replace(config, members=members)


def member_labels(config: FusionConfig) -> list[str]:
    """Short names of the fused adapters (a run folder's name), then ``target``."""
    labels = []
    for m in config.members:
        path = Path(m["source"])
        labels.append(path.parent.name if path.name == "best" else path.name)
    return labels + ([TARGET] if config.target is not None else [])


_LAYER = re.compile(r"\.(\d+)\.")


@contextmanager
def fusion_attention(model: nn.Module) -> Iterator[dict[str, Any]]:
    """Record the fusion attention while the block runs (e.g. a dev evaluation); the yielded dict
    is filled on exit with ``{"adapters": [...], "layers": {layer: [mean weight per adapter]}}``
    (each layer's weights averaged over its fused modules and all token positions; they sum to
    1). It stays empty when the model has no fusion adapter."""
    found = [
        (module_name, layer)
        for module_name, _, slot in slots(model)
        for layer in slot.values()
        if isinstance(layer, FusionLayer)
    ]
    result: dict[str, Any] = {}
    for _, layer in found:
        layer.recording, layer.attention_sum, layer.attention_rows = True, None, 0
    try:
        yield result
    finally:
        for _, layer in found:
            layer.recording = False
    configs = [i.config for i in state_of(model).adapters.values()]
    fusion = next((c for c in configs if isinstance(c, FusionConfig)), None)
    if fusion is not None and found:
        keys = [str(i) for i in range(len(fusion.members))]
        keys += [TARGET] if fusion.target is not None else []
        result.update(_per_layer(found, member_labels(fusion), keys))


def _per_layer(
    found: Sequence[tuple[str, FusionLayer]], labels: list[str], keys: list[str]
) -> dict[str, Any]:
    """Each layer's mean attention per member ``keys`` (zero where a member is absent)."""
    sums: dict[str, list[torch.Tensor]] = {}
    for module_name, layer in found:
        if layer.attention_sum is None:
            continue
        mean = layer.attention_sum / max(layer.attention_rows, 1)
        full = torch.zeros(len(keys), dtype=torch.float64)
        for j, key in enumerate(layer.members):
            full[keys.index(key)] = mean[j]
        match = _LAYER.search(f".{module_name}.")
        sums.setdefault(match.group(1) if match else "other", []).append(full)
    order = sorted(sums, key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0))
    layers = {s: [round(float(x), 6) for x in torch.stack(sums[s]).mean(0).tolist()] for s in order}
    return {"adapters": labels, "layers": layers} if layers else {}


register(
    AdapterMethod(
        "fusion",
        inject,
        presets={
            "fusion": (
                FusionConfig,
                "attention over trained, frozen adapters (bottleneck or LoRA) per layer, "
                "optionally with a new target adapter (Pfeiffer et al. 2021, AdapterFusion)",
            )
        },
        composite=True,
    )
)

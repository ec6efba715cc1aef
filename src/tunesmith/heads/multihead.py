"""A shared encoder with one head module per task (the "shared encoder, task-specific heads" model).

:class:`MultiHeadModel` wraps a transformers ``AutoModel`` backbone (BERT-like) and keeps one small
head per task in an ``nn.ModuleDict``: sequence heads read a pooled vector (the backbone's pooler,
the first token, or the masked mean), token heads read every token state, so a classification task
and an NER task with different label sets train together. Each head is
``dropout -> Linear(hidden, C_task)``, the head transformers uses for BERT-like
``*ForSequenceClassification`` / ``*ForTokenClassification``, so a task can be exported as a plain
single-task HF model (:func:`export_task`) and fine-tuned further on its own (T5 §3.7: multi-task
training followed by per-task fine-tuning was on par with the best setting).

The wrapper exposes ``config`` and ``base_model_prefix = "backbone"`` so freezing, layer-wise LR
decay and adapter injection (which walk ``named_modules()``) treat the backbone as a backbone and the
heads as the task head.

Saved layout (``save_pretrained``): ``model.safetensors`` (``backbone.*`` and ``heads.<task>.*``)
and ``multitask.json`` (backbone config, dropout, per-task kind / labels / pooling). There is no
``config.json`` on purpose: the folder is not a single-task HF model and must not load as one.
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn
from transformers import (
    CONFIG_MAPPING,
    AutoConfig,
    AutoModel,
    PretrainedConfig,
    PreTrainedModel,
)
from transformers.modeling_outputs import SequenceClassifierOutput, TokenClassifierOutput

from tunesmith.errors import ModelError, reading
from tunesmith.heads.swap import init_head_
from tunesmith.heads.view import TaskView
from tunesmith.models import resolve_model
from tunesmith.registry import TASKS
from tunesmith.tasks import task_kind

__all__ = [
    "head_kinds",
    "POOLINGS",
    "HeadSpec",
    "MultiHeadModel",
    "TaskHead",
]


def head_kinds() -> list[str]:
    """The task kinds a head can have: those with a label vocabulary (see :mod:`tunesmith.tasks`)."""
    return [entry.name for entry in TASKS if entry.obj.classification]


POOLINGS = ("pooler", "cls", "mean")
CONFIG_FILE = "multitask.json"
WEIGHTS_FILE = "model.safetensors"
_FORMAT = "tunesmith.multihead"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")  # ModuleDict keys cannot contain "."


@dataclass(frozen=True)
class HeadSpec:
    """One task's head: what it predicts, its label vocabulary, and (sequence tasks) its pooling.

    ``pooling``: ``pooler`` (the backbone's pooler output, as BERT's sequence head; exportable),
    ``cls`` (first token state), ``mean`` (mean of unmasked token states); ``None`` picks
    ``pooler`` when the backbone has one, else ``cls``. Token heads take no pooling.
    """

    kind: str
    labels: tuple[str, ...]
    pooling: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in head_kinds():
            raise ModelError(f"unknown head kind {self.kind!r}; choose one of {head_kinds()}")
        object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ModelError(f"a head needs distinct labels, got {list(self.labels)}")
        if task_kind(self.kind).per_token and self.pooling is not None:
            raise ModelError(f"{self.kind} heads read every token; remove pooling")
        if self.pooling is not None and self.pooling not in POOLINGS:
            raise ModelError(f"unknown pooling {self.pooling!r}; choose one of {POOLINGS}")


class TaskHead(nn.Module):
    """``dropout -> Linear``. features (B, H) -> logits (B, C), or (B, T, H) -> (B, T, C)."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden_size, num_labels)  # HF's name: export copies it as is

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))


class MultiHeadModel(nn.Module):
    """A backbone shared by several tasks, one :class:`TaskHead` per task.

    ``forward(input_ids, attention_mask, token_type_ids, task=name)`` runs the backbone once and the
    head of ``task`` only. It returns a transformers ``ModelOutput`` whose ``logits`` are (B, C_task)
    for a sequence task and (B, T, C_task) for a token task, so code written for HF heads
    (``outputs.logits``, ``task_loss(kind, logits, labels)``, objective terms) works unchanged.
    """

    base_model_prefix = "backbone"

    def __init__(
        self,
        backbone: PreTrainedModel,
        heads: Mapping[str, HeadSpec],
        *,
        dropout: float | None = None,
        init_seed: int | None = None,
    ):
        super().__init__()
        if not heads:
            raise ModelError("a multi-head model needs at least one task head")
        self.backbone = backbone
        self.config: PretrainedConfig = backbone.config
        if dropout is None:
            dropout = getattr(self.config, "classifier_dropout", None)
            dropout = (
                getattr(self.config, "hidden_dropout_prob", 0.1) if dropout is None else dropout
            )
        self.head_dropout = float(dropout)
        self.specs: dict[str, HeadSpec] = {}
        self.heads = nn.ModuleDict()
        for name, spec in heads.items():
            self.add_head(name, spec, init_seed=init_seed)

    @classmethod
    def from_backbone(
        cls,
        name_or_path: str | os.PathLike[str],
        heads: Mapping[str, HeadSpec],
        *,
        dropout: float | None = None,
        init_seed: int | None = None,
        from_scratch: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> MultiHeadModel:
        """Load ``name_or_path`` (embedded name, folder or hub id) as ``AutoModel`` + new heads.

        ``init_seed`` seeds the head initialisation (and the backbone's with ``from_scratch``)
        without touching the global RNG.
        """
        name = os.fspath(name_or_path)
        resolved = resolve_model(name)
        try:
            config = AutoConfig.from_pretrained(resolved)
            with torch.random.fork_rng(devices=[]):
                if init_seed is not None:
                    torch.manual_seed(init_seed)
                if from_scratch:
                    backbone = AutoModel.from_config(config, dtype=dtype)
                else:
                    backbone = AutoModel.from_pretrained(resolved, config=config, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"cannot load backbone {name!r} from {resolved}: {str(exc).strip()[:200]} "
                "(use an embedded model, a folder written by save_pretrained, or a hub id)"
            ) from exc
        backbone.config.name_or_path = name
        return cls(backbone, heads, dropout=dropout, init_seed=init_seed)

    def add_head(self, name: str, spec: HeadSpec, *, init_seed: int | None = None) -> None:
        """Add a new randomly initialised head (``N(0, initializer_range)`` weights, zero bias).

        The init is seeded by ``(init_seed, task name)``, so adding a task never changes the
        initial weights of the others.
        """
        if not _NAME.match(name):
            raise ModelError(f"task name {name!r}: use letters, digits, '_' or '-' (no dots)")
        if name in self.specs:
            raise ModelError(f"task {name!r} already has a head")
        has_pooler = getattr(self.backbone, "pooler", None) is not None
        if not task_kind(spec.kind).per_token and spec.pooling is None:
            spec = HeadSpec(spec.kind, spec.labels, "pooler" if has_pooler else "cls")
        if spec.pooling == "pooler" and not has_pooler:
            raise ModelError(
                f"task {name!r}: pooling 'pooler' needs a backbone with a pooler "
                f"({type(self.backbone).__name__} has none); use pooling: cls or mean"
            )
        head = TaskHead(self.config.hidden_size, len(spec.labels), self.head_dropout)
        std = float(getattr(self.config, "initializer_range", 0.02))
        # seeded: a private RNG stream; unseeded: the global RNG (so two heads still differ)
        g = None
        if init_seed is not None:
            seed = (init_seed * 1_000_003 + zlib.crc32(name.encode())) % 2**63
            g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            init_head_(head.classifier.weight, std, g)
            init_head_(head.classifier.bias, std, g)
        p = next(self.backbone.parameters())
        self.heads[name] = head.to(device=p.device, dtype=p.dtype)
        self.specs[name] = spec

    @property
    def tasks(self) -> list[str]:
        return list(self.specs)

    def task_kind(self, task: str) -> str:
        """``sequence_classification`` or ``token_classification`` (picks the task loss)."""
        return self._spec(task).kind

    def id2label(self, task: str) -> dict[int, str]:
        return dict(enumerate(self._spec(task).labels))

    def _spec(self, task: str) -> HeadSpec:
        if task not in self.specs:
            raise ModelError(f"unknown task {task!r}; this model has heads for {self.tasks}")
        return self.specs[task]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        *,
        task: str,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> SequenceClassifierOutput | TokenClassifierOutput:
        """input_ids (B, T) -> ``logits`` (B, C_task) or (B, T, C_task) of ``task``'s head."""
        spec = self._spec(task)
        kw: dict[str, Any] = {"attention_mask": attention_mask}
        if token_type_ids is not None:
            kw["token_type_ids"] = token_type_ids
        if output_attentions:  # only when asked: some attention backends cannot return them
            kw["output_attentions"] = True
        out = self.backbone(
            input_ids=input_ids, output_hidden_states=output_hidden_states, return_dict=True, **kw
        )
        extras = {"hidden_states": out.hidden_states, "attentions": out.attentions}
        states = out.last_hidden_state  # (B, T, H)
        if task_kind(spec.kind).per_token:
            return TokenClassifierOutput(logits=self.heads[task](states), **extras)
        if spec.pooling == "pooler":
            pooled = out.pooler_output
        elif spec.pooling == "cls":
            pooled = states[:, 0]
        else:
            mask = (
                torch.ones(states.shape[:2], device=states.device)
                if attention_mask is None
                else attention_mask
            ).to(states.dtype)
            pooled = (states * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return SequenceClassifierOutput(logits=self.heads[task](pooled), **extras)

    def task_view(self, task: str) -> nn.Module:
        """A module whose ``forward(**batch)`` is ``self.forward(**batch, task=task)``: hands one
        task to code written for single-task models (``train.evaluation.evaluate``)."""
        self._spec(task)
        return TaskView(self, task=task)

    # -- save / load ------------------------------------------------------------------------

    def save_pretrained(self, path: str | os.PathLike[str], safe_serialization: bool = True):
        """Write ``model.safetensors`` + ``multitask.json`` into ``path`` (same call as HF models,
        so ``train.checkpoint.save_best`` can save a multi-head model unchanged)."""
        if not safe_serialization:
            raise ValueError("MultiHeadModel is saved as safetensors only")
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_model(self, str(path / WEIGHTS_FILE))
        meta = self.saved_meta(_FORMAT)
        (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2, default=str))

    def saved_meta(self, fmt: str) -> dict[str, Any]:
        """What ``multitask.json`` records of the backbone and the heads, in format ``fmt``
        (a subclass with another layout adds its own keys)."""
        return {
            "format": fmt,
            "version": 1,
            "backbone": {
                "name_or_path": getattr(self.config, "name_or_path", None),
                "architecture": type(self.backbone).__name__,
                "config": self.config.to_dict(),
            },
            "dropout": self.head_dropout,
            "heads": {n: {**asdict(s), "labels": list(s.labels)} for n, s in self.specs.items()},
        }

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str]) -> MultiHeadModel:
        """Rebuild a model written by :meth:`save_pretrained` (no network; eval mode, as HF)."""
        path = Path(path)
        meta = read_meta(path, _FORMAT, "a multi-head model")
        config = config_from_dict(meta["backbone"]["config"])
        with torch.random.fork_rng(devices=[]):  # weights are overwritten below
            backbone = AutoModel.from_config(config)
        with torch.random.fork_rng(devices=[]):
            model = cls(backbone, head_specs(meta), dropout=meta["dropout"])
        missing, unexpected = load_model(model, str(path / WEIGHTS_FILE), strict=False)
        if missing or unexpected:
            raise ModelError(
                f"{path / WEIGHTS_FILE} does not fit {CONFIG_FILE}: "
                f"missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]}"
            )
        return model.eval()


def read_meta(path: Path, fmt: str, what: str) -> dict[str, Any]:
    """``path/multitask.json``, which must be in format ``fmt``; one-line errors naming ``what``
    the folder should hold otherwise."""
    meta_file = path / CONFIG_FILE
    if not meta_file.is_file():
        raise ModelError(f"{path} has no {CONFIG_FILE}; it is not {what} saved by tunesmith")
    with reading(meta_file, ModelError):
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    if meta.get("format") != fmt:
        raise ModelError(f"{meta_file}: not a {fmt} file (format {meta.get('format')!r})")
    return meta


def head_specs(meta: Mapping[str, Any]) -> dict[str, HeadSpec]:
    """The heads a ``multitask.json`` records (:meth:`MultiHeadModel.saved_meta`)."""
    return {
        n: HeadSpec(h["kind"], tuple(h["labels"]), h.get("pooling"))
        for n, h in meta["heads"].items()
    }


def config_from_dict(data: Mapping[str, Any]) -> PretrainedConfig:
    """A config object from ``config.to_dict()`` output (``model_type`` picks the class)."""
    data = dict(data)
    model_type = data.pop("model_type", None)
    if model_type not in CONFIG_MAPPING:
        raise ModelError(f"unknown backbone model_type {model_type!r} in {CONFIG_FILE}")
    return CONFIG_MAPPING[model_type].from_dict(data)

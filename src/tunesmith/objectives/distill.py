"""Distillation objective terms: the student learns from a frozen teacher (Hinton et al. 2015).

Registered names (recipe ``objectives: [{name, weight, params}]``):

* ``kd`` — Hinton soft targets, ``T^2 * KL(p_t^T || p_s^T)``, for sequence / token
  classification and (shifted, prompt-masked) causal LMs. Hinton's
  ``alpha * T^2 KL + (1 - alpha) * CE`` is ``weight: alpha`` here plus a task-loss weight of
  ``1 - alpha``.
* ``lm_kd`` — token-level KD for causal LMs: forward KL (beta=0), reverse KL (beta=1) or
  generalized JSD(beta) in TRL's convention, times T^2 (identical to TRL's loss at T=1).
* ``hidden_mse`` / ``hidden_cosine`` — hidden states of mapped layers (TinyBERT / DistilBERT),
  with a learned projection when the widths differ.
* ``attention_kd`` — attention maps of mapped layers (TinyBERT MSE / MiniLM KL).
* ``gkd`` — on-policy GKD: with probability ``lmbda`` the student samples the responses and the
  teacher scores them; otherwise the dataset responses are used.

Teacher outputs come from cached batch keys when present (``teacher_logits``; or
``teacher_topk_logprobs`` + ``teacher_topk_ids``, see :mod:`tunesmith.distill.collate`), else
from a live teacher bound with :func:`bind_teacher` (one shared forward per batch).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch
from torch import nn

from tunesmith.configschema import fld
from tunesmith.distill.chunked import ChunkedOutputs, chunked_forward, lm_head
from tunesmith.distill.losses import (
    attention_loss,
    generalized_jsd,
    hidden_state_loss,
    hinton_kd_loss,
    lm_token_mask,
    sparse_forward_kl,
)
from tunesmith.distill.seqkd import generate_completions, prompts_from_batch
from tunesmith.distill.student import layer_map
from tunesmith.distill.teacher import TeacherRunner
from tunesmith.distill.topk import cached_lm_divergence
from tunesmith.errors import ConfigError
from tunesmith.objectives.base import ObjectiveTerm, register

__all__ = [
    "AttentionTerm",
    "DistillTerm",
    "HiddenCosineTerm",
    "HiddenMSETerm",
    "KDTerm",
    "LMKDTerm",
    "OnPolicyTerm",
    "bind_teacher",
]


def _is_causal_lm(model: nn.Module) -> bool:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return type(base).__name__ in set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())


class DistillTerm(ObjectiveTerm):
    """A term that reads a teacher: cached batch keys first, else the bound :class:`TeacherRunner`."""

    needs_teacher = True
    teacher: TeacherRunner | None = None

    def __init__(self, weight: float = 1.0, params: Any = None):
        super().__init__(weight, params)
        checks = {
            "temperature": lambda v: v > 0,
            "sampling_temperature": lambda v: v > 0,
            "beta": lambda v: 0 <= v <= 1,
            "lmbda": lambda v: 0 <= v <= 1,
        }
        for key, ok in checks.items():
            value = getattr(self.params, key, None)
            if value is not None and not ok(value):
                raise ConfigError(
                    f"objectives.{self.name}.params.{key}",
                    f"invalid value {value}",
                    "temperatures must be > 0; beta and lmbda lie in [0, 1]",
                )

    def bind(self, runner: TeacherRunner) -> None:
        self.teacher = runner

    def teacher_outputs(self, batch) -> Any:
        if self.teacher is None:
            raise ConfigError(
                f"objectives.{self.name}",
                "no teacher: the batch has no cached teacher outputs and no teacher is bound",
                "set distill.teacher in the recipe (or build the teacher cache)",
            )
        return self.teacher(batch)


def _lm_divergence(term: DistillTerm, outputs, batch, beta: float, temperature: float):
    """T^2 * divergence between next-token distributions over the trained positions.

    ``outputs``: the student's model outputs; :class:`ChunkedOutputs` (``train.loss_chunk_tokens``)
    computes the same value chunk by chunk, never holding either model's full logits."""
    chunked = outputs.lm if isinstance(outputs, ChunkedOutputs) else None
    labels = batch["labels"]
    if "teacher_topk_tail" in batch:  # cached top-k + tail: any beta (tunesmith.distill.topk)
        if chunked is not None:
            return temperature**2 * chunked.topk_tail(labels, batch, beta, temperature)
        mask, student = lm_token_mask(labels), outputs.logits[:, :-1]
        return temperature**2 * cached_lm_divergence(student, batch, mask, beta, temperature)
    if "teacher_topk_logprobs" in batch:
        if beta != 0.0:
            raise ConfigError(
                f"objectives.{term.name}.params.beta",
                "cached top-k teacher outputs without a tail bucket support forward KL only",
                "rebuild the cache (tail buckets), or set beta: 0",
            )
        lp, ids = batch["teacher_topk_logprobs"], batch["teacher_topk_ids"]
        if chunked is not None:
            return temperature**2 * chunked.sparse_forward_kl(labels, lp, ids, temperature)
        mask, student = lm_token_mask(labels), outputs.logits[:, :-1]
        return temperature**2 * sparse_forward_kl(
            student, lp[:, :-1], ids[:, :-1], mask, temperature
        )
    if chunked is not None:
        runner = term.teacher if term.teacher is not None else term.teacher_outputs(batch)
        hidden, head = runner.final_hidden(batch), lm_head(runner.model)
        return temperature**2 * chunked.divergence(labels, hidden, head, beta, temperature)
    teacher = term.teacher_outputs(batch).logits[:, :-1]
    mask, student = lm_token_mask(labels), outputs.logits[:, :-1]
    return temperature**2 * generalized_jsd(student, teacher, beta, temperature, mask)


class KDTerm(DistillTerm):
    name = "kd"
    cacheable = True  # reads the teacher's logits only

    @dataclasses.dataclass
    class Params:
        temperature: float = fld(2.0, "softmax temperature T (the loss is scaled by T^2)")

    _causal: bool | None = None

    def setup(self, model: nn.Module) -> None:
        self._causal = _is_causal_lm(model)

    def loss(self, model, batch, outputs) -> torch.Tensor:
        if self._causal is None:
            self.setup(model)
        T = self.params.temperature
        if self._causal:
            return _lm_divergence(self, outputs, batch, 0.0, T)
        logits = outputs.logits
        cached = batch.get("teacher_logits")
        teacher = cached if cached is not None else self.teacher_outputs(batch).logits
        mask = batch["labels"] != -100 if logits.dim() == 3 else None  # token cls / seq2seq
        return hinton_kd_loss(logits, teacher, T, mask)


class LMKDTerm(DistillTerm):
    name = "lm_kd"
    cacheable = True  # reads the teacher's logits only (top-k log-probs from the cache)

    @dataclasses.dataclass
    class Params:
        beta: float = fld(0.0, "0 = forward KL(teacher||student), 1 = reverse KL, between = JSD")
        temperature: float = fld(1.0, "softmax temperature T (the loss is scaled by T^2)")

    def loss(self, model, batch, outputs) -> torch.Tensor:
        return _lm_divergence(self, outputs, batch, self.params.beta, self.params.temperature)


def _pairs(term: DistillTerm, model: nn.Module, first: int) -> list[tuple[int, int]]:
    """(student index, teacher index) pairs from params.layers / params.teacher_layers.

    Indices are hidden-state indices (0 = embeddings, i = block i); ``first`` is the lowest
    allowed student index (1 for attention maps, which exist per block only).
    """
    p, n = term.params, model.config.num_hidden_layers
    layers = p.layers if p.layers is not None else list(range(max(first, 1), n + 1))
    layers = [i + n + 1 if i < 0 else i for i in layers]
    if any(not first <= i <= n for i in layers):
        raise ConfigError(
            f"objectives.{term.name}.params.layers",
            f"student layers {p.layers} out of range {first}..{n}",
        )
    if p.teacher_layers is not None:
        if len(p.teacher_layers) != len(layers):
            raise ConfigError(
                f"objectives.{term.name}.params.teacher_layers",
                f"{len(p.teacher_layers)} teacher layers for {len(layers)} student layers",
            )
        return list(zip(layers, p.teacher_layers, strict=True))
    mapping = layer_map(model, term.teacher.config.num_hidden_layers)
    return [(i, mapping[i]) for i in layers]


def _require_teacher(term: DistillTerm) -> TeacherRunner:
    if term.teacher is None:
        raise ConfigError(
            f"objectives.{term.name}",
            "needs a live teacher (cached outputs hold logits only)",
            "set distill.teacher; bind it before setup",
        )
    return term.teacher


class _HiddenTerm(DistillTerm):
    kind: str

    @dataclasses.dataclass
    class Params:
        layers: list[int] | None = fld(
            None, "student hidden-state indices (0 = embeddings, -1 = top); all blocks"
        )
        teacher_layers: list[int] | None = fld(
            None, "teacher index per student layer; default: copied-from or uniform"
        )

    def __init__(self, weight: float = 1.0, params: Any = None):
        super().__init__(weight, params)
        self.pairs: list[tuple[int, int]] = []
        self.projections = nn.ModuleList()

    def forward_kwargs(self) -> dict[str, Any]:
        return {"output_hidden_states": True}  # asked per step: the saved config stays clean

    def trainable_modules(self) -> list[nn.Module]:
        return [self.projections] if len(self.projections) else []

    def setup(self, model: nn.Module) -> None:
        runner = _require_teacher(self)
        runner.require(hidden_states=True)
        self.pairs = _pairs(self, model, first=0)
        d_s, d_t = model.config.hidden_size, runner.config.hidden_size
        self.projections = nn.ModuleList(
            [nn.Linear(d_s, d_t) for _ in self.pairs] if d_s != d_t else []
        )

    def loss(self, model, batch, outputs) -> torch.Tensor:
        student = outputs.hidden_states
        teacher = self.teacher_outputs(batch).hidden_states
        mask = batch.get("attention_mask")
        if len(self.projections):
            self.projections.to(student[0].device)  # in place: optimizer references stay valid
        total = student[0].new_zeros((), dtype=torch.float32)
        for j, (i, k) in enumerate(self.pairs):
            proj = self.projections[j] if len(self.projections) else None
            total = total + hidden_state_loss(student[i], teacher[k], mask, self.kind, proj)
        return total / len(self.pairs)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"proj.{k}": v for k, v in self.projections.state_dict().items()}

    def load_state_dict(self, state) -> None:
        own = {k[len("proj.") :]: v for k, v in state.items() if k.startswith("proj.")}
        with torch.no_grad():
            for k, v in self.projections.state_dict().items():
                v.copy_(own[k])  # copy in place: the optimizer holds these very tensors


class HiddenMSETerm(_HiddenTerm):
    name = "hidden_mse"
    kind = "mse"


class HiddenCosineTerm(_HiddenTerm):
    name = "hidden_cosine"
    kind = "cosine"


class AttentionTerm(DistillTerm):
    name = "attention_kd"

    @dataclasses.dataclass
    class Params:
        layers: list[int] | None = fld(None, "student blocks (1..L, -1 = top); default all")
        teacher_layers: list[int] | None = fld(
            None, "teacher block per student block; default mapped"
        )
        kind: Literal["kl", "mse"] = fld("kl", "kl (MiniLM) or mse (TinyBERT) between the maps")

    def forward_kwargs(self) -> dict[str, Any]:
        return {"output_attentions": True}

    def setup(self, model: nn.Module) -> None:
        runner = _require_teacher(self)
        runner.require(attentions=True)
        if hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation("eager")  # SDPA does not return attention maps
        self.pairs = _pairs(self, model, first=1)

    def loss(self, model, batch, outputs) -> torch.Tensor:
        student, teacher = outputs.attentions, self.teacher_outputs(batch).attentions
        mask = batch.get("attention_mask")
        values = [
            attention_loss(student[i - 1], teacher[k - 1], mask, self.params.kind)
            for i, k in self.pairs
        ]
        return torch.stack(values).mean()


class OnPolicyTerm(DistillTerm):
    name = "gkd"

    @dataclasses.dataclass
    class Params:
        lmbda: float = fld(0.5, "probability of a student-generated batch (GKD lambda)")
        beta: float = fld(0.5, "JSD beta (0 = forward KL)")
        temperature: float = fld(1.0, "loss temperature")
        sampling_temperature: float = fld(1.0, "temperature of the student's sampling")
        max_new_tokens: int = fld(64, "length of sampled responses")
        seed: int = fld(0, "seed of the lambda draws")

    def __init__(self, weight: float = 1.0, params: Any = None):
        super().__init__(weight, params)
        self.generator = torch.Generator().manual_seed(self.params.seed)
        self.last_on_policy = False

    def setup(self, model: nn.Module) -> None:
        _require_teacher(self)

    def _sample(self, model: nn.Module, batch) -> dict[str, torch.Tensor]:
        gen = getattr(model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None) or model.config.eos_token_id
        pad = model.config.pad_token_id
        pad = pad if pad is not None else (eos[0] if isinstance(eos, list) else eos)
        seed = int(torch.randint(2**62, (1,), generator=self.generator))
        device = batch["input_ids"].device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            return generate_completions(
                model,
                prompts_from_batch(batch),
                max_new_tokens=self.params.max_new_tokens,
                pad_token_id=pad,
                eos_token_id=eos,
                do_sample=True,
                temperature=self.params.sampling_temperature,
            )

    def loss(self, model, batch, outputs) -> torch.Tensor:
        p = self.params
        self.last_on_policy = float(torch.rand(1, generator=self.generator)) < p.lmbda
        if self.last_on_policy:
            batch = self._sample(model, batch)
            inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
            if isinstance(outputs, ChunkedOutputs):  # the sampled batch, chunked as well
                outputs = chunked_forward(model, model, inputs, outputs.lm.chunk)
            else:
                outputs = model(**inputs)
        return _lm_divergence(self, outputs, batch, p.beta, p.temperature)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])


def bind_teacher(terms: list[ObjectiveTerm], teacher: nn.Module | TeacherRunner) -> TeacherRunner:
    """Give every distillation term one shared :class:`TeacherRunner`. Call before ``setup``."""
    runner = teacher if isinstance(teacher, TeacherRunner) else TeacherRunner(teacher)
    for term in terms:
        if isinstance(term, DistillTerm):
            term.bind(runner)
    return runner


register(KDTerm, "Hinton KD: T^2 * KL(teacher || student) on softened logits (Hinton et al. 2015)")
register(LMKDTerm, "token-level LM distillation: forward/reverse KL or generalized JSD(beta)")
register(
    HiddenMSETerm, "hidden-state MSE of mapped layers, projected when widths differ (TinyBERT)"
)
register(HiddenCosineTerm, "hidden-state cosine loss of mapped layers (DistilBERT)")
register(AttentionTerm, "attention-map KL/MSE of mapped layers (MiniLM / TinyBERT)")
register(
    OnPolicyTerm, "on-policy GKD: student samples with prob. lmbda, teacher scores (Agarwal 2024)"
)

"""Continual-learning objective terms: stay good at earlier tasks while learning a new one.

Registered names (recipe ``objectives: [{name, weight, params}]``; ``weight`` is the paper's
lambda):

* ``ewc`` — Elastic Weight Consolidation (Kirkpatrick et al. 2017):
  ``(lambda / 2) * sum_t sum_i F_t,i (theta_i - theta*_t,i)^2`` over every earlier task t, with
  ``F_t`` the diagonal Fisher at the end of task t and ``theta*_t`` the weights then.
* ``online_ewc`` — online EWC (Schwarz et al. 2018, "Progress & Compress"):
  ``(lambda / 2) * sum_i gamma * F*_i (theta_i - theta*_i)^2`` with one running Fisher
  ``F*_k = gamma * F*_{k-1} + F_k`` and ``theta*`` the weights after the previous stage.
* ``l2_anchor`` — ``(lambda / 2) * sum_i (theta_i - theta*_i)^2`` towards the previous stage's
  weights: EWC with F = 1 (L2-SP's penalty, but anchored to the last stage instead of the
  pretrained weights, and with EWC's 1/2).
* ``lwf`` — Learning without Forgetting (Li & Hoiem 2017): ``T^2 * KL(p_prev^T || p_cur^T)``
  between the previous model's and the current model's softened outputs on the *new* data:
  summed over the earlier tasks' heads (separate heads), over the earlier tasks' labels (a
  shared head), or per response token (causal LM, positions with labels != -100).
* ``replay`` — experience replay with separate heads (Chaudhry et al. 2019): each step, the
  cross-entropy of ``round(ratio * batch)`` buffered old-task examples, each through its own
  task's (frozen) head. With a shared head or a causal LM, replay is a data matter instead
  (:meth:`tunesmith.continual.ReservoirBuffer.mix`) and needs no term.

Per-stage state (anchors, Fishers, old heads, the previous model's folder) comes from a
:class:`~tunesmith.continual.ContinualState`: bound in memory with :meth:`ContinualTerm.bind_state`
before ``setup``, or read in ``setup`` from the file named by ``params.state``. It is built once
per stage; ``state_dict`` returns the tensors the term uses, so a checkpoint resumes the stage
with exactly the same penalty.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.continual.heads import logits_per_head
from tunesmith.continual.penalty import merge_quadratics, quadratic_penalty
from tunesmith.continual.state import ContinualState
from tunesmith.data.collate import Collator
from tunesmith.distill.losses import generalized_jsd, hinton_kd_loss, lm_token_mask
from tunesmith.errors import ConfigError
from tunesmith.objectives.base import ObjectiveTerm, register
from tunesmith.objectives.task import IGNORE_INDEX, model_inputs

__all__ = [
    "ContinualTerm",
    "EWCTerm",
    "L2AnchorTerm",
    "LwFTerm",
    "OnlineEWCTerm",
    "ReplayTerm",
]

logger = logging.getLogger(__name__)

_STATE_HELP = "continual state file (.safetensors) written by the sequence runner"


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class ContinualTerm(ObjectiveTerm):
    """A term whose per-stage state is a :class:`ContinualState`."""

    _state: ContinualState | None = None

    def bind_state(self, state: ContinualState) -> None:
        """Hand the term its state in memory (call before ``setup``; overrides ``params.state``)."""
        self._state = state

    def continual_state(self) -> ContinualState:
        if self._state is None:
            path = getattr(self.params, "state", None)
            if not path:
                raise ConfigError(
                    f"objectives.{self.name}.params.state",
                    "no continual state: this term needs the anchors/Fisher of earlier stages",
                    "run the task sequence with `tunesmith continual`, or give params.state",
                )
            self._state = ContinualState.load(path)
        return self._state


# ---------------------------------------------------------------------------------------------
# Quadratic penalties: EWC, online EWC, L2 anchor


def _usable(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], what: str
) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` that name a trainable parameter of the same shape."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    kept = {n: t for n, t in tensors.items() if n in params and params[n].shape == t.shape}
    if len(kept) < len(tensors):
        logger.info(
            "%s: %d of %d stored tensors match no trainable parameter of the same shape "
            "(frozen now, or a task head) and are not penalised",
            what,
            len(tensors) - len(kept),
            len(tensors),
        )
    return kept


class EWCTerm(ContinualTerm):
    name = "ewc"

    @dataclasses.dataclass
    class Params:
        state: str | None = dataclasses.field(default=None, metadata={"help": _STATE_HELP})

    fisher: dict[str, torch.Tensor] | None = None
    anchor: dict[str, torch.Tensor]
    const: float = 0.0

    def __init__(self, weight: float = 1.0, params: Any = None):
        super().__init__(weight, params)
        self.anchor = {}
        self._on: torch.device | None = None

    def penalties(self, state: ContinualState) -> list[tuple[dict | None, dict]]:
        """(Fisher, anchor) per earlier task."""
        return [(state.fishers[t], state.anchors[t]) for t in state.seen if t in state.fishers]

    def setup(self, model: nn.Module) -> None:
        pairs = []
        for fisher, anchor in self.penalties(self.continual_state()):
            if fisher is not None:
                anchor = {n: a for n, a in anchor.items() if n in fisher}
            anchor = _usable(model, anchor, self.name)
            fisher = {n: fisher[n] for n in anchor} if fisher is not None else None
            pairs.append((fisher, anchor))
        self.fisher, self.anchor, self.const = merge_quadratics(pairs)
        self._on = None

    def _move(self, device: torch.device) -> None:
        """Move the state to the parameters' device once (not every step)."""
        if self._on != device:
            self.anchor = {n: t.to(device, torch.float32) for n, t in self.anchor.items()}
            if self.fisher is not None:
                self.fisher = {n: t.to(device, torch.float32) for n, t in self.fisher.items()}
            self._on = device

    def loss(self, model, batch, outputs) -> torch.Tensor:
        if not self.anchor:
            return torch.zeros((), device=_device(model))
        self._move(_device(model))
        # c belongs to the un-halved sum: 0.5 * (sum A (theta - m)^2 + c)
        return quadratic_penalty(model, self.fisher, self.anchor) + 0.5 * self.const

    def state_dict(self) -> dict[str, torch.Tensor]:
        out = {f"anchor.{n}": t for n, t in self.anchor.items()}
        if self.fisher is not None:
            out |= {f"fisher.{n}": t for n, t in self.fisher.items()}
        out["const"] = torch.tensor(self.const, dtype=torch.float64)
        return out

    def load_state_dict(self, state) -> None:
        self.anchor = {k[7:]: v.clone() for k, v in state.items() if k.startswith("anchor.")}
        fisher = {k[7:]: v.clone() for k, v in state.items() if k.startswith("fisher.")}
        self.fisher = fisher or None
        self.const = float(state["const"]) if "const" in state else 0.0
        self._on = None


class OnlineEWCTerm(EWCTerm):
    name = "online_ewc"

    @dataclasses.dataclass
    class Params:
        state: str | None = dataclasses.field(default=None, metadata={"help": _STATE_HELP})
        gamma: float = dataclasses.field(
            default=1.0,
            metadata={"help": "decay of the running Fisher: F* = gamma*F*_old + F_new (0..1]"},
        )

    def __init__(self, weight: float = 1.0, params: Any = None):
        super().__init__(weight, params)
        if not 0.0 <= self.params.gamma <= 1.0:
            raise ConfigError(
                f"objectives.{self.name}.params.gamma",
                f"must be in [0, 1], got {self.params.gamma}",
            )

    def penalties(self, state: ContinualState) -> list[tuple[dict | None, dict]]:
        anchor = state.latest_anchor()
        if not anchor or not state.online_fisher:
            return []
        gamma = self.params.gamma
        return [({n: gamma * f for n, f in state.online_fisher.items()}, anchor)]


class L2AnchorTerm(EWCTerm):
    name = "l2_anchor"

    def penalties(self, state: ContinualState) -> list[tuple[dict | None, dict]]:
        anchor = state.latest_anchor()
        return [(None, anchor)] if anchor else []


# ---------------------------------------------------------------------------------------------
# Learning without Forgetting


class LwFTerm(ContinualTerm):
    name = "lwf"

    @dataclasses.dataclass
    class Params:
        state: str | None = dataclasses.field(default=None, metadata={"help": _STATE_HELP})
        temperature: float = dataclasses.field(
            default=2.0, metadata={"help": "softmax temperature T (Li & Hoiem use 2; loss * T^2)"}
        )

    previous: nn.Module | None = None

    def __init__(self, weight: float = 1.0, params: Any = None):
        super().__init__(weight, params)
        if self.params.temperature <= 0:
            raise ConfigError(f"objectives.{self.name}.params.temperature", "must be > 0")
        self.heads: list[dict[str, torch.Tensor]] = []

    def bind_previous(self, model: nn.Module) -> None:
        """Use ``model`` as the previous model (instead of loading ``state.previous_model``)."""
        self.previous = model

    def setup(self, model: nn.Module) -> None:
        state = self.continual_state()
        if self.previous is None and state.previous_model is None:
            return  # first stage: nothing to remember
        if self.previous is None:
            from tunesmith.adapters import load_model_or_adapter

            self.previous = load_model_or_adapter(state.previous_model, state.task)
        self.previous.requires_grad_(False)
        self.previous.eval()
        if state.heads == "separate" and state.task == "sequence_classification":
            self.heads = [state.head_weights[t] for t in state.seen if t in state.head_weights]

    def loss(self, model, batch, outputs) -> torch.Tensor:
        if self.previous is None:
            return torch.zeros((), device=_device(model))
        device = _device(model)
        if _device(self.previous) != device:
            self.previous.to(device)
        state, T = self.continual_state(), self.params.temperature
        task = state.task
        inputs = model_inputs(task, batch)
        if self.heads:  # separate heads: old tasks' outputs through their own heads
            current = logits_per_head(model, self.heads, inputs)
            with torch.no_grad():
                previous = logits_per_head(self.previous, self.heads, inputs)
            losses = [hinton_kd_loss(c, p, T) for c, p in zip(current, previous, strict=True)]
            return torch.stack(losses).sum()
        with torch.no_grad():
            previous = self.previous(**inputs).logits
        current = outputs.logits
        if task == "causal_lm":
            mask = lm_token_mask(batch["labels"])
            return T**2 * generalized_jsd(current[:, :-1], previous[:, :-1], 0.0, T, mask)
        if current.dim() == 3:  # token classification, seq2seq
            return hinton_kd_loss(current, previous, T, batch["labels"] != IGNORE_INDEX)
        ids = state.old_label_ids
        if ids is not None:  # shared head: the labels of the tasks seen so far
            current, previous = current[:, ids], previous[:, ids]
        return hinton_kd_loss(current, previous, T)


# ---------------------------------------------------------------------------------------------
# Replay through separate heads


class ReplayTerm(ContinualTerm):
    name = "replay"

    @dataclasses.dataclass
    class Params:
        state: str | None = dataclasses.field(default=None, metadata={"help": _STATE_HELP})
        ratio: float = dataclasses.field(
            default=0.25, metadata={"help": "replayed examples per new example in each batch"}
        )
        seed: int = dataclasses.field(default=0, metadata={"help": "seed of the replay draws"})

    def __init__(self, weight: float = 1.0, params: Any = None):
        super().__init__(weight, params)
        if self.params.ratio <= 0:
            raise ConfigError(f"objectives.{self.name}.params.ratio", "must be > 0")
        self.generator = torch.Generator().manual_seed(self.params.seed)
        self.examples: list[dict] = []
        self.heads: list[dict[str, torch.Tensor]] = []

    def setup(self, model: nn.Module) -> None:
        state = self.continual_state()
        self.task = state.task
        if not state.replay_file:
            return
        lines = Path(state.replay_file).read_text().splitlines()
        self.examples = [json.loads(line) for line in lines if line.strip()]
        tasks = [t for t in state.seen if t in state.head_weights]
        index = {t: i for i, t in enumerate(tasks)}
        self.heads = [state.head_weights[t] for t in tasks]
        unknown = {ex["task"] for ex in self.examples} - set(index)
        if unknown:
            raise ConfigError(
                f"objectives.{self.name}", f"replay examples of tasks without a head: {unknown}"
            )
        for ex in self.examples:
            ex["head"] = index[ex["task"]]
        pad = model.config.pad_token_id
        self.collator = Collator(pad_token_id=pad if pad is not None else 0)

    def loss(self, model, batch, outputs) -> torch.Tensor:
        device = _device(model)
        if not self.examples:
            return torch.zeros((), device=device)
        k = max(1, round(self.params.ratio * batch["input_ids"].shape[0]))
        idx = torch.randint(len(self.examples), (k,), generator=self.generator).tolist()
        chosen = [self.examples[i] for i in idx]
        keys = ("input_ids", "attention_mask", "token_type_ids", "labels")
        replay = self.collator([{key: ex[key] for key in keys if key in ex} for ex in chosen])
        replay = {key: v.to(device) for key, v in replay.items()}
        per_head = logits_per_head(model, self.heads, model_inputs(self.task, replay))
        heads = torch.tensor([ex["head"] for ex in chosen], device=device)
        total = torch.zeros((), device=device)
        for h, logits in enumerate(per_head):
            rows = heads == h
            if rows.any():
                total = total + F.cross_entropy(
                    logits[rows].float(), replay["labels"][rows], reduction="sum"
                )
        return total / k

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])


register(
    EWCTerm, "EWC: (lambda/2) sum F_t (theta - theta*_t)^2 over earlier tasks (Kirkpatrick 2017)"
)
register(OnlineEWCTerm, "online EWC: one gamma-decayed running Fisher (Schwarz et al. 2018)")
register(L2AnchorTerm, "L2 anchor: (lambda/2) ||theta - theta*||^2 to the previous stage's weights")
register(LwFTerm, "LwF: T^2 KL(previous model || current) on the new data (Li & Hoiem 2017)")
register(ReplayTerm, "experience replay through each old task's own head (separate heads)")

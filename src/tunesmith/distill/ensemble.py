"""Several teachers as one: the weighted mixture of their distributions, or one teacher per example.

``distill.teachers: [{model, weight}, ...]`` (one tokenizer / label set, checked when loading)
becomes a :class:`TeacherEnsemble`, a frozen module whose ``forward`` returns one ``logits``
tensor, so every logit term, the :class:`~tunesmith.distill.teacher.TeacherRunner` and the
teacher cache (which then stores the mixture's top-k + tail) use it like a single teacher:

* ``mode="mixture"``: ``logits = log(sum_j w_j softmax(z_j))`` (weights normalised), the
  log-probabilities of the mixture (a valid logit vector: its softmax is the mixture). A term at
  temperature T then sees ``softmax(log p_mix / T)``, the tempered mixture.
* ``mode="per_example"``: each example takes the logits of the teacher with the lowest task loss
  on that example's own labels (ties: the first), so the batch must carry ``labels``
  (:attr:`needs_labels`).

The weights and the mode are buffers, hence in the state dict and in the teacher cache's key.
Hidden-state and attention terms need one teacher: the ensemble refuses to return them.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from tunesmith.errors import ModelError
from tunesmith.tasks import IGNORE_INDEX, task_kind

__all__ = ["MODES", "TeacherEnsemble", "per_example_losses"]

MODES = ("mixture", "per_example")


def per_example_losses(task: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per example (B,) over the positions that carry a label (shifted for a
    causal LM); an example without labelled positions gets 0."""
    logits = logits.float()
    if logits.dim() == 2:  # sequence classification: one label per example
        return nn.functional.cross_entropy(logits, labels, reduction="none")
    if task_kind(task).label_shift:
        logits, labels = logits[:, :-1], labels[:, 1:]
    ce = nn.functional.cross_entropy(
        logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none"
    )
    counts = (labels != IGNORE_INDEX).sum(-1).clamp_min(1)
    return ce.sum(-1) / counts


class TeacherEnsemble(nn.Module):
    """Frozen teachers combined into one logits output (module doc)."""

    def __init__(
        self, teachers: Sequence[nn.Module], weights: Sequence[float], mode: str, task: str
    ):
        super().__init__()
        if mode not in MODES:
            raise ModelError(f"unknown multi-teacher mode {mode!r}; choose one of {list(MODES)}")
        if len(teachers) != len(weights) or not teachers:
            raise ModelError("give one weight per teacher (and at least one teacher)")
        self.teachers = nn.ModuleList(teachers)
        w = torch.tensor([float(x) for x in weights])
        self.register_buffer("weights", w / w.sum())
        self.register_buffer("mode_id", torch.tensor(MODES.index(mode)))
        self.mode, self.task = mode, task
        self.needs_labels = mode == "per_example"
        self.config = teachers[0].config  # same tokenizer / labels: the first one speaks for all
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> Any:
        if output_hidden_states or output_attentions:
            raise ModelError(
                "hidden-state and attention distillation need one teacher, not distill.teachers"
            )
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        inputs |= {"token_type_ids": token_type_ids, "position_ids": position_ids}
        inputs = {k: v for k, v in inputs.items() if v is not None}
        logits = [self._logits(t, inputs) for t in self.teachers]
        if self.mode == "per_example":
            if labels is None:
                raise ModelError("per_example multi-teacher distillation needs the batch's labels")
            losses = torch.stack([per_example_losses(self.task, z, labels) for z in logits])
            pick = losses.argmin(0)  # (B,)
            stacked = torch.stack(logits)  # (J, B, ...)
            index = pick.view(1, -1, *([1] * (stacked.dim() - 2))).expand(1, *stacked.shape[1:])
            return SimpleNamespace(logits=stacked.gather(0, index)[0], choice=pick)
        log_p = torch.stack([torch.log_softmax(z.float(), -1) for z in logits])
        log_w = self.weights.log().to(log_p.device).view(-1, *([1] * (log_p.dim() - 1)))
        return SimpleNamespace(logits=torch.logsumexp(log_p + log_w, dim=0))

    @staticmethod
    def _logits(teacher: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        import inspect

        accepted = inspect.signature(teacher.forward).parameters
        return teacher(**{k: v for k, v in inputs.items() if k in accepted}).logits


def check_same_outputs(teachers: Sequence[nn.Module], names: Sequence[str]) -> None:
    """One line unless every teacher predicts over the same vocabulary size / label count."""
    sizes = [getattr(t.config, "num_labels", None) if _is_classifier(t) else t.config.vocab_size
             for t in teachers]  # fmt: skip
    if len(set(sizes)) > 1:
        detail = ", ".join(f"{n}: {s}" for n, s in zip(names, sizes, strict=True))
        raise ModelError(f"distill.teachers predict over different output sizes ({detail})")


def _is_classifier(model: nn.Module) -> bool:
    return "ForCausalLM" not in type(model).__name__ and hasattr(model.config, "num_labels")

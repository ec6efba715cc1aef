"""The ``uld`` term: cross-tokenizer distillation with the Universal Logit Distillation loss.

The teacher may use another tokenizer than the student (e.g. Gemma-3 -> SmolLM2): each step the
student's batch is decoded and re-tokenised for the teacher (prompt and response apart, as TRL's
GOLD does), the teacher runs on it, and the loss compares the two next-token distributions by
their sorted probabilities over the aligned response positions (Boizard et al. 2024; see
:mod:`tunesmith.distill.uld`). Causal LMs only; needs a live teacher (the cache stores ids of the
teacher's vocabulary, which the student cannot read).

Recipe::

    distill: {teacher: gemma3}          # another tokenizer: allowed when every teacher term is uld
    task_weight: 1.0
    objectives: [{name: uld, weight: 0.5, params: {student_temperature: 1, teacher_temperature: 1}}]
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from tunesmith.configschema import fld
from tunesmith.distill.uld import teacher_batch, uld_loss
from tunesmith.errors import ConfigError
from tunesmith.objectives.base import register
from tunesmith.objectives.distill import DistillTerm

__all__ = ["ULDTerm"]


class ULDTerm(DistillTerm):
    name = "uld"
    cross_tokenizer = True  # the teacher's tokenizer may differ (train/teacher.py skips the check)

    @dataclasses.dataclass
    class Params:
        student_temperature: float = fld(1.0, "softmax temperature of the student's distribution")
        teacher_temperature: float = fld(1.0, "softmax temperature of the teacher's distribution")

    def __init__(self, weight: float = 1.0, params: Any = None):
        super().__init__(weight, params)
        for key in ("student_temperature", "teacher_temperature"):
            if not getattr(self.params, key) > 0:
                raise ConfigError(f"objectives.uld.params.{key}", "must be > 0")
        self.student_tokenizer: Any = None
        self.teacher_tokenizer: Any = None

    def bind_tokenizers(self, student_tokenizer: Any, teacher_tokenizer: Any) -> None:
        self.student_tokenizer, self.teacher_tokenizer = student_tokenizer, teacher_tokenizer

    def loss(self, model, batch, outputs) -> torch.Tensor:
        if self.student_tokenizer is None:
            raise ConfigError(
                "objectives.uld", "no tokenizers bound", "set distill.teacher (the run binds them)"
            )
        tb = teacher_batch(batch, self.student_tokenizer, self.teacher_tokenizer)
        teacher_logits = self.teacher_outputs(tb).logits
        p = self.params
        return uld_loss(
            outputs.logits,
            batch["labels"],
            teacher_logits,
            tb["labels"],
            p.student_temperature,
            p.teacher_temperature,
        )


register(ULDTerm, "cross-tokenizer KD: Universal Logit Distillation (Boizard et al. 2024)")

"""Knowledge distillation: a small student learns from a frozen, fine-tuned teacher.

* :mod:`~tunesmith.distill.losses` — pure loss functions (Hinton KD, forward/reverse KL,
  generalized JSD, top-k KL, hidden-state and attention losses);
* :mod:`~tunesmith.distill.teacher` — load a frozen teacher, check vocabularies / labels, run it
  once per batch;
* :mod:`~tunesmith.distill.student` — a shallower student built from the teacher's own layers;
* :mod:`~tunesmith.distill.cache` / :mod:`~tunesmith.distill.collate` — teacher outputs computed
  once, stored on disk, batched with the inputs;
* :mod:`~tunesmith.distill.seqkd` — teacher-generated targets (sequence-level KD) and student
  sampling for on-policy GKD.

The objective terms that use these live in :mod:`tunesmith.objectives.distill`.
"""

from tunesmith.distill.cache import TeacherCache, attach_teacher_outputs, cache_key
from tunesmith.distill.collate import TEACHER_KEYS, DistillCollator
from tunesmith.distill.losses import (
    attention_loss,
    forward_kl,
    generalized_jsd,
    hidden_state_loss,
    hinton_kd_loss,
    lm_token_mask,
    reverse_kl,
    sparse_forward_kl,
)
from tunesmith.distill.seqkd import generate_completions, generate_targets
from tunesmith.distill.student import layer_map, select_layers, student_from_teacher
from tunesmith.distill.teacher import (
    TeacherRunner,
    check_compatible,
    check_labels,
    load_teacher,
)

__all__ = [
    "TEACHER_KEYS",
    "DistillCollator",
    "TeacherCache",
    "TeacherRunner",
    "attach_teacher_outputs",
    "attention_loss",
    "cache_key",
    "check_compatible",
    "check_labels",
    "forward_kl",
    "generalized_jsd",
    "generate_completions",
    "generate_targets",
    "hidden_state_loss",
    "hinton_kd_loss",
    "layer_map",
    "lm_token_mask",
    "load_teacher",
    "reverse_kl",
    "select_layers",
    "sparse_forward_kl",
    "student_from_teacher",
]

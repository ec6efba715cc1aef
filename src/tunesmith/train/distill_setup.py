"""Distillation pieces of a run: the frozen teacher, a student built from it, the output cache."""

from __future__ import annotations

from pathlib import Path

from tunesmith.config import Recipe
from tunesmith.data.collate import Collator
from tunesmith.data.pipeline import Datasets
from tunesmith.distill import (
    DistillCollator,
    TeacherCache,
    attach_teacher_outputs,
    check_compatible,
    check_labels,
    load_teacher,
    student_from_teacher,
)
from tunesmith.distill.teacher import resolve_teacher
from tunesmith.models import align_pad_token, load_tokenizer
from tunesmith.objectives.distill import bind_teacher
from tunesmith.paths import cache_dir
from tunesmith.tasks import task_kind

# terms whose teacher signal the cache can replace entirely (logits only)
CACHEABLE = {"kd", "lm_kd"}


def load_run_teacher(recipe: Recipe, tokenizer, data: Datasets):
    """Load the frozen teacher and check it fits the student's tokenizer and labels."""
    spec = recipe.distill.teacher
    teacher = load_teacher(spec, recipe.task)
    check_compatible(load_tokenizer(resolve_teacher(spec)), tokenizer)
    if data.vocab is not None:
        check_labels(teacher.config.id2label, data.vocab.id2label)
    return teacher


def build_student(recipe: Recipe, teacher, tokenizer):
    """DistilBERT-style student: the teacher's embeddings, chosen blocks and head, trainable."""
    student = student_from_teacher(teacher, recipe.student.from_teacher.layers)
    student.requires_grad_(True)
    student.train()
    align_pad_token(student, tokenizer)
    return student


def use_teacher(recipe: Recipe, teacher, terms, data: Datasets, collator: Collator, accelerator):
    """Cache the teacher's train outputs if asked; bind the live teacher to terms that need it.

    Returns the collator to train with (it pads the cached teacher tensors).
    """
    d = recipe.distill
    names = {t.name for t in terms}
    if d.cache:
        root = Path(d.cache_dir) if d.cache_dir else cache_dir() / "teacher_outputs"
        top_k = d.top_k if task_kind(recipe.task).generative else None
        teacher.to(accelerator.device)
        with accelerator.main_process_first():
            cache = TeacherCache.build(root, teacher, data.train, task=recipe.task, top_k=top_k)
        attach_teacher_outputs(data.train, cache)
        state = "reused" if cache.reused else "computed"
        accelerator.print(f"teacher cache {state}: {cache.directory}")
        collator = DistillCollator(collator)
    if not (d.cache and names <= CACHEABLE):  # some term still needs the live teacher
        bind_teacher(terms, teacher)
    return collator

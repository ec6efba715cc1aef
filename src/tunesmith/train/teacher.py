"""The model to train and its teacher, set up in one place (distillation).

Without ``distill:`` a run trains the mode's model with a plain collator. With a teacher:

1. the frozen teacher is loaded and checked against the student's tokenizer and labels;
2. the student is built from the teacher's own layers when ``student.from_teacher`` asks;
3. with ``distill.cache`` the teacher's train outputs are computed once (or reused from disk),
   attached to the train examples, and the collator is swapped for one that batches them;
4. the live teacher is bound to the distillation terms when one of them needs it: a term that
   ``needs_teacher`` and is not ``cacheable`` (the cache holds logits only), or any such term
   when there is no cache.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator
from torch import nn
from transformers import PreTrainedTokenizerBase

from tunesmith.config import Recipe
from tunesmith.data.collate import Collator
from tunesmith.data.labels import LabelVocab
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
from tunesmith.objectives import ObjectiveTerm
from tunesmith.objectives.distill import bind_teacher
from tunesmith.paths import cache_dir
from tunesmith.tasks import task_kind
from tunesmith.train.evaluation import Collate
from tunesmith.train.given import check_given_model
from tunesmith.train.modes import RunMode


def setup_model_and_teacher(
    recipe: Recipe,
    tokenizer: PreTrainedTokenizerBase,
    mode: RunMode,
    terms: list[ObjectiveTerm],
    accelerator: Accelerator,
    given_model: nn.Module | None = None,
    frozen: torch.dtype = torch.float32,
) -> tuple[nn.Module, Collate]:
    """(model to train, collator to train with), the teacher set up around them (module doc).
    ``given_model``: a model passed in from Python, checked as a loaded one would be;
    ``frozen``: the dtype the teacher's weights are stored in (``model.dtype``)."""
    collator = Collator(pad_token_id=tokenizer.pad_token_id)
    if given_model is not None:
        check_given_model(recipe, given_model, tokenizer, mode.label_vocab)
    teacher = (
        load_run_teacher(recipe, tokenizer, mode.label_vocab, frozen) if recipe.distill else None
    )
    if given_model is not None:
        model = given_model
    elif teacher is not None and recipe.student and recipe.student.from_teacher:
        model = build_student(recipe, teacher, tokenizer)
    else:
        model = mode.build_model()
    mode.check_model(model)
    if teacher is None:
        return model, collator
    return model, use_teacher(recipe, teacher, terms, mode.train_examples, collator, accelerator)


def load_run_teacher(
    recipe: Recipe,
    tokenizer: PreTrainedTokenizerBase,
    vocab: LabelVocab | None,
    frozen: torch.dtype = torch.float32,
) -> nn.Module:
    """Load the frozen teacher (weights in ``frozen``) and check it fits the student's tokenizer
    and labels."""
    spec = recipe.distill.teacher
    teacher = load_teacher(spec, recipe.task, dtype=frozen)
    check_compatible(load_tokenizer(resolve_teacher(spec)), tokenizer)
    if vocab is not None:
        check_labels(teacher.config.id2label, vocab.id2label, vocab.named_id2label)
    return teacher


def build_student(
    recipe: Recipe, teacher: nn.Module, tokenizer: PreTrainedTokenizerBase
) -> nn.Module:
    """DistilBERT-style student: the teacher's embeddings, chosen blocks and head, trainable."""
    student = student_from_teacher(teacher, recipe.student.from_teacher.layers)
    student.requires_grad_(True)
    student.train()
    align_pad_token(student, tokenizer)
    return student


def use_teacher(
    recipe: Recipe,
    teacher: nn.Module,
    terms: list[ObjectiveTerm],
    train: list[dict],
    collator: Collator,
    accelerator: Accelerator,
) -> Collate:
    """Cache the teacher's outputs on ``train`` if asked; bind the live teacher to the terms
    when some term needs more than the cache holds. Returns the collator to train with."""
    d = recipe.distill
    if d.cache:
        root = Path(d.cache_dir) if d.cache_dir else cache_dir() / "teacher_outputs"
        top_k = d.top_k if task_kind(recipe.task).generative else None
        teacher.to(accelerator.device)
        with accelerator.main_process_first():
            cache = TeacherCache.build(root, teacher, train, task=recipe.task, top_k=top_k)
        attach_teacher_outputs(train, cache)
        state = "reused" if cache.reused else "computed"
        accelerator.print(f"teacher cache {state}: {cache.directory}")
        collator = DistillCollator(collator)
    if any(t.needs_teacher and not (d.cache and t.cacheable) for t in terms):
        bind_teacher(terms, teacher)  # some term reads more than the cache holds
    return collator

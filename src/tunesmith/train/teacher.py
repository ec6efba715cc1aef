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
from tunesmith.distill.ensemble import TeacherEnsemble, check_same_outputs
from tunesmith.distill.heal import compare_layer_choices, initial_loss
from tunesmith.distill.student import TEACHER_LAYERS_KEY
from tunesmith.distill.teacher import resolve_teacher
from tunesmith.errors import ConfigError, ModelError
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
        load_run_teacher(recipe, tokenizer, mode.label_vocab, frozen, terms)
        if recipe.distill
        else None
    )
    if given_model is not None:
        model = given_model
    elif teacher is not None and recipe.student and recipe.student.from_teacher:
        model = build_student(recipe, teacher, tokenizer, mode.train_examples, accelerator)
    else:
        model = mode.build_model()
    mode.check_model(model)
    collator = cache_term_targets(recipe, terms, mode.train_examples, collator, accelerator)
    if teacher is None:
        return model, collator
    bind_tokenizers(recipe, terms, tokenizer)
    return model, use_teacher(recipe, teacher, terms, mode.train_examples, collator, accelerator)


def load_teachers(recipe: Recipe, frozen: torch.dtype = torch.float32) -> nn.Module:
    """The frozen teacher, or the :class:`TeacherEnsemble` of ``distill.teachers``."""
    d = recipe.distill
    specs = d.teacher_specs
    models = [load_teacher(spec, recipe.task, dtype=frozen) for spec, _ in specs]
    if len(models) == 1:
        return models[0]
    check_same_outputs(models, [spec for spec, _ in specs])
    return TeacherEnsemble(models, [w for _, w in specs], d.mode, recipe.task)


def _cross_tokenizer(terms: list[ObjectiveTerm] | None) -> bool:
    """Whether every teacher-reading term works across tokenizers (ULD)."""
    readers = [t for t in terms or [] if t.needs_teacher]
    return bool(readers) and all(getattr(t, "cross_tokenizer", False) for t in readers)


def _same(spec: str, first: str, check) -> None:
    """Run ``check``; a mismatch between two of several teachers is one line naming both."""
    try:
        check()
    except ModelError as exc:
        raise ModelError(f"distill.teachers: {spec} does not match {first}: {exc}") from None


def load_run_teacher(
    recipe: Recipe,
    tokenizer: PreTrainedTokenizerBase,
    vocab: LabelVocab | None,
    frozen: torch.dtype = torch.float32,
    terms: list[ObjectiveTerm] | None = None,
) -> nn.Module:
    """Load the frozen teacher(s) (weights in ``frozen``) and check they fit the student's
    tokenizer and labels (and, with several teachers, each other's). Cross-tokenizer terms
    (``uld``) skip the tokenizer check when they are the only teacher-reading terms."""
    specs = [spec for spec, _ in recipe.distill.teacher_specs]
    first = load_tokenizer(resolve_teacher(specs[0]))
    for spec in specs[1:]:
        _same(
            spec,
            specs[0],
            lambda s=spec: check_compatible(load_tokenizer(resolve_teacher(s)), first),
        )
    teacher = load_teachers(recipe, frozen)
    members = list(teacher.teachers) if isinstance(teacher, TeacherEnsemble) else [teacher]
    labels = members[0].config.id2label
    for spec, member in zip(specs[1:], members[1:], strict=True):
        if vocab is not None:
            _same(spec, specs[0], lambda m=member: check_labels(m.config.id2label, labels))
    if not _cross_tokenizer(terms):
        check_compatible(first, tokenizer)
    if vocab is not None:
        check_labels(members[0].config.id2label, vocab.id2label, vocab.named_id2label)
    return teacher


def bind_tokenizers(
    recipe: Recipe, terms: list[ObjectiveTerm], tokenizer: PreTrainedTokenizerBase
) -> None:
    """Give cross-tokenizer terms the student's and the teacher's tokenizers."""
    for term in terms:
        if getattr(term, "cross_tokenizer", False):
            teacher_tok = load_tokenizer(resolve_teacher(recipe.distill.teacher))
            term.bind_tokenizers(tokenizer, teacher_tok)


def build_student(
    recipe: Recipe,
    teacher: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    examples: list[dict] | None = None,
    accelerator: Accelerator | None = None,
) -> nn.Module:
    """DistilBERT-style student: the teacher's embeddings, chosen blocks and head, trainable.
    With ``examples``, its loss before training (and, with ``report_choices``, every preset's) is
    logged and kept in ``student.tunesmith_distill_notes`` for ``summary.json``."""
    if isinstance(teacher, TeacherEnsemble):
        teacher = teacher.teachers[0]  # the student copies the first teacher's blocks
    spec = recipe.student.from_teacher
    student = student_from_teacher(teacher, spec.layers, spec.n)
    student.requires_grad_(True)
    student.train()
    align_pad_token(student, tokenizer)
    if examples:
        notes = student_notes(recipe, teacher, student, examples, accelerator)
        student.tunesmith_distill_notes = notes  # read by distill_results (not saved in config)
    return student


def student_notes(recipe, teacher, student, examples, accelerator) -> dict:
    """Loss before training of the student (and every preset when asked), logged."""
    spec = recipe.student.from_teacher
    say = accelerator.print if accelerator is not None else print
    device = accelerator.device if accelerator is not None else torch.device("cpu")
    teacher.to(device)
    student.to(device)
    before = initial_loss(student, examples, recipe.task)
    chosen = getattr(student.config, TEACHER_LAYERS_KEY)
    notes: dict = {"student_layers": chosen, "student_loss_before_training": round(before, 4)}
    say(f"student loss before training: {before:.4f} (teacher blocks {chosen})")
    if spec.report_choices:
        choices = compare_layer_choices(teacher, examples, recipe.task, n=len(chosen))
        notes["student_choices"] = choices
        for name, c in choices.items():
            say(f"student loss before training, {name}: {c['loss']:.4f} (blocks {c['layers']})")
    return notes


def cache_term_targets(
    recipe: Recipe,
    terms: list[ObjectiveTerm],
    train: list[dict],
    collator: Collate,
    accelerator: Accelerator,
) -> Collate:
    """Terms that read a frozen model's top-k + tail targets from the teacher cache instead of
    running it every step (LwF's previous model, ``lwf: {cache: true}``): cache, attach, batch."""
    wanting = [t for t in terms if hasattr(t, "cache_request")]
    for term in wanting:
        request = term.cache_request()
        if request is None:
            continue
        if recipe.distill is not None and recipe.distill.cache:
            raise ConfigError(
                f"objectives.{term.name}.params.cache",
                "one run holds one teacher cache: distill.cache is on already",
                "cache either the distillation teacher or the term's targets",
            )
        frozen_model, top_k, root = request
        root = Path(root) if root else cache_dir() / "teacher_outputs"
        frozen_model.to(accelerator.device)
        with accelerator.main_process_first():
            cache = TeacherCache.build(root, frozen_model, train, task=recipe.task, top_k=top_k)
        attach_teacher_outputs(train, cache)
        accelerator.print(
            f"{term.name} targets cache {'reused' if cache.reused else 'computed'}: "
            f"{cache.directory} ({cache.bytes_per_token} bytes per token)"
        )
        term.cache_ready(cache)
        if not isinstance(collator, DistillCollator):
            collator = DistillCollator(collator)
    return collator


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
        accelerator.print(
            f"teacher cache {state}: {cache.directory} ({cache.bytes_per_token} bytes per token)"
        )
        info = {"cache_bytes_per_token": cache.bytes_per_token, "cache": state}
        collator = DistillCollator(collator, info=info)  # info: read into summary.json
    if any(t.needs_teacher and not (d.cache and t.cacheable) for t in terms):
        bind_teacher(terms, teacher)  # some term reads more than the cache holds
    return collator

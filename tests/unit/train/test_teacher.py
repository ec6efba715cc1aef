"""The teacher set up in one place: the terms declare what they need, the cache decides binding."""

import pytest
import torch
from accelerate import Accelerator
from transformers import AutoModelForSequenceClassification

from tunesmith.config import ObjectiveConfig, parse_recipe
from tunesmith.data.collate import Collator
from tunesmith.distill.collate import DistillCollator
from tunesmith.errors import ConfigError
from tunesmith.objectives import OBJECTIVES, ObjectiveTerm, build_terms, register
from tunesmith.registry import OBJECTIVES as CORE_OBJECTIVES
from tunesmith.testing import tiny_config, tiny_tokenizer
from tunesmith.train.teacher import use_teacher

CLS = "sequence_classification"


def test_terms_declare_teacher_needs_in_the_core_registry():
    assert OBJECTIVES is CORE_OBJECTIVES
    needs = {e.name for e in OBJECTIVES if e.obj.needs_teacher}
    cacheable = {e.name for e in OBJECTIVES if e.obj.cacheable}
    assert {"kd", "lm_kd", "hidden_mse", "hidden_cosine", "attention_kd", "gkd"} <= needs
    assert cacheable == {"kd", "lm_kd"} and cacheable <= needs
    assert not {"l2_sp", "ewc", "lwf"} & needs


def test_a_new_teacher_term_is_refused_without_a_teacher():
    class Probe(ObjectiveTerm):
        name = "probe_teacher_term"
        needs_teacher = True

    register(Probe, "test-only term")
    try:
        base = {"model": "x", "task": CLS, "data": {"train": "t.txt"}}
        with pytest.raises(ConfigError, match="objective 'probe_teacher_term' needs a teacher"):
            parse_recipe(base, ["objectives=[{name: probe_teacher_term}]"])
    finally:
        OBJECTIVES._entries.pop(Probe.name)


def tiny_bert():
    tok = tiny_tokenizer(kind="bert")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = tiny_config("bert", len(tok), num_labels=2)
        return AutoModelForSequenceClassification.from_config(config).eval(), tok


@pytest.mark.parametrize(
    "names,cache,bound",
    [
        (["kd"], True, False),  # the cache holds all kd reads
        (["kd", "l2_sp"], True, False),
        (["kd", "hidden_mse"], True, True),  # hidden states are not cached
        (["kd"], False, True),
    ],
)
def test_live_teacher_bound_only_when_a_term_needs_it(tmp_path, names, cache, bound):
    teacher, tok = tiny_bert()
    recipe = parse_recipe(
        {
            "model": "x",
            "task": CLS,
            "data": {"train": "t.txt"},
            "distill": {"teacher": "t", "cache": cache, "cache_dir": str(tmp_path)},
        }
    )
    terms = build_terms([ObjectiveConfig(name=n) for n in names])
    train = [dict(tok(t), labels=i % 2) for i, t in enumerate(["good film", "bad", "a cat"])]
    collator = use_teacher(recipe, teacher, terms, train, Collator(0), Accelerator(cpu=True))
    assert isinstance(collator, DistillCollator) == cache
    assert all("teacher_logits" in ex for ex in train) == cache
    distill_terms = [t for t in terms if t.needs_teacher]
    assert all((t.teacher is not None) == bound for t in distill_terms)

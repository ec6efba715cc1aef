"""Every registered objective term, from the registry (a new term joins without editing a list):
typed params with help text and key-path errors, and the teacher facts the recipe relies on."""

from __future__ import annotations

import dataclasses

import pytest

from tunesmith.config import ObjectiveConfig, parse_recipe
from tunesmith.errors import ConfigError
from tunesmith.objectives import OBJECTIVES, ObjectiveTerm, build_terms

TERMS = OBJECTIVES.names()


def test_the_registry_holds_the_built_in_terms():
    assert {"l2_sp", "kd", "lm_kd", "ewc", "lwf", "replay"} <= set(TERMS)


@pytest.mark.parametrize("name", TERMS)
def test_term_is_registered_under_its_name_with_documented_params(name):
    cls = OBJECTIVES.get(name)
    assert issubclass(cls, ObjectiveTerm) and cls.name == name
    assert dataclasses.is_dataclass(cls.Params)
    for f in dataclasses.fields(cls.Params):
        assert f.metadata.get("help"), f"{name}.params.{f.name} has no help text"
    assert not cls.cacheable or cls.needs_teacher, "a cacheable term reads a teacher"


@pytest.mark.parametrize("name", TERMS)
def test_term_builds_with_defaults_and_names_a_bad_key(name):
    (term,) = build_terms([ObjectiveConfig(name=name, weight=0.5)])
    assert term.weight == 0.5 and isinstance(term.params, OBJECTIVES.get(name).Params)
    with pytest.raises(ConfigError, match=r"objectives\[0\]\.params\.no_such_key"):
        build_terms([ObjectiveConfig(name=name, params={"no_such_key": 1})])


@pytest.mark.parametrize("name", [n for n in TERMS if OBJECTIVES.get(n).needs_teacher])
def test_a_teacher_term_without_a_teacher_is_refused_before_any_model_loads(name):
    recipe = {
        "model": "minilm",
        "task": "sequence_classification",
        "data": {"train": {"path": "/nonexistent/train.jsonl"}},
        "objectives": [{"name": name}],
    }
    with pytest.raises(ConfigError, match="needs a teacher"):
        parse_recipe(recipe)
    parse_recipe({**recipe, "distill": {"teacher": "minilm"}})  # with one: accepted

"""The run modes behind the loop: which mode a recipe gets, its plan, routing, labels, metric."""

from types import SimpleNamespace

import pytest

from tunesmith.data.mixing import mixture_steps_per_epoch
from tunesmith.models import load_tokenizer
from tunesmith.train.modes import Mixture, SingleTask, TextToText, build_mode
from tunesmith.train.modes.single import steps_per_epoch

from .conftest import make_recipe
from .test_loop_multitask import multitask_recipe
from .test_loop_text_to_text import text_recipe

# one process, seen as a rank > 0 (it writes nothing)
ONE_PROCESS = SimpleNamespace(
    num_processes=1, process_index=0, is_main_process=False, print=lambda *a, **k: None
)


def mode_of(recipe):
    return build_mode(recipe, load_tokenizer(recipe.model_source), ONE_PROCESS)


def test_single_task_mode(tiny_models, tiny_data, tmp_path):
    cls = "sequence_classification"
    mode = mode_of(make_recipe(tiny_models["bert", cls], cls, tiny_data, tmp_path / "r"))
    assert isinstance(mode, SingleTask)
    assert mode.route(mode.train_examples[0]) == (cls, {})
    assert mode.labels() == ["0", "1"] and mode.label_vocab.labels == ["0", "1"]
    assert mode.has("dev") and mode.has("test") and mode.default_metric == "accuracy"
    assert mode.steps_per_epoch == steps_per_epoch(mode.recipe, len(mode.train_examples), 1)
    plan = mode.plan(0)
    seen = sorted(i for step in plan for mb in step for i in mb)
    assert seen == list(range(len(mode.train_examples)))  # each example once per epoch
    assert mode.plan(0) == plan and mode.plan(1) != plan  # a pure function of (seed, epoch)


def test_causal_lm_mode_has_no_labels(tiny_models, tiny_data, tmp_path):
    mode = mode_of(make_recipe(tiny_models["llama", "causal_lm"], "causal_lm", tiny_data, tmp_path))
    assert mode.labels() is None and mode.label_vocab is None
    assert not mode.has("test") and mode.default_metric == "loss"


def test_mixture_mode_routes_each_batch_to_its_head(tiny_models, tiny_data, tmp_path):
    recipe = multitask_recipe(tiny_models["bert", "sequence_classification"], tiny_data, tmp_path)
    mode = mode_of(recipe)
    assert isinstance(mode, Mixture)
    assert set(mode.labels()) == {"sent", "ner"} and mode.label_vocab is None
    assert mode.default_metric == "mean" and mode.has("dev") and not mode.has("test")
    sizes = {name: len(ds.train) for name, ds in mode.data.tasks.items()}
    assert mode.steps_per_epoch == mixture_steps_per_epoch(sizes, 8)
    for step in mode.plan(0):
        for mb in step:
            tasks = {mode.train_examples[i]["task"] for i in mb}
            assert len(tasks) == 1  # homogeneous micro-batches
            kind, head = mode.route(mode.train_examples[mb[0]])
            assert head == {"task": tasks.pop()}
            assert kind == (
                "token_classification" if head["task"] == "ner" else "sequence_classification"
            )
    n = mode.steps_per_epoch  # epoch 1 continues the mixture where epoch 0 stopped
    assert mode.plan(1) == mode.sampler.index_plan(n, n, mode.data.offsets)
    assert mode.finish(None, tmp_path) == {"mixing_rates": mode.rates}  # rank > 0: no export


def test_text_to_text_mode_sends_every_batch_through_one_model(tiny_models, tiny_data, tmp_path):
    mode = mode_of(text_recipe(tiny_models["t5", "seq2seq"], tiny_data, tmp_path, task="seq2seq"))
    assert isinstance(mode, TextToText)
    assert {ex["task"] for ex in mode.train_examples} == {"sent", "yesno"}
    assert all(mode.route(ex) == ("seq2seq", {}) for ex in mode.train_examples)
    assert mode.default_metric == "mean" and mode.rates == {"sent": 0.5, "yesno": 0.5}
    assert mode.labels() == {"sent": ["0", "1"], "yesno": ["0", "1"]}


@pytest.mark.parametrize("split", ["dev", "test"])
def test_modes_agree_on_which_splits_exist(tiny_models, tiny_data, tmp_path, split):
    recipe = text_recipe(tiny_models["llama", "causal_lm"], tiny_data, tmp_path)
    mode = mode_of(recipe)
    assert mode.has(split) == any(split in ds.text_eval for ds in mode.data.tasks.values())

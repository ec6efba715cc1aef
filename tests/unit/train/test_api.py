"""The Python API (issue 15 item 4): Tuner / run with recipes as path, dict or Recipe; objects
passed in (model, tokenizer) checked as loaded ones; callbacks (order, metrics, stopping and
resuming); ``tunesmith.train`` as subpackage and older callable name."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

import tunesmith
from tunesmith import Callback, Tuner
from tunesmith.configschema import to_dict
from tunesmith.errors import ConfigError, ModelError, TunesmithError
from tunesmith.fingerprint import weights_digest
from tunesmith.testing import tiny_tokenizer

from .conftest import make_recipe

TASK = "sequence_classification"


def recipe_dict(tiny_models, tiny_data, run_dir, **over):
    recipe = make_recipe(tiny_models["bert", TASK], TASK, tiny_data, run_dir, **over)
    return to_dict(recipe)


class Recorder(Callback):
    def __init__(self, stop_at_step=None):
        self.calls, self.stop_at_step = [], stop_at_step

    def on_train_begin(self, info):
        self.calls.append(("begin", info["start_step"], info["total_steps"]))

    def on_step(self, step, metrics):
        self.calls.append(("step", step, metrics))
        return step == self.stop_at_step

    def on_evaluate(self, step, split, metrics):
        self.calls.append(("evaluate", step, split, metrics))

    def on_save(self, step, path):
        self.calls.append(("save", step, path.name))

    def on_train_end(self, summary):
        self.calls.append(("end", summary))


def test_tuner_trains_a_dict_recipe_then_evaluates_and_predicts(tiny_models, tiny_data, tmp_path):
    tuner = Tuner(recipe_dict(tiny_models, tiny_data, tmp_path / "x"), output_dir=tmp_path / "r")
    summary = tuner.train()
    assert tuner.output_dir == tmp_path / "r" and (tmp_path / "r" / "summary.json").is_file()
    assert tuner.evaluate("dev") == pytest.approx(summary["dev"])
    assert set(tuner.evaluate(["dev", "test"])) == {"dev", "test"}
    (prediction,) = tuner.predict("the film was good happy")
    assert prediction["label"] in {"0", "1"}


def test_run_takes_a_yaml_path_with_overrides(tiny_models, tiny_data, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe_dict(tiny_models, tiny_data, tmp_path / "r")))
    summary = tunesmith.run(path, overrides=["train.max_steps=3"])
    assert summary["steps"] == 3


def test_callbacks_are_called_in_order_with_the_metrics(tiny_models, tiny_data, tmp_path):
    rec = Recorder()
    over = {"train.max_steps": 4, "train.eval_every": 2}
    summary = tunesmith.run(
        recipe_dict(tiny_models, tiny_data, tmp_path / "r", **over), callbacks=[rec]
    )
    kinds = [c[0] for c in rec.calls]
    assert kinds[0] == "begin" and rec.calls[0][1:] == (0, 4)
    assert kinds[-1] == "end" and rec.calls[-1][1] is summary
    steps = [c for c in rec.calls if c[0] == "step"]
    assert [c[1] for c in steps] == [1, 2, 3, 4]
    assert all({"loss", "grad_norm", "lr"} <= set(c[2]) for c in steps)
    evals = [c[1:3] for c in rec.calls if c[0] == "evaluate"]
    assert evals[:2] == [(2, "dev"), (4, "dev")]
    assert {split for _, split in evals[2:]} == {"final_dev", "final_test"}
    final = {c[2]: c[3] for c in rec.calls if c[0] == "evaluate" and c[2].startswith("final_")}
    assert final["final_dev"] == summary["dev"] and final["final_test"] == summary["test"]
    saves = [c[1:] for c in rec.calls if c[0] == "save"]
    assert (2, "step-2") in saves and (4, "step-4") in saves
    assert any(name == "best" for _, name in saves)
    # each evaluation during training comes after its step and before the next one
    assert kinds.index("evaluate") == kinds.index("step") + 2


def test_a_callback_stops_training_with_a_checkpoint_and_the_run_resumes(
    tiny_models, tiny_data, tmp_path
):
    run_dir = tmp_path / "r"
    data = recipe_dict(tiny_models, tiny_data, run_dir, **{"train.max_steps": 6})
    rec = Recorder(stop_at_step=2)
    summary = Tuner(data, callbacks=[rec]).train()
    assert summary["stopped"] is True and summary["steps"] == 2
    assert [c[1] for c in rec.calls if c[0] == "step"] == [1, 2]
    assert (run_dir / "checkpoints" / "step-2").is_dir()
    assert not (run_dir / "summary.json").exists()
    assert rec.calls[-1] == ("end", summary)

    class ControlStop(Callback):  # the other way to stop: control.should_stop
        def on_step(self, step, metrics):
            if step == 4:
                self.control.should_stop = True

    summary = Tuner(data, callbacks=[ControlStop()]).train(resume=True)
    assert summary["stopped"] and summary["steps"] == 4
    again = Recorder()
    summary = Tuner(data, callbacks=[again]).train(resume=True)
    assert "stopped" not in summary and summary["steps"] == 6
    assert again.calls[0][1] == 4 and [c[1] for c in again.calls if c[0] == "step"] == [5, 6]
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 6


def test_a_misspelt_hook_is_refused(tiny_models, tiny_data, tmp_path):
    class Typo:
        def on_evaluation(self, step, split, metrics):  # not a hook
            pass

    with pytest.raises(TypeError, match="on_evaluation"):
        tunesmith.run(recipe_dict(tiny_models, tiny_data, tmp_path / "r"), callbacks=[Typo()])


def test_a_given_model_and_tokenizer_replace_the_recipes(tiny_models, tiny_data, tmp_path):
    folder = tiny_models["bert", TASK]
    model = AutoModelForSequenceClassification.from_pretrained(folder)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    digest = weights_digest(model)
    data = recipe_dict(tiny_models, tiny_data, tmp_path / "r", **{"train.max_steps": 3})
    del data["model"]  # the model's name_or_path stands for it
    tuner = Tuner(data, model=model, tokenizer=tiny_tokenizer(kind="bert"))
    assert tuner.recipe.model == str(folder)
    summary = tuner.train(resume=False)
    assert summary["steps"] == 3
    run_dir = tmp_path / "r"
    assert json.loads((run_dir / "fingerprint.json").read_text())["model"] == digest
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed  # the object itself was trained
    assert model.config.id2label == {0: "0", 1: "1"}  # the data's labels


def test_a_given_model_resumes_with_the_same_object_not_with_other_weights(
    tiny_models, tiny_data, tmp_path
):
    folder = tiny_models["bert", TASK]
    data = recipe_dict(tiny_models, tiny_data, tmp_path / "r", **{"train.max_steps": 4})
    first = AutoModelForSequenceClassification.from_pretrained(folder)
    Tuner(data, model=first, callbacks=[Recorder(stop_at_step=1)]).train()
    other = AutoModelForSequenceClassification.from_pretrained(folder)
    with torch.no_grad():
        other.classifier.weight.add_(1.0)
    with pytest.raises(TunesmithError, match="starting model's weights changed"):
        Tuner(data, model=other).train(resume=True)
    # the object the stopped run trained in place (and nobody changed since) resumes
    assert Tuner(data, model=first).train(resume=True)["steps"] == 4


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda f: AutoModelForTokenClassification.from_pretrained(f), "no head for task"),
        (
            lambda f: AutoModelForSequenceClassification.from_pretrained(
                f, num_labels=3, ignore_mismatched_sizes=True
            ),
            "3 labels but the data has 2",
        ),
        (lambda f: torch.nn.Linear(2, 2), "PreTrainedModel"),
    ],
    ids=["wrong-head", "label-count", "not-a-model"],
)
def test_a_given_model_that_does_not_fit_is_refused(tiny_models, tiny_data, tmp_path, make, match):
    model = make(tiny_models["bert", TASK])
    data = recipe_dict(tiny_models, tiny_data, tmp_path / "r")
    with pytest.raises((ModelError, ConfigError), match=match):
        Tuner(data, model=model).train()
    assert not (tmp_path / "r" / "config.yaml").exists()  # refused before anything was written


def test_a_tokenizer_larger_than_the_embeddings_is_refused(tiny_models, tiny_data, tmp_path):
    words = [f"extra{i}" for i in range(200)]
    data = recipe_dict(tiny_models, tiny_data, tmp_path / "r")
    with pytest.raises(ModelError, match="tokenizer has .* tokens but the model embeds only"):
        model = AutoModelForSequenceClassification.from_pretrained(tiny_models["bert", TASK])
        Tuner(data, model=model, tokenizer=tiny_tokenizer(words=words, kind="bert")).train()


def test_datasets_objects_are_refused_for_a_mixture():
    from tunesmith.train.modes import Mixture

    with pytest.raises(ConfigError, match="single-task"):
        Mixture.build(None, None, None, datasets={"train": []})


def test_tunesmith_train_is_the_subpackage_and_still_callable(tiny_models, tiny_data, tmp_path):
    import tunesmith.train.loop as loop  # the subpackage's modules import as before
    from tunesmith import train

    assert train is tunesmith.train and train.loop is loop
    recipe = make_recipe(
        tiny_models["bert", TASK], TASK, tiny_data, tmp_path / "r", **{"train.max_steps": 2}
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train(recipe, tmp_path / "r")
    assert summary["steps"] == 2
    assert any("tunesmith.run" in str(w.message) for w in caught)

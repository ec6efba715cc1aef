import pytest

from tunesmith.config import dump_recipe, load_recipe, parse_recipe
from tunesmith.errors import ConfigError

BASE = {"model": "minilm", "task": "sequence_classification", "data": {"train": "x.txt"}}


def recipe(**over):
    data = {**BASE, **over}
    return parse_recipe(data)


def test_defaults_and_shorthand_path():
    r = recipe()
    assert r.data.train.path == "x.txt" and r.data.train.format is None
    assert r.optim.lr == 5e-5 and r.optim.betas == [0.9, 0.999]
    assert r.transfer.linear_probe is False


def test_overrides_apply_with_yaml_types():
    r = parse_recipe(
        BASE,
        [
            "optim.lr=1e-3",
            "train.batch_size=8",
            "transfer.freeze_layers=2",
            "transfer.gradual_unfreeze.every=3",
        ],
    )
    assert r.optim.lr == 1e-3 and r.train.batch_size == 8 and r.transfer.freeze_layers == 2
    assert r.transfer.gradual_unfreeze.every == 3 and r.transfer.gradual_unfreeze.unit == "epochs"


@pytest.mark.parametrize(
    ("over", "key", "words"),
    [
        ({"optim": {"lrr": 1}}, "optim.lrr", "did you mean 'lr'"),
        ({"optim": {"lr": "fast"}}, "optim.lr", "expected a number"),
        ({"task": "classify"}, "task", "invalid value"),
        ({"train": {"batch_size": 0}}, "train.batch_size", ">= 1"),
        ({"train": {"precision": "fp8"}}, "train.precision", "choose one of"),
        (
            {"transfer": {"linear_probe": True, "gradual_unfreeze": {"every": 1}}},
            "transfer.gradual_unfreeze",
            "linear_probe",
        ),
        ({"transfer": {"layerwise_lr_decay": 1.5}}, "transfer.layerwise_lr_decay", "(0, 1]"),
        ({"data": {"train": "x", "split": {"dev": 0.6, "test": 0.5}}}, "data.split", "sum"),
        (
            {"data": {"train": "x", "dev": "y", "split": {"dev": 0.1}}},
            "data.split.dev",
            "explicitly",
        ),
        ({"data": {"dev": "y"}}, "data.train", "required"),
        ({"objectives": [{"weight": 1.0}]}, "objectives[0].name", "required"),
        ({"train": {"batch_size": True}}, "train.batch_size", "integer"),
    ],
)
def test_errors_name_the_key_and_hint(over, key, words):
    with pytest.raises(ConfigError) as err:
        recipe(**over)
    assert str(err.value).startswith(key + ":")
    assert words in str(err.value)


def test_missing_model_key():
    with pytest.raises(ConfigError, match="^model: required"):
        parse_recipe({"task": "causal_lm", "data": {"train": "x"}})


def test_load_recipe_checks_files_and_yaml(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_recipe(bad_yaml)
    path = tmp_path / "r.yaml"
    path.write_text(
        "model: minilm\ntask: sequence_classification\n"
        f"data: {{root: {tmp_path}, train: missing.txt}}\n"
    )
    with pytest.raises(ConfigError, match=r"data.train.path: file not found"):
        load_recipe(path)
    (tmp_path / "missing.txt").write_text("1 good\n")
    r = load_recipe(path)
    assert r.data.root_path() == tmp_path


def test_dump_round_trips():
    r = parse_recipe(BASE, ["optim.lr=2e-5", "objectives=[{name: l2_sp, weight: 0.1}]"])
    import yaml

    again = parse_recipe(yaml.safe_load(dump_recipe(r)))
    assert again == r


def test_objective_params_validated():
    from tunesmith.objectives import build_terms

    r = parse_recipe(BASE, ["objectives=[{name: l2_spp}]"])
    with pytest.raises(ConfigError, match=r"objectives\[0\].name: unknown objective term"):
        build_terms(r.objectives)
    r = parse_recipe(BASE, ["objectives=[{name: l2_sp, params: {exclud: []}}]"])
    with pytest.raises(ConfigError, match=r"objectives\[0\].params.exclud: unknown key"):
        build_terms(r.objectives)

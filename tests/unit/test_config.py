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
        ({"objectives": [{"weight": 1.0}]}, "objectives[0].name", "required"),
        ({"train": {"batch_size": True}}, "train.batch_size", "integer"),
    ],
)
def test_errors_name_the_key_and_hint(over, key, words):
    with pytest.raises(ConfigError) as err:
        recipe(**over)
    assert str(err.value).startswith(key + ":")
    assert words in str(err.value)


def test_missing_train_is_an_error_when_the_data_is_read():
    """``data.train`` may be left out of a recipe when the training examples are passed in from
    Python (issue 15); without them reading the data (``train``, ``validate``) refuses, naming
    the key and both ways to give it. (This was a parse-time error before.)"""
    from tunesmith.data.pipeline import check_data, load_raw_splits

    r = recipe(data={"dev": "y"})
    assert r.data.train is None
    for read in (check_data, load_raw_splits):
        with pytest.raises(ConfigError) as err:
            read(r)
        assert str(err.value).startswith("data.train: required key is missing")
        assert "datasets=" in str(err.value)


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


def test_duplicate_keys_name_the_key_and_line(tmp_path):
    from tunesmith.config import read_yaml_mapping

    path = tmp_path / "r.yaml"
    path.write_text("model: minilm\ntrain:\n  epochs: 1\n  batch_size: 8\n  epochs: 3\n")
    with pytest.raises(ConfigError, match=r"r.yaml:5: .*duplicate key 'epochs'.*line 3"):
        read_yaml_mapping(path)
    path.write_text("base: &b {lr: 0.1, eps: 1.0e-6}\noptim:\n  <<: *b\n  lr: 0.2\n")
    assert read_yaml_mapping(path)["optim"] == {
        "lr": 0.2,
        "eps": 1e-6,
    }  # merge keys may be overridden
    path.write_text("a: 1\nb: {x: 1}\nc: {x: 2}\n")  # the same key in different mappings is fine
    assert read_yaml_mapping(path)["c"] == {"x": 2}
    path.write_bytes(b"model: minilm\ntrain: {epochs: 1}\x00\n")  # reliability fuzz: NUL byte
    with pytest.raises(ConfigError, match=r"r\.yaml: invalid YAML") as err:
        read_yaml_mapping(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("optim.lr=.nan", "optim.lr"),
        ("optim.betas=[0.9, .nan]", "optim.betas[1]"),
        ("optim.eps=0", "optim.eps"),
        ("train.epochs=.inf", "train.epochs"),
        ("train.max_steps=0", "train.max_steps"),
        ("train.num_workers=-1", "train.num_workers"),
        ("data.max_target_length=0", "data.max_target_length"),
        ("train.epochs=0", "train.epochs"),  # also beside max_steps (reliability fuzz)
        ("model=''", "model: is empty"),
    ],
)
def test_non_finite_numbers_and_non_positive_counts(override, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_recipe(BASE, [override])
    assert BASE["data"] == {"train": "x.txt"}  # overrides never change the caller's dict


def test_model_sources_checked_without_loading(tmp_path, monkeypatch):
    from tunesmith.config import check_model_sources
    from tunesmith.paths import looks_like_path

    assert looks_like_path("./m") and looks_like_path("~/m") and looks_like_path("a/b/c")
    assert not looks_like_path("minilm") and not looks_like_path("org/name")
    monkeypatch.chdir(tmp_path)
    check_model_sources(recipe(model="org/not-local"))  # a hub id: checked when it loads
    with pytest.raises(ConfigError, match="model: folder not found"):
        check_model_sources(recipe(model="models/bert/v2"))
    run = tmp_path / "run"  # a run folder's best/ holding only a pickle
    (run / "best").mkdir(parents=True)
    (run / "config.yaml").write_text("{}")
    (run / "best" / "config.json").write_text("{}")
    (run / "best" / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ConfigError, match=r"model: .*best holds only pickle weights"):
        check_model_sources(recipe(model=str(run)))
    (run / "best" / "model.safetensors").write_bytes(b"")
    check_model_sources(recipe(model=str(run)))  # safetensors beside it: fine

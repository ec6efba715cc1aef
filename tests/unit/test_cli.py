"""The command line through ``tunesmith.cli.main``: one-line user errors, validate/list, and a full
train -> eval -> predict cycle on a tiny BERT built in process (no network, a few seconds)."""

from __future__ import annotations

import json
import random

import pytest
import yaml

from tunesmith.cli import main
from tunesmith.errors import ConfigError
from tunesmith.registry import TASKS
from tunesmith.testing import save_tiny_model

POS = "good happy love yes great well right".split()
NEG = "bad sad hate no low off end".split()
FILL = "the movie film book was a very it is this one".split()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny BERT classifier folder and an 80-line ``<label> <text>`` sentiment file."""
    root = tmp_path_factory.mktemp("cli")
    save_tiny_model(root / "bert", "bert", "sequence_classification")
    rng = random.Random(0)
    lines = []
    for i in range(80):
        words = POS if i % 2 else NEG
        lines.append(
            f"{'pos' if i % 2 else 'neg'} {' '.join(rng.sample(FILL, 3) + rng.sample(words, 2))}"
        )
    (root / "sent.txt").write_text("\n".join(lines) + "\n")
    return root


def write_recipe(workdir, tmp_path, **changes) -> str:
    recipe = {
        "model": str(workdir / "bert"),
        "task": "sequence_classification",
        "output_dir": str(tmp_path / "run"),
        "seed": 1,
        "data": {
            "root": str(workdir),
            "train": {"path": "sent.txt", "format": "label_text"},
            "split": {"dev": 0.2, "test": 0.2},
        },
        "optim": {"lr": 2e-3, "warmup_steps": 1},
        "train": {"batch_size": 8, "epochs": 3, "progress": False, "tensorboard": False},
    }
    for dotted, value in changes.items():
        node = recipe
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def one_line_error(capsys, argv) -> str:
    """The one ``error: ...`` line of a failed command (log lines, all ``tunesmith: ...``, may
    come before it; nothing else may)."""
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    rest = [line for line in lines if not line.startswith("tunesmith: ")]
    assert len(rest) == 1 and rest[0].startswith("error: ") and lines[-1] == rest[0], lines
    return rest[0]


def test_unknown_key_names_the_key_path(workdir, tmp_path, capsys):
    err = one_line_error(capsys, ["validate", write_recipe(workdir, tmp_path, optim__lrate=0.1)])
    assert "optim.lrate: unknown key" in err


def test_bad_value_names_the_key_path_and_a_hint(workdir, tmp_path, capsys):
    err = one_line_error(
        capsys, ["validate", write_recipe(workdir, tmp_path, optim__schedule="cosin")]
    )
    assert "optim.schedule" in err and "cosine" in err


def test_bad_override_type(workdir, tmp_path, capsys):
    err = one_line_error(capsys, ["validate", write_recipe(workdir, tmp_path), "train.epochs=lots"])
    assert "train.epochs" in err


def test_missing_recipe_file(tmp_path, capsys):
    err = one_line_error(capsys, ["train", str(tmp_path / "nope.yaml")])
    assert "recipe not found" in err and "nope.yaml" in err


def test_missing_data_file_fails_before_any_model_loads(workdir, tmp_path, capsys):
    recipe = write_recipe(workdir, tmp_path, model="no/such-model")
    err = one_line_error(capsys, ["train", recipe, "data.train.path=missing.txt"])
    assert "data.train.path: file not found" in err and "missing.txt" in err
    assert not (tmp_path / "run").exists()


def test_debug_reraises_with_the_traceback(workdir, tmp_path):
    with pytest.raises(ConfigError, match="optim.lrate"):
        main(["--debug", "validate", write_recipe(workdir, tmp_path, optim__lrate=0.1)])


def test_validate_ok_and_overrides_after_options(workdir, tmp_path, capsys):
    recipe = write_recipe(workdir, tmp_path)
    assert main(["validate", recipe, "--show", "train.epochs=7"]) == 0
    out = capsys.readouterr().out
    assert "ok:" in out and "sequence_classification" in out
    assert yaml.safe_load(out.split("\nok:")[0])["train"]["epochs"] == 7


def test_validate_reads_the_data_as_train_will(workdir, tmp_path, capsys):
    # issue 18 item 6: a file that cannot be decoded failed only in `train`
    assert main(["validate", write_recipe(workdir, tmp_path)]) == 0
    assert "  data: train 48, dev 16, test 16 examples; 2 labels" in capsys.readouterr().out
    (tmp_path / "bad.txt").write_bytes(b"pos fine\nneg caf\xe9\n")
    bad = {"path": str(tmp_path / "bad.txt"), "format": "label_text"}
    err = one_line_error(
        capsys,
        ["validate", write_recipe(workdir, tmp_path, data__dev=bad, data__split={"test": 0.2})],
    )
    assert "bad.txt:2: cannot decode byte b'\\xe9' (byte offset 16) as utf-8" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    dev = {"path": str(empty), "format": "label_text"}
    err = one_line_error(
        capsys,
        ["validate", write_recipe(workdir, tmp_path, data__dev=dev, data__split={"test": 0.2})],
    )
    assert "no examples" in err


def test_list_shows_models_tasks_and_terms(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "minilm",
        "smollm2",
        *TASKS.names(),
        "l2_sp",
        "label_text",
        "accuracy",
    ):
        assert name in out, name


def test_train_eval_predict_cycle(workdir, tmp_path, capsys):
    recipe, run = write_recipe(workdir, tmp_path), tmp_path / "run"
    assert main(["train", recipe, "--output-dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "dev: accuracy=" in out and "test: accuracy=" in out
    summary = json.loads((run / "summary.json").read_text())

    # eval re-reads the data and the best model: the same numbers as at the end of training
    assert main(["eval", str(run)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["dev"] == pytest.approx(summary["dev"])
    assert evaluated["test"] == pytest.approx(summary["test"])

    inputs = tmp_path / "inputs.txt"
    inputs.write_text("the film was good happy\n\nthis book is bad sad\n")
    assert main(["predict", str(run), "a very good movie", "--file", str(inputs)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["input"] for x in lines] == [
        "a very good movie",
        "the film was good happy",
        "this book is bad sad",
    ]
    assert all(x["prediction"]["label"] in ("neg", "pos") for x in lines)
    assert all(0.5 <= x["prediction"]["score"] <= 1 for x in lines)

    # the run dir is kept: a second train refuses it unless resuming
    err = one_line_error(capsys, ["train", recipe, "--output-dir", str(run)])
    assert "already holds a run" in err and "--resume" in err


def test_predict_needs_a_finished_run(tmp_path, capsys):
    err = one_line_error(capsys, ["predict", str(tmp_path), "hello"])
    assert "not a finished tunesmith run" in err

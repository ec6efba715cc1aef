"""One error style (issue 13.4) and checks that come early / output that stays quiet (issue 18.6,
18.7), through ``tunesmith.cli.main`` on a tiny BERT built in process.

Every failure on user input or the environment is one ``error: ...`` line with exit code 2
(``--debug`` shows the traceback); a genuine bug shows its traceback and asks for a report."""

from __future__ import annotations

import errno
import logging
import shutil
import warnings

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_cli import one_line_error, workdir, write_recipe  # noqa: F401  (fixture)

from tunesmith.cli import main
from tunesmith.testing import save_tiny_model


def validate_error(capsys, workdir, tmp_path, *overrides, **changes) -> str:  # noqa: F811
    return one_line_error(
        capsys, ["validate", write_recipe(workdir, tmp_path, **changes), *overrides]
    )


# --- validate checks what train checks (issue 13 row "lr: .nan, max_steps: -5 ...") -----------


@pytest.mark.parametrize(
    "override, words",
    [
        ("optim.lr=.nan", "optim.lr: must be a finite number"),
        ("optim.lr=.inf", "optim.lr: must be a finite number"),
        ("train.max_steps=-5", "train.max_steps: must be >= 1"),
        ("train.eval_every=0", "train.eval_every: must be >= 1"),
        ("train.save_every=0", "train.save_every: must be >= 1"),
        ("train.early_stopping_patience=0", "train.early_stopping_patience: must be >= 1"),
        ("optim.warmup_steps=-1", "optim.warmup_steps: must be >= 0"),
        ("optim.weight_decay=-0.1", "optim.weight_decay: must be >= 0"),
        ("data.limit.train=0", "data.limit.train: must be >= 1"),
        ("task_weight=.nan", "task_weight: must be a finite number"),
    ],
)
def test_validate_refuses_what_train_would(workdir, tmp_path, capsys, override, words):  # noqa: F811
    assert words in validate_error(capsys, workdir, tmp_path, override)


def test_duplicate_yaml_key_is_an_error_naming_key_and_line(workdir, tmp_path, capsys):  # noqa: F811
    path = write_recipe(workdir, tmp_path)
    text = open(path).read().replace("optim:\n", "optim:\n  lr: 0.5\n", 1)
    open(path, "w").write(text)
    line = next(i for i, x in enumerate(text.splitlines(), 1) if x.strip().startswith("lr: 0.002"))
    err = one_line_error(capsys, ["validate", path])
    assert f"recipe.yaml:{line}:" in err and "duplicate key 'lr'" in err


@pytest.mark.parametrize("key", ["model", "distill.teacher"])
def test_missing_local_model_or_teacher_path_fails_in_validate(workdir, tmp_path, capsys, key):  # noqa: F811
    changes = {"model": "./no/such/folder"}
    if key == "distill.teacher":
        changes = {"distill": {"teacher": str(tmp_path / "gone")}, "objectives": [{"name": "kd"}]}
    err = validate_error(capsys, workdir, tmp_path, **changes)
    assert err.startswith(f"error: {key}: folder not found")


def test_hub_ids_and_embedded_names_are_not_paths(workdir, tmp_path, capsys):  # noqa: F811
    for name in ("minilm", "org/some-model"):
        assert main(["validate", write_recipe(workdir, tmp_path, model=name)]) == 0


# --- refused pickle model folders, disk full, damaged files: one line, not a traceback ----------


@pytest.fixture(scope="module")
def pickle_model(workdir):  # noqa: F811
    """The tiny BERT with its weights as pytorch_model.bin only (a pickle)."""
    folder = workdir / "bert_bin"
    shutil.copytree(workdir / "bert", folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


@pytest.mark.parametrize("command", ["validate", "train"])
@pytest.mark.parametrize("key", ["model", "distill.teacher"])
def test_pickle_only_model_or_teacher_is_one_line(
    workdir,  # noqa: F811
    pickle_model,
    tmp_path,
    capsys,
    command,
    key,
):
    changes = {"model": str(pickle_model)}
    if key == "distill.teacher":
        changes = {"distill": {"teacher": str(pickle_model)}, "objectives": [{"name": "kd"}]}
    err = one_line_error(capsys, [command, write_recipe(workdir, tmp_path, **changes)])
    assert f"{key}: " in err and "pytorch_model.bin" in err and "pickle" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No '
            'space left on device" })'
        ),
    ],
)
def test_disk_full_during_a_save_is_one_line(workdir, tmp_path, capsys, monkeypatch, exc):  # noqa: F811
    def full(*args, **kwargs):
        raise exc

    monkeypatch.setattr("tunesmith.train.loop.save_checkpoint", full)
    err = one_line_error(capsys, ["train", write_recipe(workdir, tmp_path)])
    assert "disk full" in err and str(tmp_path / "run") in err
    assert "last complete checkpoint is kept" in err


def test_damaged_adapter_weights_name_the_file(workdir, tmp_path, capsys):  # noqa: F811
    recipe = write_recipe(workdir, tmp_path, adapter={"type": "lora", "r": 2}, train__epochs=1)
    assert main(["train", recipe]) == 0
    weights = tmp_path / "run" / "best" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    capsys.readouterr()
    err = one_line_error(capsys, ["eval", str(tmp_path / "run")])
    assert f"cannot read {weights}" in err


def test_a_bug_shows_its_traceback_and_asks_for_a_report(workdir, tmp_path, capsys, monkeypatch):  # noqa: F811
    def broken(*args, **kwargs):
        raise KeyError("oops")

    monkeypatch.setattr("tunesmith.cli.commands.load_recipe", broken)
    assert main(["validate", write_recipe(workdir, tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError" in err and "bug in tunesmith" in err
    with pytest.raises(KeyError):
        main(["--debug", "validate", write_recipe(workdir, tmp_path)])


def test_interrupt_names_how_to_continue(workdir, tmp_path, capsys, monkeypatch):  # noqa: F811
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("tunesmith.cli.commands.train", interrupted)
    assert main(["train", write_recipe(workdir, tmp_path)]) == 130
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "checkpoint is kept" in err and "--resume" in err


# --- an adapter on a replaced base (issue 13 row) and quiet output (issue 18.7) ----------------


@pytest.fixture
def adapter_run(workdir, tmp_path):  # noqa: F811
    """A LoRA run (head saved with the adapter) on a tiny BERT whose checkpoint has no head for
    the run's 2 labels (3 outputs): (run dir, base)."""
    base = save_tiny_model(tmp_path / "base", "bert", "sequence_classification", num_labels=3)
    recipe = write_recipe(workdir, tmp_path, model=str(base), adapter={"type": "lora", "r": 2})
    assert main(["train", recipe, "train.epochs=1"]) == 0
    return tmp_path / "run", base


def test_eval_of_an_adapter_run_does_not_report_a_random_head(adapter_run, capsys, caplog):
    capsys.readouterr()
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        assert main(["eval", str(adapter_run[0])]) == 0
        assert main(["predict", str(adapter_run[0]), "good movie"]) == 0
    assert "randomly initialised" not in caplog.text + capsys.readouterr().err


def test_adapter_run_on_a_replaced_base_is_refused(adapter_run, capsys):
    run, base = adapter_run
    shutil.rmtree(base)
    save_tiny_model(base, "bert", "sequence_classification", num_labels=3, seed=7)  # new weights
    capsys.readouterr()
    for command in (["predict", str(run), "good movie"], ["eval", str(run)]):
        err = one_line_error(capsys, command)
        assert "weights differ" in err and "weights digest" in err


def test_warnings_are_one_line_without_source(workdir, tmp_path, capsys, monkeypatch):  # noqa: F811
    from tunesmith.config import load_recipe
    from tunesmith.data import readers

    def warn(*args, **kwargs):  # as data.readers warns about skipped lines (on_error: skip)
        warnings.warn_explicit(
            "sent.txt: skipped 1 malformed line(s)", UserWarning, readers.__file__, 120
        )
        return load_recipe(*args, **kwargs)

    monkeypatch.setattr("tunesmith.cli.commands.load_recipe", warn)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        main(["validate", write_recipe(workdir, tmp_path)])
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "tunesmith: warning: sent.txt: skipped 1 malformed line(s)"
    assert all(line.startswith("tunesmith: ") for line in lines), lines  # no source line


def test_no_progress_bars_when_not_a_terminal(workdir, tmp_path, capsys):  # noqa: F811
    recipe = write_recipe(workdir, tmp_path, train__progress=True, train__epochs=1)
    assert main(["train", recipe]) == 0
    err = capsys.readouterr().err
    assert "Writing model shards" not in err and "it/s" not in err and "step/s" not in err


# --- validate --show on a continual recipe prints the stages (issue 18.6) ----------------------


def test_validate_show_prints_the_resolved_stages(workdir, tmp_path, capsys):  # noqa: F811
    source = {"path": "sent.txt", "format": "label_text"}
    recipe = {
        "model": str(workdir / "bert"),
        "task": "sequence_classification",
        "data": {"root": str(workdir)},
        "continual": {"method": "ewc"},
        "stages": [
            {"name": "a", "data": {"train": source, "split": {"dev": 0.2}}},
            {"name": "b", "data": {"train": source, "split": {"test": 0.3}}},
        ],
    }
    path = tmp_path / "seq.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["validate", str(path), "--show"]) == 0
    out = capsys.readouterr().out
    shown = yaml.safe_load(out.split("\nok:")[0])
    assert [s["name"] for s in shown["stages"]] == ["a", "b"]
    assert shown["stages"][1]["data"]["split"] == {"test": 0.3}
    assert shown["stages"][0]["method"] == "ewc" and shown["continual"]["method"] == "ewc"
    assert shown["stages"][0]["task"] == "sequence_classification" and "2 stages" in out

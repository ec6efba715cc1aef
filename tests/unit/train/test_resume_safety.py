"""Resume that is exact or refuses, and run folders that never run code (issue 13, items 1-2).

Each test is one probe of the issue's table: a planted pickle payload, a training file that shrank
or gained a label before ``--resume``, truncated state files, a kill at start-up, two processes on
one folder, duplicated metrics rows. Tiny BERT, 6-7 optimiser steps.
"""

from __future__ import annotations

import json
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.errors import ModelError, TrainingError, TunesmithError
from tunesmith.train.checkpoint import OPTIMIZER_FILES, checkpoint_dirs
from tunesmith.train.loop import Interrupted, train
from tunesmith.train.runfolder import RunFolderError

from .conftest import make_recipe

OVER = {"train.max_steps": 7, "train.save_every": 2, "data.split": "{}"}
KIND = "sequence_classification"


class Payload:
    """Unpickling this creates ``marker`` (what an attacker's code would do)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def payload_bytes(marker: Path) -> bytes:
    return pickle.dumps(Payload(marker))


@pytest.fixture
def data(tiny_data, tmp_path):
    """A copy of the tiny data the test may change."""
    return Path(shutil.copytree(tiny_data, tmp_path / "data"))


@pytest.fixture
def bert(tiny_models):
    return tiny_models["bert", KIND]


def recipe(bert, data, run, **over):
    return make_recipe(bert, KIND, data, run, **{**OVER, **over})


def killed_at(rec, step=5):
    with pytest.raises(Interrupted):
        train(rec, interrupt_at_step=step)


@pytest.fixture
def reference(bert, data, tmp_path):
    """Final weights of the uninterrupted run."""
    train(recipe(bert, data, tmp_path / "full"))
    return load_file(str(tmp_path / "full" / "best" / "model.safetensors"))


def same_weights(run: Path, ref: dict) -> bool:
    got = load_file(str(run / "best" / "model.safetensors"))
    return got.keys() == ref.keys() and all(torch.equal(got[k], ref[k]) for k in ref)


def steps_logged(run: Path, split: str = "train") -> list[int]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if r["split"] == split]


# -- pickles ------------------------------------------------------------------------------------


def test_a_payload_planted_in_any_checkpoint_file_never_runs(bert, data, tmp_path):
    run, marker = tmp_path / "run", tmp_path / "PWNED"
    rec = recipe(bert, data, run)
    killed_at(rec)
    (ckpt,) = checkpoint_dirs(run)
    names = sorted(p.name for p in ckpt.iterdir())
    assert not any(n.endswith((".pkl", ".bin", ".pt")) for n in names), names
    for name in names:  # every file of the checkpoint in turn holds the payload
        original = (ckpt / name).read_bytes()
        (ckpt / name).write_bytes(payload_bytes(marker))
        with pytest.raises(RunFolderError):
            train(rec, resume=True)
        (ckpt / name).write_bytes(original)
        assert not marker.exists(), name
    # the files accelerate used to write (and load with weights_only=False) are refused by name
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "x.pt"):
        (ckpt / name).write_bytes(payload_bytes(marker))
        with pytest.raises(RunFolderError, match="pickle"):
            train(rec, resume=True)
        (ckpt / name).unlink()
    assert not marker.exists()


def _pickled_model_folder(src: Path, dest: Path, marker: Path, keep_safetensors: bool) -> Path:
    shutil.copytree(src, dest)
    if not keep_safetensors:
        (dest / "model.safetensors").unlink()
    (dest / "pytorch_model.bin").write_bytes(payload_bytes(marker))
    (dest / "training_args.pkl").write_bytes(payload_bytes(marker))
    return dest


def test_pickled_model_and_teacher_folders_are_refused_and_never_unpickled(bert, tmp_path):
    from tunesmith.distill.teacher import load_teacher
    from tunesmith.models import load_model

    marker = tmp_path / "PWNED"
    only_pickle = _pickled_model_folder(bert, tmp_path / "m", marker, keep_safetensors=False)
    with pytest.raises(ModelError, match="safetensors") as err:
        load_model(only_pickle, KIND)
    assert "\n" not in str(err.value)
    with pytest.raises(ModelError, match="safetensors"):
        load_teacher(only_pickle, KIND)
    beside = _pickled_model_folder(bert, tmp_path / "b", marker, keep_safetensors=True)
    load_model(beside, KIND)  # the safetensors weights load; the pickles are left alone
    load_teacher(beside, KIND)
    assert not marker.exists()


def test_a_payload_in_the_teacher_cache_never_runs(bert, tmp_path):
    from tunesmith.distill.cache import TeacherCache
    from tunesmith.models import load_model

    teacher = load_model(bert, KIND).eval()
    examples = [{"input_ids": [2, 5 + i, 3], "attention_mask": [1, 1, 1]} for i in range(4)]
    cache = TeacherCache.build(tmp_path, teacher, examples, task=KIND)
    marker = tmp_path / "PWNED"
    for shard in cache.directory.glob("*.safetensors"):
        shard.write_bytes(payload_bytes(marker))
    (cache.directory / "extra.pkl").write_bytes(payload_bytes(marker))
    with pytest.raises(TunesmithError, match="damaged"):
        TeacherCache(cache.directory)
    rebuilt = TeacherCache.build(tmp_path, teacher, examples, task=KIND)  # computed again
    assert not rebuilt.reused
    assert not marker.exists()


def test_no_torch_load_or_pickle_in_the_package():
    src = Path(__file__).parents[3] / "src" / "tunesmith"
    for path in src.rglob("*.py"):
        text = path.read_text()
        assert "torch.load(" not in text or "weights_only=True" in text, path
        assert "pickle.load" not in text and "import pickle" not in text, path


# -- changed inputs -----------------------------------------------------------------------------


def test_a_shrunk_training_file_is_an_error_not_a_hang(bert, data, tmp_path):
    run = tmp_path / "run"
    rec = recipe(bert, data, run, **{"train.max_steps": 30, "train.save_every": 10})
    killed_at(rec, 11)  # checkpoint at step 10: 8 steps into the second epoch (12 per epoch)
    lines = (data / "sent.txt").read_text().splitlines()
    (data / "sent.txt").write_text("\n".join(lines[:40]) + "\n")
    signal.alarm(120)  # a hang fails the test instead of stalling the suite
    try:
        with pytest.raises(RunFolderError, match=r"data\.train .*sent\.txt.* changed") as err:
            train(rec, resume=True)
    finally:
        signal.alarm(0)
    assert "\n" not in str(err.value)


def test_the_loop_never_spins_past_the_end_of_a_shorter_plan(bert, data, tmp_path, monkeypatch):
    """Even without the fingerprint (a plan that changed for another reason), no busy loop."""
    from tunesmith.train.modes.single import SingleTask

    run = tmp_path / "run"
    rec = recipe(bert, data, run, **{"train.max_steps": 30, "train.save_every": 10})
    killed_at(rec, 11)
    plan = SingleTask.plan
    monkeypatch.setattr(SingleTask, "plan", lambda self, epoch: plan(self, epoch)[:3])
    signal.alarm(120)
    try:
        with pytest.raises(TrainingError, match="past the end"):
            train(rec, resume=True)
    finally:
        signal.alarm(0)


def test_a_training_file_that_gained_a_label_is_refused_before_anything_is_written(
    bert, data, tmp_path
):
    run = tmp_path / "run"
    rec = recipe(bert, data, run)
    killed_at(rec)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with (data / "sent.txt").open("a") as f:
        f.write("2 a brand new class\n")
    with pytest.raises(RunFolderError, match="data.train") as err:
        train(rec, resume=True)
    assert "\n" not in str(err.value)
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert after == before  # labels.json (and everything else) untouched


def test_changed_recipe_world_size_and_model_are_named(bert, data, tmp_path):
    from tunesmith.testing import save_tiny_model

    base = Path(shutil.copytree(bert, tmp_path / "base"))
    run = tmp_path / "run"
    rec = recipe(base, data, run)
    killed_at(rec)
    with pytest.raises(RunFolderError, match=r"recipe changed: optim\.lr: 0\.001 -> 0\.002"):
        train(recipe(base, data, run, **{"optim.lr": 0.002}), resume=True)
    fp_path = run / "fingerprint.json"
    fp = json.loads(fp_path.read_text())
    fp_path.write_text(json.dumps({**fp, "world_size": 2}))
    with pytest.raises(RunFolderError, match=r"number of processes changed \(2 -> 1\)"):
        train(rec, resume=True)
    fp_path.write_text(json.dumps(fp))
    other = save_tiny_model(tmp_path / "other", "bert", KIND, seed=1)  # same config, new weights
    shutil.copy(other / "model.safetensors", base / "model.safetensors")
    with pytest.raises(RunFolderError, match="starting model's weights changed"):
        train(rec, resume=True)


# -- damaged checkpoints ------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_truncated_random_states_are_an_error_never_a_silent_divergence(bert, data, tmp_path):
    run = tmp_path / "run"
    rec = recipe(bert, data, run)
    killed_at(rec)
    (ckpt,) = checkpoint_dirs(run)
    _truncate(ckpt / "rng-0.safetensors")
    with pytest.raises(RunFolderError, match="rng-0.safetensors is missing or truncated"):
        train(rec, resume=True)


@pytest.mark.parametrize("name", ["model.safetensors", "trainer_state.json", "rng-0.json"])
def test_a_truncated_newest_checkpoint_falls_back_to_the_previous_one(
    bert, data, tmp_path, reference, capsys, name
):
    run = tmp_path / "run"
    rec = recipe(bert, data, run, **{"train.keep_checkpoints": 2})
    killed_at(rec, 5)  # checkpoints at steps 2 and 4
    old, new = checkpoint_dirs(run)
    _truncate(new / name)
    train(rec, resume=True)
    out = capsys.readouterr().out
    assert f"checkpoint {new} is not usable" in out and "resuming from step-2" in out
    assert same_weights(run, reference)


def test_a_state_file_that_does_not_restore_is_an_error(bert, data, tmp_path):
    """A file that matches its manifest but cannot be restored (here: a stranger's tensor)."""
    from safetensors.torch import save_file

    from tunesmith.fingerprint import file_digest

    run = tmp_path / "run"
    rec = recipe(bert, data, run)
    killed_at(rec)
    (ckpt,) = checkpoint_dirs(run)
    save_file({"no.such.weight": torch.zeros(2)}, str(ckpt / "model.safetensors"))
    state = json.loads((ckpt / "trainer_state.json").read_text())
    path = ckpt / "model.safetensors"
    state["files"]["model.safetensors"] = {
        "bytes": path.stat().st_size,
        "digest": file_digest(path),
    }
    (ckpt / "trainer_state.json").write_text(json.dumps(state))
    with pytest.raises(RunFolderError, match="cannot be restored"):
        train(rec, resume=True)


# -- start-up, locking, metrics -----------------------------------------------------------------


@pytest.mark.parametrize("resume", [False, True])
def test_a_run_killed_at_start_up_simply_starts_again(bert, data, tmp_path, reference, resume):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("")  # what a kill -9 during start-up used to leave
    (run / "metrics.jsonl").write_text('{"step": 0, "split": "dev", "accu')
    (run / "checkpoints" / "step-2.tmp").mkdir(parents=True)
    summary = train(recipe(bert, data, run), resume=resume)
    assert summary["steps"] == 7 and same_weights(run, reference)
    assert steps_logged(run) == [7]  # the last step (log_every 10); the stale line is gone


def test_a_second_process_on_the_folder_refuses_and_names_the_holder(bert, data, tmp_path):
    run = tmp_path / "run"
    rec = recipe(bert, data, run)
    killed_at(rec)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path;"
            "from tunesmith.train.runfolder import RunLock;"
            f"RunLock(Path({str(run)!r})).acquire(); print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(RunFolderError, match=f"in use by another .*pid {holder.pid}"):
            train(rec, resume=True)
    finally:
        holder.kill()
        holder.wait()
    train(rec, resume=True)  # the kernel dropped the dead holder's lock


def test_metrics_have_no_duplicated_steps_after_a_resume(bert, data, tmp_path):
    run = tmp_path / "run"
    rec = recipe(bert, data, run, **{"train.log_every": 1})
    killed_at(rec, 5)  # steps 3-5 logged, then replayed from the step-4 checkpoint
    train(rec, resume=True)
    assert steps_logged(run) == list(range(1, 8))
    train(rec, resume=True)  # resuming a finished run goes straight to the end
    assert steps_logged(run) == list(range(1, 8))
    assert len(steps_logged(run, "final_test")) <= 1


# -- disk -------------------------------------------------------------------------------------


def test_only_the_newest_checkpoints_keep_optimizer_state_and_disk_is_reported(
    bert, data, tmp_path, capsys
):
    run = tmp_path / "run"
    rec = recipe(bert, data, run, **{"train.keep_checkpoints": 3, "train.save_every": 1})
    killed_at(rec, 5)
    with_opt = [all((c / f).is_file() for f in OPTIMIZER_FILES) for c in checkpoint_dirs(run)]
    assert [c.name for c in checkpoint_dirs(run)] == ["step-3", "step-4", "step-5"]
    assert with_opt == [False, True, True]
    summary = train(rec, resume=True)
    assert not any((c / f).exists() for c in checkpoint_dirs(run) for f in OPTIMIZER_FILES)
    assert summary["disk_bytes"] > 0
    assert json.loads((run / "summary.json").read_text())["disk_bytes"] == summary["disk_bytes"]
    assert "MB on disk" in capsys.readouterr().out


def test_adapter_run_resumes_exactly_and_checkpoints_only_what_trains(bert, data, tmp_path):
    over = {"adapter": "{type: lora, r: 2}"}
    train(recipe(bert, data, tmp_path / "full", **over))
    run = tmp_path / "run"
    rec = recipe(bert, data, run, **over)
    killed_at(rec)
    (ckpt,) = checkpoint_dirs(run)
    saved = load_file(str(ckpt / "model.safetensors"))
    assert saved and all("lora" in k or "classifier" in k or "position" in k for k in saved)
    train(rec, resume=True)
    a = load_file(str(tmp_path / "full" / "best" / "adapter_model.safetensors"))
    b = load_file(str(run / "best" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_keys_added_since_the_run_started_are_not_changes():
    # a run started by an earlier tunesmith lacks keys added since (with their defaults)
    import copy

    import yaml

    from tunesmith.config import dump_recipe, parse_recipe
    from tunesmith.train.runcheck import describe_change

    rec = parse_recipe({"model": "m", "task": "sequence_classification", "data": {"train": "t"}})
    now = yaml.safe_load(dump_recipe(rec))
    old = copy.deepcopy(now)
    del old["head"]
    del old["data"]["chat_format"]
    assert describe_change("recipe", old, now) == []
    old["optim"]["lr"] = 0.5
    (change,) = describe_change("recipe", old, now)
    assert change.startswith("the recipe changed: optim.lr: 0.5 -> ")
    old["no_such_key"] = 1  # a recipe today's schema refuses is compared as saved
    assert "no_such_key" in describe_change("recipe", old, now)[0]

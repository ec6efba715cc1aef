"""train.precision: auto's decision (hardware probe patched both ways), the choice printed and
recorded, pinned on resume; fp16 refused on a CPU; the fp16 gradient scaler checkpointed."""

import json

import pytest
import torch

import tunesmith.precision as precision
import tunesmith.train.setup as setup
from tunesmith.errors import ConfigError
from tunesmith.precision import autocast, resolve_precision
from tunesmith.train.loop import Interrupted, train
from tunesmith.train.runfolder import RunFolderError
from tunesmith.train.step import step_optimizer

from .conftest import make_recipe


def patch_probe(monkeypatch, native: bool):
    why = "the CPU has AMX (patched)" if native else "the CPU has no AMX (patched)"
    monkeypatch.setattr(precision, "native_bf16", lambda device: (native, why))


@pytest.mark.parametrize("native,chosen", [(True, "bf16"), (False, "fp32")])
def test_auto_follows_the_hardware_probe(monkeypatch, native, chosen):
    patch_probe(monkeypatch, native)
    p = resolve_precision("auto", "cpu")
    assert (p.name, p.requested) == (chosen, "auto")
    assert p.dtype == {"bf16": torch.bfloat16, "fp32": torch.float32}[chosen]
    assert "patched" in p.reason


def test_explicit_and_pinned_choices(monkeypatch):
    patch_probe(monkeypatch, True)
    assert resolve_precision("fp32", "cpu").name == "fp32"
    assert resolve_precision("bf16", "cpu").reason == "set in the recipe"
    pinned = resolve_precision("auto", "cpu", pinned="fp32")  # the run began on another machine
    assert pinned.name == "fp32" and "kept" in pinned.reason


def test_fp16_on_a_cpu_is_one_line_error():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU.*use bf16") as err:
        resolve_precision("fp16", "cpu")
    assert "\n" not in str(err.value)


def test_the_real_probe_answers_from_torch_and_the_os(monkeypatch):
    """The unpatched probe (the suite patches it) reads torch's and /proc/cpuinfo's answers."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"fpu", "avx2"})
    probe = REAL_PROBE
    assert probe("cpu")[0] is False
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"fpu", "amx_bf16"})
    ok, why = probe("cpu")
    assert ok and "amx_bf16" in why


REAL_PROBE = precision.native_bf16  # imported before the autouse fixture patches the module


def test_autocast_context():
    p = resolve_precision("bf16", "cpu")
    with autocast(p, "cpu"):
        y = torch.nn.Linear(4, 4)(torch.randn(2, 4))
    assert y.dtype == torch.bfloat16
    with autocast(resolve_precision("fp32", "cpu"), "cpu"):
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.float32


def test_choice_is_printed_recorded_and_pinned_on_resume(
    tiny_models, tiny_data, tmp_path, monkeypatch, capsys
):
    patch_probe(monkeypatch, True)
    model = tiny_models[("bert", "sequence_classification")]
    over = {"train.precision": "auto", "train.max_steps": 4, "train.eval_every": 2}
    rec = make_recipe(model, "sequence_classification", tiny_data, tmp_path / "r", **over)
    with pytest.raises(Interrupted):
        train(rec, interrupt_at_step=2)
    assert "tunesmith: precision bf16 (auto: the CPU has AMX (patched))" in capsys.readouterr().out
    assert json.loads((tmp_path / "r" / "fingerprint.json").read_text())["precision"] == "bf16"
    patch_probe(monkeypatch, False)  # resumed on a machine that would choose fp32
    summary = train(rec, resume=True)
    assert summary["precision"]["chosen"] == "bf16" and "kept" in summary["precision"]["reason"]
    saved = json.loads((tmp_path / "r" / "summary.json").read_text())["precision"]
    assert saved["requested"] == "auto" and saved["chosen"] == "bf16"


def test_a_changed_choice_refuses_the_resume(tiny_models, tiny_data, tmp_path, monkeypatch):
    model = tiny_models[("bert", "sequence_classification")]
    over = {"train.precision": "auto", "train.max_steps": 4, "train.eval_every": 2}
    rec = make_recipe(model, "sequence_classification", tiny_data, tmp_path / "r", **over)
    with pytest.raises(Interrupted):
        train(rec, interrupt_at_step=2)
    path = tmp_path / "r" / "fingerprint.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "precision": "fp16"}))
    monkeypatch.setattr(
        setup, "resolve_precision", lambda *a, **k: resolve_precision("fp32", "cpu")
    )
    with pytest.raises(RunFolderError, match=r"chosen precision changed \(fp16 -> fp32\)"):
        train(rec, resume=True)


def cpu_scaler(monkeypatch):
    """fp16 needs CUDA; the scaler's bookkeeping (scale, unscale before clipping, skipped
    steps, checkpointing) is the same on a CPU, so the tests drive it there."""
    monkeypatch.setattr(
        setup, "make_scaler", lambda p, d: torch.amp.GradScaler("cpu", init_scale=2.0**10)
    )


def test_scaled_run_resumes_exactly(tiny_models, tiny_data, tmp_path, monkeypatch):
    cpu_scaler(monkeypatch)
    model = tiny_models[("bert", "sequence_classification")]
    over = {"train.max_steps": 6, "train.eval_every": 3}
    whole = make_recipe(model, "sequence_classification", tiny_data, tmp_path / "a", **over)
    ref = train(whole)
    killed = make_recipe(model, "sequence_classification", tiny_data, tmp_path / "b", **over)
    with pytest.raises(Interrupted):
        train(killed, interrupt_at_step=3)
    state = json.loads((tmp_path / "b" / "checkpoints" / "step-3" / "scaler.json").read_text())
    assert state["scale"] > 0
    resumed = train(killed, resume=True)
    assert resumed["dev"] == ref["dev"]


def test_an_overflowing_step_is_skipped_and_the_schedule_waits():
    param = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([param], lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)

    class R:
        optimizer, scaler = opt, None

    run = R()
    run.scaler = scaler
    scaler.scale(param.sum()).backward()
    param.grad[1] = float("inf")  # an fp16 overflow
    scaler.unscale_(opt)
    assert step_optimizer(run) is False
    assert torch.equal(param.detach(), torch.ones(3)) and scaler.get_scale() == 2.0
    opt.zero_grad()
    (scaler.scale(param.sum())).backward()
    scaler.unscale_(opt)
    assert step_optimizer(run) is True
    assert torch.allclose(param.detach(), torch.full((3,), 0.9))

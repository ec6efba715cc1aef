"""Adapters and distillation through the one loop (recipe keys -> run dir -> predict/merge)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from tunesmith.errors import ConfigError
from tunesmith.predict import load_run, merge_run, predict_texts
from tunesmith.train.loop import train

from .conftest import make_recipe

CLS = "sequence_classification"


@pytest.mark.parametrize(
    "adapter", ["lora", "houlsby", "ia3", "{type: pfeiffer, reduction_factor: 4}"]
)
def test_adapter_run_saves_adapter_only_and_predicts(tiny_models, tiny_data, tmp_path, adapter):
    run = tmp_path / "run"
    model_dir = tiny_models["bert", CLS]
    summary = train(make_recipe(model_dir, CLS, tiny_data, run, adapter=adapter))
    assert summary["trainable_params"] < summary["total_params"] / 2
    best = run / "best"
    assert not (best / "config.json").exists()  # adapter-only, not a full model copy
    size = sum(f.stat().st_size for f in best.glob("*.safetensors"))
    assert size < (model_dir / "model.safetensors").stat().st_size
    _, model, _, _ = load_run(run)
    base = load_file(str(model_dir / "model.safetensors"))
    state = model.state_dict()
    for name, tensor in base.items():  # base weights untouched (head excepted: it trains)
        if not name.startswith("classifier"):
            assert torch.equal(state[name], tensor), name
    assert predict_texts(run, ["good happy film"])[0]["label"] in {"0", "1"}


def test_lora_merge_gives_same_outputs(tiny_models, tiny_data, tmp_path):
    run = tmp_path / "lora"
    train(
        make_recipe(
            tiny_models["bert", CLS], CLS, tiny_data, run, adapter="{type: lora, r: 4, alpha: 8}"
        )
    )
    merged = merge_run(run, tmp_path / "merged")
    from transformers import AutoModelForSequenceClassification

    plain = AutoModelForSequenceClassification.from_pretrained(merged).eval()
    _, adapted, tok, _ = load_run(run)
    enc = tok(["good happy film", "bad sad book"], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert torch.allclose(plain(**enc).logits, adapted(**enc).logits, atol=1e-5)


def test_adapter_recipe_errors_before_loading():
    from tunesmith.config import parse_recipe

    base = {"model": "x", "task": CLS, "data": {"train": "t.txt"}}
    with pytest.raises(ConfigError, match="adapter.reducton_factor: unknown key"):
        parse_recipe(base, ["adapter={type: houlsby, reducton_factor: 4}"])
    with pytest.raises(ConfigError, match="transfer.linear_probe: cannot be combined"):
        parse_recipe(base, ["adapter=lora", "transfer.linear_probe=true"])


def test_kd_student_from_teacher_with_cache(tiny_models, tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    teacher = tmp_path / "teacher"
    teacher_summary = train(
        make_recipe(tiny_models["bert", CLS], CLS, tiny_data, teacher, **{"train.epochs": 4})
    )
    student_over = {
        "model": "null",
        "distill": f"{{teacher: {teacher}, cache: true}}",
        "student": "{from_teacher: {layers: [1]}}",
        "task_weight": 0.5,
        "objectives": "[{name: kd, weight: 0.5, params: {temperature: 2.0}}]",
    }
    summary = train(make_recipe(teacher, CLS, tiny_data, tmp_path / "s1", **student_over))
    cfg = json.loads((tmp_path / "s1/best/config.json").read_text())
    assert cfg["num_hidden_layers"] == 1
    assert summary["total_params"] < teacher_summary["total_params"]
    caches = list((tmp_path / "cache" / "teacher_outputs").iterdir())
    assert len(caches) == 1
    lines = [json.loads(x) for x in (tmp_path / "s1/metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if x["split"] == "train"]
    assert all("kd" in x for x in train_lines)
    # loss logged is the weighted total: 0.5 * task + 0.5 * kd
    x = train_lines[0]
    assert x["loss"] == pytest.approx(0.5 * x["task_loss"] + 0.5 * x["kd"], rel=1e-4)


def test_hidden_state_term_needs_teacher():
    from tunesmith.config import parse_recipe

    base = {"model": "x", "task": CLS, "data": {"train": "t.txt"}}
    with pytest.raises(
        ConfigError, match="distill.teacher: objective 'hidden_mse' needs a teacher"
    ):
        parse_recipe(base, ["objectives=[{name: hidden_mse}]"])


def test_hidden_state_student_saves_a_clean_config(tiny_models, tiny_data, tmp_path):
    """Terms ask for hidden states per forward; the saved student must not keep returning them."""
    teacher = tmp_path / "teacher"  # a trained run: its labels are the data's
    train(make_recipe(tiny_models["bert", CLS], CLS, tiny_data, teacher, **{"train.max_steps": 1}))
    over = {
        "model": "null",
        "distill": f"{{teacher: {teacher}}}",
        "train.max_steps": 2,
        "student": "{from_teacher: {layers: [1]}}",
        "objectives": "[{name: hidden_mse}]",
    }
    train(make_recipe(teacher, CLS, tiny_data, tmp_path / "h", **over))
    cfg = json.loads((tmp_path / "h/best/config.json").read_text())
    assert not cfg.get("output_hidden_states", False)

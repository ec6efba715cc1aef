"""model.dtype (frozen weights stored in bf16, trained ones fp32) and gradient checkpointing."""

import json

import torch

from tunesmith.adapters.loading import load_model_or_adapter
from tunesmith.memory import parameter_bytes
from tunesmith.train.loop import train
from tunesmith.train.setup import make_accelerator, setup_run
from tunesmith.train.step import optimizer_step

from .conftest import make_recipe

LM = "causal_lm"
CLS = "sequence_classification"


def built(recipe):
    from pathlib import Path

    return setup_run(recipe, Path(recipe.output_dir), False, make_accelerator(recipe))


def test_bf16_frozen_base_halves_frozen_memory_and_keeps_training_fp32(
    tiny_models, tiny_data, tmp_path
):
    model = tiny_models["llama", LM]
    runs = {}
    for dtype in ("fp32", "bf16"):
        over = {"adapter": "{type: lora, r: 4}", "model": f"{{name: {model}, dtype: {dtype}}}"}
        runs[dtype] = built(make_recipe(model, LM, tiny_data, tmp_path / dtype, **over))
    fp32, bf16 = (runs[k].raw_model for k in ("fp32", "bf16"))
    assert parameter_bytes(bf16, trainable=False) * 2 == parameter_bytes(fp32, trainable=False)
    assert parameter_bytes(bf16, trainable=True) == parameter_bytes(fp32, trainable=True)
    frozen = [p for p in bf16.parameters() if not p.requires_grad]
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen)
    run = runs["bf16"]
    trained = [p for g in run.optimizer.param_groups for p in g["params"]]
    assert trained and all(p.dtype == torch.float32 for p in trained)
    run.model.train()
    optimizer_step(run, run.mode.plan(0)[0])  # precision fp32: no autocast, mixed dtypes
    states = [t for s in run.optimizer.state.values() for t in s.values() if t.dim() > 0]
    assert states and all(t.dtype == torch.float32 for t in states)


def test_lora_on_a_bf16_base_trains_saves_and_loads_back(tiny_models, tiny_data, tmp_path):
    model = tiny_models["llama", LM]
    over = {
        "adapter": "{type: lora, r: 4}",
        "model": f"{{name: {model}, dtype: bf16}}",
        "train.max_steps": 3,
        "train.precision": "bf16",
    }
    summary = train(make_recipe(model, LM, tiny_data, tmp_path / "run", **over))
    assert summary["precision"]["chosen"] == "bf16"
    meta = json.loads((tmp_path / "run/best/tunesmith_adapter.json").read_text())
    assert meta  # an adapter-only best/
    loaded = load_model_or_adapter(tmp_path / "run/best", LM)
    lora = [p for n, p in loaded.named_parameters() if "lora" in n]
    assert lora and all(p.dtype == torch.float32 for p in lora)
    ids = torch.randint(7, loaded.config.vocab_size, (2, 6))
    assert torch.isfinite(loaded(input_ids=ids, labels=ids).loss)


def test_frozen_layers_in_bf16_and_a_trained_head_work_without_autocast(
    tiny_models, tiny_data, tmp_path
):
    """A full fine-tune with frozen lower blocks: those are bf16, the rest fp32 (input casts)."""
    model = tiny_models["bert", CLS]
    over = {"model": f"{{name: {model}, dtype: bf16}}", "transfer.freeze_layers": 1}
    over["train.max_steps"] = 2
    summary = train(make_recipe(model, CLS, tiny_data, tmp_path / "run", **over))
    assert summary["precision"]["chosen"] == "fp32" and 0 <= summary["dev"]["accuracy"] <= 1


def test_checkpointing_is_on_in_a_run_with_frozen_embeddings(tiny_models, tiny_data, tmp_path):
    model = tiny_models["llama", LM]
    over = {"train.gradient_checkpointing": "true", "transfer.freeze_embeddings": "true"}
    run = built(make_recipe(model, LM, tiny_data, tmp_path / "run", **over))
    assert run.raw_model.is_gradient_checkpointing
    run.model.train()
    values = optimizer_step(run, run.mode.plan(0)[0])
    assert values["grad_norm"] > 0


def test_hidden_state_distillation_with_checkpointing(tiny_models, tiny_data, tmp_path):
    teacher = tmp_path / "teacher"
    train(make_recipe(tiny_models["bert", CLS], CLS, tiny_data, teacher, **{"train.max_steps": 1}))
    over = {
        "distill": f"{{teacher: {teacher}}}",
        "train.max_steps": 2,
        "train.gradient_checkpointing": "true",
        "objectives": "[{name: hidden_mse}]",
        "model": f"{{name: {teacher}, dtype: fp32}}",
    }
    summary = train(make_recipe(teacher, CLS, tiny_data, tmp_path / "h", **over))
    assert summary["steps"] == 2

"""One adapter and one head per task on a frozen base (task: multi_head, adapter.per_task)."""

import json

import pytest
import torch

from tunesmith.adapters import PerTaskAdapterModel, load_multitask
from tunesmith.config import parse_recipe
from tunesmith.errors import ConfigError
from tunesmith.heads import HeadSpec
from tunesmith.predict import evaluate_run, predict_texts
from tunesmith.train.loop import train

from .test_loop_multitask import multitask_recipe

LORA = {"type": "lora", "r": 4, "per_task": True}


def pertask_recipe(tiny_models, tiny_data, run, adapter=LORA, **over):
    recipe = multitask_recipe(
        tiny_models["bert", "sequence_classification"], tiny_data, run, **over
    )
    data = {**_raw(recipe), "adapter": adapter}
    return parse_recipe(data, [])


def _raw(recipe):
    from tunesmith.configschema import to_dict

    return {k: v for k, v in to_dict(recipe).items() if v is not None}


def test_run_saves_one_artefact_and_reloads_it_exactly(tiny_models, tiny_data, tmp_path):
    run = tmp_path / "pt"
    summary = train(pertask_recipe(tiny_models, tiny_data, run, **{"train.max_steps": 4}))
    best = run / "best"
    assert not (best / "model.safetensors").exists()  # no base weights: a reference
    assert json.loads((best / "multitask.json").read_text())["format"] == (
        "tunesmith.multihead-adapters"
    )
    for task in ("sent", "ner"):  # PEFT's files per task (LoRA has a PEFT format)
        assert (best / "adapters" / task / "adapter_config.json").is_file()
        assert (best / "adapters" / task / "adapter_model.safetensors").is_file()
    sizes = summary["per_task_adapters"]
    assert set(sizes["adapter_bytes"]) == {"sent", "ner"}
    assert sizes["artefact_bytes"] > sum(sizes["adapter_bytes"].values())
    assert 0 < summary["trainable_params"] < summary["total_params"] / 5
    assert evaluate_run(run)["dev"] == summary["dev"]  # reloaded exactly
    out = predict_texts(run, ["good happy film"], task="sent")
    assert out[0]["label"] in {"0", "1"}
    with pytest.raises(ConfigError, match="--task"):
        predict_texts(run, ["good"], task=None)


def test_bottleneck_adapters_per_task_train_only_adapters_and_heads(tiny_models, tmp_path):
    heads = {
        "a": HeadSpec("sequence_classification", ("x", "y")),
        "b": HeadSpec("sequence_classification", ("p", "q", "r")),
    }
    model = PerTaskAdapterModel.build(
        tiny_models["bert", "sequence_classification"], heads, _config("houlsby"), init_seed=1
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        n.startswith("heads.") or ".adapter_slot.a." in n or ".adapter_slot.b." in n
        for n in trainable
    )
    assert any(".adapter_slot.a." in n for n in trainable)
    assert any(".adapter_slot.b." in n for n in trainable)


def _config(kind, **kw):
    from tunesmith.adapters import adapter_config_from_dict

    return adapter_config_from_dict({"type": kind, **kw})


def _perturbed(tiny_models, kind="lora"):
    heads = {
        "a": HeadSpec("sequence_classification", ("x", "y")),
        "b": HeadSpec("sequence_classification", ("p", "q", "r")),
        "t": HeadSpec("token_classification", ("O", "B")),
    }
    model = PerTaskAdapterModel.build(
        tiny_models["bert", "sequence_classification"], heads, _config(kind, r=4), init_seed=1
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


def _inputs(n, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (n, 9), generator=g)
    mask = torch.ones_like(ids)
    for i in range(n):
        mask[i, 4 + i % 5 :] = 0
    return {"input_ids": ids * mask, "attention_mask": mask}


def test_mixed_batch_equals_per_task_batches(tiny_models):
    model = _perturbed(tiny_models)
    inputs = _inputs(6, seed=2)
    tasks = ["a", "b", "t", "a", "b", "a"]
    with torch.no_grad():
        mixed = model.forward_mixed(tasks, **inputs)
        for task in ("a", "b", "t"):
            rows = [i for i, t in enumerate(tasks) if t == task]
            width = int(inputs["attention_mask"][rows].sum(1).max())
            alone = model(**{k: v[rows, :width] for k, v in inputs.items()}, task=task).logits
            for j, i in enumerate(rows):
                assert mixed[i].shape == alone[j].shape
                assert torch.allclose(mixed[i], alone[j], atol=1e-6, rtol=0)
    # each task runs its own adapter: task a's head on task b's adapter gives other logits
    from tunesmith.adapters import set_active_adapter
    from tunesmith.heads import MultiHeadModel

    with torch.no_grad():
        routed = model(**inputs, task="a").logits
        set_active_adapter(model.backbone, "b")
        wrong = MultiHeadModel.forward(model, **inputs, task="a").logits
    assert not torch.allclose(routed, wrong, atol=1e-3)


def test_save_and_from_pretrained_round_trip_exactly(tiny_models, tmp_path):
    model = _perturbed(tiny_models)
    inputs = _inputs(3, seed=4)
    model.save_pretrained(tmp_path / "m")
    again = load_multitask(tmp_path / "m")
    assert isinstance(again, PerTaskAdapterModel)
    with torch.no_grad():
        for task in ("a", "b", "t"):
            assert torch.equal(model(**inputs, task=task).logits, again(**inputs, task=task).logits)


def test_per_task_needs_a_multi_head_recipe(tiny_models, tiny_data, tmp_path):
    from tunesmith.config import parse_recipe as parse

    single = {
        "model": "x",
        "task": "sequence_classification",
        "data": {"train": "t.txt"},
        "adapter": LORA,
    }
    with pytest.raises(ConfigError, match="adapter.per_task"):
        parse(single, [])
    with pytest.raises(ConfigError, match="per_task: true"):
        pertask_recipe(tiny_models, tiny_data, tmp_path / "x", adapter={"type": "lora"})

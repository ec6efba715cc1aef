"""Portable outputs: adapter files name the base's hub id (so ``peft.AutoPeftModel*`` loads them
where the hub or a cached copy is reachable), tunesmith maps that id back to the embedded copy
offline, and ``best/README.md`` is a model card whose front matter the hub can read.

A tiny BERT registered as an embedded model (with a made-up hub id) exercises the same code as
``minilm`` -> ``sentence-transformers/all-MiniLM-L6-v2``; the real MiniLM run is in
``tests/integration/test_portable_minilm.py``."""

import json
import shutil

import pytest
import torch
import yaml

from tunesmith import embedded
from tunesmith.adapters import load_model_or_adapter
from tunesmith.config import parse_recipe
from tunesmith.models import resolve_model
from tunesmith.predict import load_run
from tunesmith.registry import Entry
from tunesmith.testing import mirror_in_hub_cache
from tunesmith.train.loop import train
from tunesmith.train.modelcard import read_facts

from .conftest import make_recipe

peft = pytest.importorskip("peft")

CLS = "sequence_classification"
HUB_ID = "tunesmith-test/tiny-bert"
NAMES = {0: "negative", 1: "positive"}
TEXTS = ["good happy film", "bad sad book", "the movie was very it"]


@pytest.fixture
def tiny_embedded(tiny_models, monkeypatch):
    """``model: tinyemb`` is an embedded model whose hub id is ``tunesmith-test/tiny-bert``."""
    folder = tiny_models["bert", CLS]
    entry = Entry("tinyemb", lambda: str(folder), "a tiny BERT (tests)")
    monkeypatch.setitem(embedded.EMBEDDED._entries, "tinyemb", entry)
    monkeypatch.setitem(embedded.HUB_IDS, "tinyemb", HUB_ID)
    return folder


def lora_run(tiny_data, run, **over):
    recipe = make_recipe(
        "tinyemb",
        CLS,
        tiny_data,
        run,
        adapter="{type: lora, r: 4, alpha: 8}",
        **{"data.label_names": "{'0': negative, '1': positive}", "head.pooling": "pooler"},
        **over,
    )
    train(recipe)
    return run / "best"


def tunesmith_logits(model_or_run, tokenizer=None):
    if tokenizer is None:
        _, model, tokenizer, _ = load_run(model_or_run)
    else:
        model = model_or_run
    enc = tokenizer(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        return model.eval()(**enc).logits, enc


@pytest.fixture
def lora_best(tiny_embedded, tiny_data, tmp_path):
    return lora_run(tiny_data, tmp_path / "run")


def test_adapter_files_name_the_hub_id_and_keep_the_embedded_name(lora_best):
    peft_config = json.loads((lora_best / "adapter_config.json").read_text())
    assert peft_config["base_model_name_or_path"] == HUB_ID  # was "tinyemb"
    meta = json.loads((lora_best / "tunesmith_adapter.json").read_text())
    assert meta["base_model"] == HUB_ID
    assert meta["base"]["name_or_path"] == "tinyemb"  # what tunesmith loads, offline
    assert meta["id2label"] == {"0": "negative", "1": "positive"}


def test_auto_peft_model_loads_best_with_label_names_and_equal_logits(lora_best, tmp_path):
    """The real adapter_config.json, unchanged: PEFT fetches the base by its hub id, found in a
    local hub cache (offline), and gives tunesmith's logits."""
    cache = tmp_path / "hub-cache"
    mirror_in_hub_cache(cache, HUB_ID, embedded.EMBEDDED.get("tinyemb")())
    ours, enc = tunesmith_logits(lora_best.parent)
    theirs = peft.AutoPeftModelForSequenceClassification.from_pretrained(
        lora_best, cache_dir=str(cache), id2label=NAMES, label2id={v: k for k, v in NAMES.items()}
    ).eval()
    assert theirs.config.id2label == NAMES
    with torch.no_grad():
        torch.testing.assert_close(theirs(**enc).logits, ours, atol=1e-6, rtol=0)


def test_hub_id_resolves_to_the_embedded_copy_offline(tiny_embedded, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model(HUB_ID) == str(tiny_embedded)
    from huggingface_hub import constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert resolve_model(HUB_ID) == HUB_ID  # online: the hub's own model


def test_a_peft_only_folder_naming_the_hub_id_loads_offline(lora_best, tmp_path, monkeypatch):
    """A folder with only PEFT's files (as PEFT or the hub would give it) names the hub id: offline,
    tunesmith loads it onto the embedded copy with the same outputs."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    peft_only = tmp_path / "peft-only"
    shutil.copytree(lora_best, peft_only)
    (peft_only / "tunesmith_adapter.json").unlink()
    (peft_only / "tunesmith.json").unlink()
    ours, enc = tunesmith_logits(lora_best.parent)
    model = load_model_or_adapter(peft_only, CLS, id2label=NAMES).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(**enc).logits, ours, atol=1e-6, rtol=0)


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    head, _, _ = card[4:].partition("\n---\n")
    return yaml.safe_load(head)


def test_model_card_of_a_lora_run(lora_best):
    card = (lora_best / "README.md").read_text()
    meta = front_matter(card)
    assert meta["base_model"] == HUB_ID
    assert meta["library_name"] == "peft"
    assert meta["pipeline_tag"] == "text-classification"
    assert {"tunesmith", CLS, "lora"} <= set(meta["tags"])
    assert meta["datasets"] == ["sent.txt"]
    summary = json.loads((lora_best.parent / "summary.json").read_text())
    assert meta["metrics"] == list(summary["dev"])
    results = {r["dataset"]["split"]: r for r in meta["model-index"][0]["results"]}
    assert set(results) == {"dev", "test"}
    for split, result in results.items():
        scored = {m["type"]: m["value"] for m in result["metrics"]}
        assert scored == pytest.approx(summary[split], abs=1e-6)
    assert f'path = "{lora_best}"' in card  # the real folder in the load snippets
    assert "AutoPeftModelForSequenceClassification.from_pretrained(" in card
    assert "id2label={0: 'negative', 1: 'positive'}" in card
    assert f"tunesmith predict {lora_best.parent} " in card
    assert "| 1 | positive |" in card and "## Recipe" in card and "type: lora" in card
    assert (
        "## Metrics" in card and f"| test | accuracy | {summary['test']['accuracy']:.4f} |" in card
    )


def test_model_card_of_a_full_run_loads_with_transformers(tiny_models, tiny_data, tmp_path):
    run = tmp_path / "full"
    train(make_recipe(tiny_models["bert", CLS], CLS, tiny_data, run, **{"train.epochs": 1}))
    meta = front_matter((run / "best" / "README.md").read_text())
    assert meta["library_name"] == "transformers"
    assert "base_model" not in meta  # a local folder is no hub id: not named as one
    assert meta["tags"] == ["tunesmith", CLS]
    card = (run / "best" / "README.md").read_text()
    assert "from transformers import AutoModelForSequenceClassification" in card


def test_card_tags_name_distillation_and_continual_methods(tmp_path):
    base = {"model": "minilm", "task": CLS, "data": {"train": "t.txt"}}
    facts = read_facts(tmp_path, parse_recipe(base, ["adapter=houlsby", "distill={teacher: x}"]))
    from tunesmith.train.modelcard import card_metadata

    meta = card_metadata(facts)
    assert meta["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["library_name"] == "transformers"  # no adapter files written: nothing to read
    assert meta["tags"] == ["tunesmith", CLS, "houlsby", "adapter", "distillation"]
    ewc = parse_recipe(base, ["objectives=[{name: ewc, params: {state: s.safetensors}}]"])
    assert "continual" in card_metadata(read_facts(tmp_path, ewc))["tags"]


@pytest.mark.parametrize(
    "name,hub",
    [
        ("minilm", "sentence-transformers/all-MiniLM-L6-v2"),
        ("smollm2", "HuggingFaceTB/SmolLM2-135M-Instruct"),
        ("./some/folder", "./some/folder"),  # not embedded: named as it was given
    ],
)
def test_peft_config_names_an_embedded_base_by_its_hub_id(name, hub):
    from transformers import AutoModelForCausalLM

    from tunesmith.adapters import LoraConfig, add_adapter
    from tunesmith.adapters.base import state_of
    from tunesmith.adapters.peft_format import to_peft_config
    from tunesmith.testing import tiny_config

    model = AutoModelForCausalLM.from_config(tiny_config("llama", 64))
    model.config.name_or_path = name
    add_adapter(model, "a", LoraConfig(r=2))
    assert to_peft_config(model, state_of(model).get("a"), [])["base_model_name_or_path"] == hub
    assert embedded.embedded_name(hub) == (name if name in embedded.HUB_IDS else None)

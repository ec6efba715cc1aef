"""Model sources that are adapter folders: the adapters layer loads them, the models layer refuses.

``tunesmith.models.load_model`` knows nothing of adapters (it is the layer below); an adapter
run's ``best/`` goes through :func:`tunesmith.adapters.load_model_or_adapter`, which loads the
base the adapter names, with the saved head's labels, and the adapter on it.
"""

from __future__ import annotations

import pytest
import torch

from tunesmith.adapters import (
    LoraConfig,
    add_adapter,
    head_parameters,
    list_adapters,
    load_model_or_adapter,
    mark_trainable,
    save_adapter,
)
from tunesmith.errors import ModelError
from tunesmith.models import load_model
from tunesmith.testing import save_tiny_model

from .helpers import logits, make_batch, perturb


@pytest.fixture()
def adapter_folder(tmp_path):
    base = save_tiny_model(tmp_path / "base", "bert", "sequence_classification", num_labels=3)
    labels = {0: "neg", 1: "neu", 2: "pos"}
    model = load_model(str(base), "sequence_classification", id2label=labels).eval()
    add_adapter(model, "task", LoraConfig(r=2))
    trained = mark_trainable(model, "task", train_head=True)
    perturb({n: p for n, p in model.named_parameters() if n in trained}, scale=0.3)
    save_adapter(model, tmp_path / "best", "task")
    return tmp_path / "best", model


def test_an_adapter_folder_loads_as_base_plus_adapter_and_head(adapter_folder):
    folder, trained = adapter_folder
    loaded = load_model_or_adapter(str(folder), "sequence_classification").eval()
    assert list_adapters(loaded) == ["task"]
    assert loaded.config.id2label == {0: "neg", 1: "neu", 2: "pos"}  # the saved head's labels
    batch = make_batch("bert")
    batch["input_ids"] = batch["input_ids"].clamp(max=trained.config.vocab_size - 1)
    torch.testing.assert_close(logits(loaded, batch), logits(trained, batch), atol=0, rtol=0)
    for n, p in head_parameters(trained).items():
        assert torch.equal(dict(loaded.named_parameters())[n], p)


def test_a_model_folder_loads_as_load_model_does(adapter_folder, tmp_path):
    base = tmp_path / "base"
    a = load_model_or_adapter(str(base), "sequence_classification", num_labels=3, init_seed=1)
    b = load_model(str(base), "sequence_classification", num_labels=3, init_seed=1)
    assert not list_adapters(a)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert na == nb and torch.equal(pa, pb)


def test_the_models_layer_refuses_an_adapter_folder(adapter_folder):
    folder, _ = adapter_folder
    with pytest.raises(ModelError, match="load_model_or_adapter"):
        load_model(str(folder), "sequence_classification")
    with pytest.raises(ModelError, match="from_scratch has no meaning"):
        load_model_or_adapter(str(folder), "sequence_classification", from_scratch=True)

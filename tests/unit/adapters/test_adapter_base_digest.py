"""The adapter base check compares the base's weights, not only its config (issue 13: an adapter
run whose base folder was replaced by another model of the same config gave silently wrong
predictions)."""

from __future__ import annotations

import json

import pytest
import torch

from tunesmith.adapters import (
    LoraConfig,
    adapter_parameters,
    add_adapter,
    load_adapter,
    save_adapter,
)
from tunesmith.adapters.io import META_FILE, base_weights_digest
from tunesmith.errors import ModelError

from .helpers import logits, make_batch, perturb, tiny_model


@pytest.fixture
def saved(tmp_path):
    model = tiny_model("bert")
    add_adapter(model, "task", LoraConfig(r=2))
    perturb(adapter_parameters(model, "task"))
    save_adapter(model, tmp_path, "task")
    return model, tmp_path


def test_same_config_other_weights_is_refused_naming_both_digests(saved):
    model, folder = saved
    other = tiny_model("bert", seed=1)  # same config and parameter count, other weights
    with pytest.raises(ModelError, match="weights differ") as err:
        load_adapter(other, folder)
    meta = json.loads((folder / META_FILE).read_text())
    assert meta["base_weights_digest"] in str(err.value)
    assert base_weights_digest(other) in str(err.value)


def test_digest_ignores_adapters_and_the_head(saved):
    model, folder = saved
    fresh = tiny_model("bert")
    with torch.no_grad():
        fresh.classifier.weight.add_(1.0)  # the head comes from the adapter folder anyway
    add_adapter(fresh, "other", LoraConfig(r=4))  # another adapter already on it
    assert load_adapter(fresh, folder) == "task"
    torch.testing.assert_close(
        logits(fresh, make_batch("bert")), logits(model, make_batch("bert")), atol=0, rtol=0
    )


def test_adapters_saved_without_a_digest_keep_the_config_check(saved):
    _, folder = saved
    meta = json.loads((folder / META_FILE).read_text())
    del meta["base_weights_digest"]
    (folder / META_FILE).write_text(json.dumps(meta))
    assert load_adapter(tiny_model("bert", seed=1), folder) == "task"  # as before: config only
    with pytest.raises(ModelError, match="config_hash"):
        load_adapter(tiny_model("bert", hidden_size=64), folder)

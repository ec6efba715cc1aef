"""Recipe ``adapter:`` sections: presets by paper name, key paths and hints in errors."""

from __future__ import annotations

import pytest

from tunesmith.adapters import (
    ADAPTERS,
    METHODS,
    HoulsbyConfig,
    LoraConfig,
    ParallelConfig,
    PfeifferConfig,
    adapter_config_from_dict,
    adapter_config_to_dict,
)
from tunesmith.configschema import field_help
from tunesmith.errors import ConfigError

PAPER_PRESETS = {"houlsby", "ia3", "lora", "parallel", "pfeiffer", "prefix"}


def test_registry_holds_the_methods_with_paper_citations():
    assert PAPER_PRESETS <= set(ADAPTERS.names())  # new methods join by registering
    assert all("20" in entry.help for entry in ADAPTERS)  # every help cites a paper year
    # the recipe's types are exactly the presets the registered implementations declare
    presets = {p: cls for entry in METHODS for p, (cls, _) in entry.obj.presets.items()}
    assert ADAPTERS.names() == sorted(presets)
    for entry in ADAPTERS:
        method = METHODS.get(entry.obj.method)
        assert presets[entry.name] is entry.obj and method.name == entry.obj.method
        assert entry.obj.__module__ == method.inject.__module__  # declared in its own module


def test_presets_follow_their_papers():
    houlsby = adapter_config_from_dict({"type": "houlsby", "reduction_factor": 8})
    assert isinstance(houlsby, HoulsbyConfig) and houlsby.reduction_factor == 8.0
    assert houlsby.attn and houlsby.ffn and houlsby.train_layer_norms and not houlsby.parallel
    pfeiffer = adapter_config_from_dict("pfeiffer")  # a bare name is short for {type: name}
    assert isinstance(pfeiffer, PfeifferConfig) and not pfeiffer.attn and pfeiffer.ffn
    assert pfeiffer.non_linearity == "relu"
    parallel = adapter_config_from_dict({"type": "parallel"})
    assert isinstance(parallel, ParallelConfig) and parallel.parallel and parallel.scaling == 4.0
    lora = adapter_config_from_dict({"type": "lora", "r": 16, "alpha": 32, "targets": "all-linear"})
    assert lora == LoraConfig(r=16, alpha=32.0, targets="all-linear") and lora.scaling == 2.0


def test_round_trip_through_a_dict():
    config = adapter_config_from_dict({"type": "lora", "targets": ["q_proj", "v_proj"]})
    data = adapter_config_to_dict(config)
    assert data["type"] == "lora" and data["targets"] == ["q_proj", "v_proj"]
    assert adapter_config_from_dict(data) == config


@pytest.mark.parametrize(
    "data,key,message",
    [
        (
            {"type": "houlsby", "reducton_factor": 8},
            "adapter.reducton_factor",
            "did you mean 'reduction_factor'",
        ),
        (
            {"type": "houlsby", "reduction_factor": "big"},
            "adapter.reduction_factor",
            "expected a number",
        ),
        ({"type": "houlsby", "non_linearity": "tanh"}, "adapter.non_linearity", "choose one of"),
        ({"type": "houlsby", "attn": False, "ffn": False}, "adapter.attn", "no adapter to add"),
        ({"type": "lora", "r": 0}, "adapter.r", "must be >= 1"),
        ({"type": "lora", "targets": 3}, "adapter.targets", "expected"),
        ({"type": "prefix", "num_virtual_tokens": 0}, "adapter.num_virtual_tokens", ">= 1"),
        ({"type": "houlsbey"}, "adapter.type", "unknown adapter method 'houlsbey'"),
        ({"reduction_factor": 8}, "adapter.type", "required key is missing"),
        ({"type": "pfeiffer", "type2": 1}, "adapter.type2", "unknown key"),
    ],
)
def test_errors_name_the_key(data, key, message):
    with pytest.raises(ConfigError) as err:
        adapter_config_from_dict(data)
    assert str(err.value).startswith(key) and message in str(err.value)


def test_every_field_has_help():
    for entry in ADAPTERS:
        assert all(field_help(entry.obj).values()), entry.name

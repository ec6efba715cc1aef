"""PEFT-format methods (LoRA, IA3, ...) write PEFT's files: PEFT loads ours and we load PEFT's,
with identical outputs. The methods come from the registry (``helpers.PEFT_TYPES``)."""

from __future__ import annotations

import pytest

from tunesmith.adapters import (
    IA3Config,
    LoraConfig,
    adapter_config_from_dict,
    add_adapter,
    load_adapter,
    save_adapter,
)
from tunesmith.errors import ModelError

from .helpers import PEFT_TYPES, tiny_model
from .peft_checks import CASES, check_peft_loads_ours, check_we_load_peft

peft = pytest.importorskip("peft")

SMALL = {"lora": {"r": 4, "alpha": 16}}  # a rank that fits the tiny models' hidden size 32
CONFIGS = {  # cases beyond each registered type's defaults
    "lora-all": LoraConfig(r=2, targets="all-linear"),
}
PEFT_BUILT = {  # PEFT's own configs with PEFT's defaults (default targets included)
    "lora": lambda: peft.LoraConfig(r=4, lora_alpha=16),
    "ia3": lambda: peft.IA3Config(),
}


def our_config(kind: str):
    if kind in CONFIGS:
        return CONFIGS[kind]
    return adapter_config_from_dict({"type": kind, **SMALL.get(kind, {})})


def test_the_registry_has_the_peft_methods():
    assert {"lora", "ia3"} <= set(PEFT_TYPES)
    assert our_config("lora") == LoraConfig(r=4, alpha=16) and our_config("ia3") == IA3Config()


@pytest.mark.parametrize("arch,task", CASES)
@pytest.mark.parametrize("kind", sorted([*PEFT_TYPES, *CONFIGS]))
def test_peft_loads_ours(arch, task, kind, tmp_path):
    check_peft_loads_ours(peft, arch, task, our_config(kind), tmp_path)


@pytest.mark.parametrize("arch,task", CASES)
@pytest.mark.parametrize("kind", sorted(PEFT_BUILT))
def test_we_load_peft(arch, task, kind, tmp_path):
    check_we_load_peft(peft, arch, task, PEFT_BUILT[kind](), tmp_path)


@pytest.mark.parametrize("arch,task", CASES)
@pytest.mark.parametrize("kind", PEFT_TYPES)
def test_we_load_what_peft_builds_from_our_config(arch, task, kind, tmp_path):
    """PEFT reads the config we write, builds its own adapter from it, and we load that."""
    model = tiny_model(arch, task)
    add_adapter(model, "task", our_config(kind))
    save_adapter(model, tmp_path / "ours", "task")
    config = peft.PeftConfig.from_pretrained(tmp_path / "ours")
    config.inference_mode = False  # PEFT trains (here: perturbs) it
    check_we_load_peft(peft, arch, task, config, tmp_path / "theirs")


@pytest.mark.parametrize("option", [{"lora_bias": True}, {"layers_to_transform": [0]}])
def test_unsupported_peft_options_are_named(option, tmp_path):
    theirs = peft.get_peft_model(tiny_model("bert"), peft.LoraConfig(r=2, **option))
    theirs.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=next(iter(option))):
        load_adapter(tiny_model("bert"), tmp_path)

"""model: as a mapping {name, revision, dtype, attn_implementation, trust_remote_code,
quantization}: the string form is unchanged; each option's one-line errors."""

import json

import pytest
import torch

from tunesmith.config import ModelConfig, parse_recipe
from tunesmith.errors import ConfigError, ModelError
from tunesmith.models import load_model
from tunesmith.testing import save_tiny_model

BASE = {"task": "sequence_classification", "data": {"train": "x.txt"}}


def test_string_and_mapping_forms():
    plain = parse_recipe({**BASE, "model": "minilm"})
    assert plain.model == "minilm" and plain.model_source == "minilm"
    assert plain.model_options == ModelConfig(name="minilm")
    mapped = parse_recipe({**BASE, "model": {"name": "minilm", "dtype": "bf16"}})
    assert mapped.model_source == "minilm" and mapped.model_options.dtype == "bf16"


def test_mapping_errors_name_their_key():
    with pytest.raises(ConfigError, match="model.dtype"):
        parse_recipe({**BASE, "model": {"name": "minilm", "dtype": "int8"}})
    with pytest.raises(ConfigError, match="model.quantization.*add an adapter"):
        parse_recipe({**BASE, "model": {"name": "minilm", "quantization": "4bit"}})
    with pytest.raises(ConfigError, match="model_kwargs.*model.quantization: 4bit"):
        parse_recipe({**BASE, "model": "minilm", "model_kwargs": {"load_in_4bit": True}})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "bert", "bert", "sequence_classification")


def test_revision_of_a_local_folder_is_an_error(folder):
    with pytest.raises(ModelError, match="revision 'main' applies to hub ids only"):
        load_model(folder, "sequence_classification", revision="main")


def test_remote_code_is_refused_unless_allowed(tmp_path, folder):
    remote = tmp_path / "remote"
    remote.mkdir()
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="tunesmith-remote", auto_map={"AutoConfig": "cfg.MyConfig"})
    (remote / "config.json").write_text(json.dumps(config))
    (remote / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    with pytest.raises(ModelError, match="trust_remote_code: true") as err:
        load_model(remote, "sequence_classification")
    assert "\n" not in str(err.value) and "execute" in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU error")
def test_a_4bit_base_needs_cuda(folder):
    with pytest.raises(ModelError, match="needs a CUDA GPU") as err:
        load_model(folder, "sequence_classification", quantization="4bit")
    assert "\n" not in str(err.value)


def test_attention_backend_is_passed(folder):
    model = load_model(folder, "sequence_classification", attn_implementation="eager")
    assert model.config._attn_implementation == "eager"

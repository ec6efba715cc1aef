"""Model-level API: several adapters, switching, deleting, merging, unloading, errors, counts."""

from __future__ import annotations

import pytest
import torch

from tunesmith.adapters import (
    TARGETS,
    HoulsbyConfig,
    IA3Config,
    LoraConfig,
    PfeifferConfig,
    active_adapter,
    adapter_parameters,
    adapter_state_dict,
    add_adapter,
    delete_adapter,
    disable_adapters,
    enable_adapters,
    list_adapters,
    load_adapter,
    mark_trainable,
    merge_adapter,
    merge_and_unload,
    no_decay_parameters,
    read_adapter_meta,
    save_adapter,
    set_active_adapter,
    trainable_summary,
)
from tunesmith.adapters.targets import SLOT
from tunesmith.errors import ConfigError, ModelError
from tunesmith.models import count_parameters

from .helpers import is_adapter, logits, make_batch, perturb, tiny_model


def test_several_adapters_add_switch_disable_delete():
    model = tiny_model("bert")
    base_keys = set(model.state_dict())
    batch = make_batch("bert")
    base = logits(model, batch)
    add_adapter(model, "lora", LoraConfig(r=4))
    perturb(adapter_parameters(model, "lora"))
    out_lora = logits(model, batch)
    add_adapter(model, "houlsby", HoulsbyConfig())
    perturb(adapter_parameters(model, "houlsby"), seed=1)
    assert active_adapter(model) == "houlsby" and list_adapters(model) == ["lora", "houlsby"]
    out_houlsby = logits(model, batch)
    assert not torch.allclose(out_houlsby, out_lora) and not torch.allclose(out_lora, base)

    set_active_adapter(model, "lora")
    torch.testing.assert_close(logits(model, batch), out_lora, atol=0, rtol=0)
    disable_adapters(model)  # the function form: until enable_adapters
    assert active_adapter(model) is None
    torch.testing.assert_close(logits(model, batch), base, atol=0, rtol=0)
    enable_adapters(model)
    torch.testing.assert_close(logits(model, batch), out_lora, atol=0, rtol=0)
    set_active_adapter(model, None)
    torch.testing.assert_close(logits(model, batch), base, atol=0, rtol=0)

    set_active_adapter(model, "houlsby")
    delete_adapter(model, "houlsby")
    assert active_adapter(model) is None and list_adapters(model) == ["lora"]
    assert not any(f".{SLOT}.houlsby." in f".{n}" for n, _ in model.named_parameters())
    torch.testing.assert_close(logits(model, batch), base, atol=0, rtol=0)
    delete_adapter(model, "lora")
    assert set(model.state_dict()) == base_keys  # slots gone with their last adapter
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_mark_trainable_and_parameter_counts():
    model = tiny_model("bert")
    _, total = count_parameters(model)
    add_adapter(model, "h", HoulsbyConfig())
    names = mark_trainable(model, "h", train_head=True)
    d, b = 32, 2  # hidden 32, reduction factor 16
    bottlenecks = 4 * (2 * d * b + b + d)  # 2 layers x (attention, feed-forward)
    norm_affines = 4 * 2 * d  # 2 layers x 2 layer norms x (gain, shift)
    head = 2 * d + 2  # classifier 32 -> 2
    assert count_parameters(model) == (
        bottlenecks + norm_affines + head,
        total + bottlenecks + norm_affines,
    )
    assert {n for n in names if not is_adapter(n)} == {"classifier.weight", "classifier.bias"}
    assert "trainable%" in trainable_summary(model)

    lora = tiny_model("bert")
    add_adapter(lora, "l", LoraConfig(r=4))
    mark_trainable(lora, "l")
    assert count_parameters(lora)[0] == 2 * 2 * (4 * d + d * 4)  # layers x (q, v) x (A + B)


def test_switching_does_not_leak_gradients_into_other_adapters():
    model = tiny_model("llama")
    add_adapter(model, "a", LoraConfig(r=2))
    add_adapter(model, "b", LoraConfig(r=2))
    mark_trainable(model, "a")
    model(**make_batch("llama")).loss.backward()
    assert all(p.grad is None for p in adapter_parameters(model, "b").values())
    assert all(p.grad is not None for p in adapter_parameters(model, "a").values())


def test_merge_and_unload_gives_a_plain_model(tmp_path):
    model = tiny_model("gpt2")
    keys = set(model.state_dict())
    add_adapter(model, "l", LoraConfig(r=4, targets="all-linear"))
    perturb(adapter_parameters(model, "l"), scale=0.2)
    batch = make_batch("gpt2")
    expected = logits(model, batch)
    plain = merge_and_unload(model)
    assert plain is model and list_adapters(plain) == [] and set(plain.state_dict()) == keys
    torch.testing.assert_close(logits(plain, batch), expected, atol=1e-5, rtol=0)
    plain.save_pretrained(tmp_path / "merged")
    reloaded = type(plain).from_pretrained(tmp_path / "merged").eval()
    torch.testing.assert_close(logits(reloaded, batch), expected, atol=1e-5, rtol=0)


def test_all_linear_skips_the_head_and_output_layer():
    model = tiny_model("bert")
    touched = add_adapter(model, "l", LoraConfig(targets="all-linear"))
    assert "classifier" not in touched and "bert.pooler.dense" in touched
    assert len(touched) == 2 * 6 + 1  # q k v o, intermediate, output per layer + pooler
    llama = tiny_model("llama")
    assert "lm_head" not in add_adapter(llama, "l", LoraConfig(targets="all-linear"))


def test_merge_errors_are_clear():
    model = tiny_model("bert")
    add_adapter(model, "h", PfeifferConfig())
    with pytest.raises(ModelError, match="cannot be merged"):
        merge_adapter(model, "h")
    with pytest.raises(ModelError, match="cannot be merged"):
        merge_and_unload(model)
    add_adapter(model, "l", LoraConfig())
    merge_adapter(model)
    with pytest.raises(ModelError, match="unmerge_adapter"):
        set_active_adapter(model, "h")
    with pytest.raises(ModelError, match="unmerge_adapter"):
        disable_adapters(model)
    with pytest.raises(ModelError, match="unmerge_adapter"):
        delete_adapter(model, "l")


def test_bad_names_and_duplicates():
    model = tiny_model("bert")
    add_adapter(model, "a", LoraConfig())
    with pytest.raises(ConfigError, match="already has an adapter 'a'"):
        add_adapter(model, "a", LoraConfig())
    with pytest.raises(ConfigError, match="invalid adapter name"):
        add_adapter(model, "a.b", LoraConfig())
    with pytest.raises(ConfigError, match=r"no adapter 'zzz'.*\['a'\]"):
        set_active_adapter(model, "zzz")


def test_target_not_found_lists_candidates():
    model = tiny_model("bert")
    with pytest.raises(ConfigError, match=r"adapter.targets.*\['qury'\].*query.*value") as err:
        add_adapter(model, "l", LoraConfig(targets=["qury"]))
    assert "bert.encoder.layer.*.attention.self.query" in str(err.value)
    with pytest.raises(ConfigError, match=r"adapter.attn_module.*layer\.\*\.attention\.output"):
        add_adapter(model, "h", HoulsbyConfig(attn_module=r"nothing_like_this$"))
    assert list_adapters(model) == [] and not any(is_adapter(n) for n in model.state_dict())


def test_unknown_architecture_needs_explicit_sites(monkeypatch):
    monkeypatch.delitem(TARGETS, "bert")
    model = tiny_model("bert")
    with pytest.raises(ConfigError, match=r"adapter.attn_module.*model_type 'bert'.*known"):
        add_adapter(model, "h", HoulsbyConfig())
    with pytest.raises(ConfigError, match=r"adapter.targets.*no default targets"):
        add_adapter(model, "l", LoraConfig())
    touched = add_adapter(
        model,
        "h",
        HoulsbyConfig(
            attn_module=r"attention\.output\.dropout$",
            ffn_module=r"\d\.output\.dropout$",
            train_layer_norms=False,
        ),
    )
    assert len(touched) == 4


def test_adapter_state_dict_keys_are_name_free():
    model = tiny_model("llama")
    add_adapter(model, "x", LoraConfig(r=2))
    keys = set(adapter_state_dict(model, "x"))
    assert "model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    assert all(SLOT not in k and ".x." not in k for k in keys)


def test_load_onto_the_wrong_base_names_both(tmp_path):
    model = tiny_model("bert")
    add_adapter(model, "h", HoulsbyConfig())
    save_adapter(model, tmp_path / "h", "h")
    bigger = tiny_model("bert", hidden_size=64)
    bigger.config.name_or_path = "other-bert"
    with pytest.raises(ModelError, match=r"tiny-bert.*other-bert.*config_hash.*hidden_size"):
        load_adapter(bigger, tmp_path / "h")
    assert list_adapters(bigger) == []
    with pytest.raises(ModelError, match=r"model_type"):
        load_adapter(tiny_model("llama"), tmp_path / "h")
    with pytest.raises(ModelError, match="holds no adapter"):
        load_adapter(model, tmp_path)


def test_load_under_another_name_and_switch_tasks(tmp_path):
    model = tiny_model("bert")
    batch = make_batch("bert")
    add_adapter(model, "t", HoulsbyConfig())
    perturb(adapter_parameters(model, "t"))
    out_t = logits(model, batch)
    save_adapter(model, tmp_path / "t", "t", include_head=False)
    assert not (tmp_path / "t" / "adapter_config.json").exists()  # not a PEFT method

    other = tiny_model("bert")
    add_adapter(other, "first", LoraConfig())
    assert load_adapter(other, tmp_path / "t", name="second") == "second"
    assert list_adapters(other) == ["first", "second"] and active_adapter(other) == "second"
    torch.testing.assert_close(logits(other, batch), out_t, atol=0, rtol=0)


def test_ia3_scales_stay_out_of_weight_decay_and_meta_names_the_base(tmp_path):
    model = tiny_model("llama")
    add_adapter(model, "i", IA3Config())
    names = no_decay_parameters(model)
    assert names and names == {n for n in adapter_parameters(model, "i") if n.endswith("ia3_l")}
    save_adapter(model, tmp_path / "i", "i")
    meta = read_adapter_meta(tmp_path / "i")
    assert meta["base"]["name_or_path"] == "tiny-llama" and meta["config"]["type"] == "ia3"

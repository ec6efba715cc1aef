"""Freezing, gradual unfreezing and layer-wise LR decay on tiny random models of each family."""

from __future__ import annotations

import pytest
import torch
import transformers as T
from torch import nn

from tunesmith.errors import ConfigError
from tunesmith.optim import build_optimizer, param_groups
from tunesmith.transfer import (
    GradualUnfreezer,
    apply_freezing,
    layer_index,
    layer_layout,
    layerwise_lr_scales,
)

LLAMA = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=2,
    num_key_value_heads=2,
    intermediate_size=64,
)
BERT = dict(
    vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64
)


def tiny(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == "bert":
        return T.BertForSequenceClassification(T.BertConfig(**BERT))
    if kind == "roberta":
        return T.RobertaForSequenceClassification(T.RobertaConfig(**BERT))
    if kind == "distilbert":
        cfg = T.DistilBertConfig(vocab_size=100, dim=32, n_layers=4, n_heads=2, hidden_dim=64)
        return T.DistilBertForSequenceClassification(cfg)
    if kind == "llama":  # causal LM, lm_head tied to the input embeddings
        return T.LlamaForCausalLM(T.LlamaConfig(**LLAMA, tie_word_embeddings=True))
    if kind == "llama-cls":
        return T.LlamaForSequenceClassification(T.LlamaConfig(**LLAMA, pad_token_id=0))
    if kind == "mistral":
        return T.MistralForCausalLM(T.MistralConfig(**LLAMA, tie_word_embeddings=False))
    if kind == "qwen2":
        return T.Qwen2ForCausalLM(T.Qwen2Config(**LLAMA, tie_word_embeddings=False))
    if kind == "gpt2":
        cfg = T.GPT2Config(
            vocab_size=100, n_embd=32, n_layer=4, n_head=2, bos_token_id=0, eos_token_id=0
        )
        return T.GPT2LMHeadModel(cfg)
    if kind == "t5":
        cfg = T.T5Config(vocab_size=100, d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16)
        return T.T5ForConditionalGeneration(cfg)
    raise ValueError(kind)


def trainable(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def names(model: nn.Module, *prefixes: str) -> set[str]:
    """Parameter names under any of ``prefixes`` (all names when none are given)."""
    return {n for n, _ in model.named_parameters() if not prefixes or n.startswith(prefixes)}


# --- layouts ---------------------------------------------------------------------------------

EXPECTED = {  # kind: (embeddings, block prefix, number of blocks, head, other)
    "bert": (["bert.embeddings"], "bert.encoder.layer", 4, ["classifier"], ["bert.pooler"]),
    "roberta": (["roberta.embeddings"], "roberta.encoder.layer", 4,
                ["classifier.dense", "classifier.out_proj"], []),
    "distilbert": (["distilbert.embeddings"], "distilbert.transformer.layer", 4,
                   ["pre_classifier", "classifier"], []),
    "llama": (["model.embed_tokens"], "model.layers", 4, [], ["model.norm"]),
    "llama-cls": (["model.embed_tokens"], "model.layers", 4, ["score"], ["model.norm"]),
    "mistral": (["model.embed_tokens"], "model.layers", 4, ["lm_head"], ["model.norm"]),
    "qwen2": (["model.embed_tokens"], "model.layers", 4, ["lm_head"], ["model.norm"]),
    "gpt2": (["transformer.wte", "transformer.wpe"], "transformer.h", 4, [], ["transformer.ln_f"]),
}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_layout_finds_embeddings_blocks_and_head(kind):
    emb, blocks, n, head, other = EXPECTED[kind]
    layout = layer_layout(tiny(kind))
    assert layout.embeddings == emb
    assert layout.layers == [f"{blocks}.{i}" for i in range(n)]
    assert layout.head == head
    assert layout.other == other


def test_t5_blocks_are_encoder_then_decoder_and_tied_lm_head_is_embedding():
    model = tiny("t5")
    layout = layer_layout(model)
    assert layout.layers == [
        "encoder.block.0",
        "encoder.block.1",
        "decoder.block.0",
        "decoder.block.1",
    ]
    assert "shared" in layout.embeddings
    assert layout.head == []  # lm_head is the shared embedding
    assert set(layout.tied["shared.weight"]) >= {"lm_head.weight", "encoder.embed_tokens.weight"}
    assert layer_index("lm_head.weight", layout) == 0
    assert layer_index("decoder.block.1.layer.2.DenseReluDense.wo.weight", layout) == 4
    assert layer_index("decoder.final_layer_norm.weight", layout) == 5


def test_t5_untied_lm_head_is_head():
    cfg = T.T5Config(vocab_size=100, d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16)
    cfg.tie_word_embeddings = (
        False  # transformers 5 forces True in T5Config.__init__ (flan-t5 unties)
    )
    layout = layer_layout(T.T5ForConditionalGeneration(cfg))
    assert layout.head == ["lm_head"]
    assert layer_index("lm_head.weight", layout) == 5


def test_layer_index_bottom_to_top():
    model = tiny("bert")
    layout = layer_layout(model)
    assert layer_index("bert.embeddings.word_embeddings.weight", layout) == 0
    assert layer_index("bert.encoder.layer.0.output.dense.weight", layout) == 1
    assert layer_index("bert.encoder.layer.3.output.LayerNorm.bias", layout) == 4
    assert layer_index("bert.pooler.dense.weight", layout) == 5
    assert layer_index("classifier.weight", layout) == 5
    for name, _ in model.named_parameters():  # every parameter is placed
        assert 0 <= layer_index(name, layout) <= 5
    with pytest.raises(KeyError):
        layer_index("not.a.parameter", layout)


def test_tied_lm_head_is_embedding_for_llama_and_gpt2():
    for kind, emb in (("llama", "model.embed_tokens.weight"), ("gpt2", "transformer.wte.weight")):
        layout = layer_layout(tiny(kind))
        assert layout.tied[emb] == [emb, "lm_head.weight"]
        assert layer_index("lm_head.weight", layout) == 0


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ff = nn.Linear(8, 8)


class _Custom(nn.Module):
    """No config: the fallback must find the biggest stack of identical blocks."""

    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(10, 8)
        self.extras = nn.ModuleList([nn.Linear(8, 8), nn.ReLU()])  # mixed: not a block stack
        self.stack = nn.ModuleList([_Block() for _ in range(3)])
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 2)


def test_fallback_layout_for_unknown_architecture():
    layout = layer_layout(_Custom())
    assert layout.layers == ["stack.0", "stack.1", "stack.2"]
    assert layout.embeddings == ["tok"]
    assert layout.head == ["extras.0", "norm", "head"]
    assert layer_index("stack.2.ff.weight", layout) == 3


def test_layout_sees_through_peft_wrapping():
    peft = pytest.importorskip("peft")
    lora = peft.LoraConfig(r=2, target_modules=["q_proj", "v_proj"], task_type="SEQ_CLS")
    model = peft.get_peft_model(tiny("llama-cls"), lora)
    layout = layer_layout(model)
    assert layout.layers == [f"base_model.model.model.layers.{i}" for i in range(4)]
    assert layout.other == ["base_model.model.model.norm"]
    train = {n: layer_index(n, layout) for n in trainable(model)}
    assert train["base_model.model.score.modules_to_save.default.weight"] == 5
    assert train["base_model.model.model.layers.2.self_attn.q_proj.lora_B.default.weight"] == 3
    apply_freezing(model, first_n_layers=2, layout=layout)  # LoRA A/B of blocks 1-2 now frozen
    assert len(trainable(model)) == len(train) - 8


# --- freezing --------------------------------------------------------------------------------


def test_freeze_embeddings_and_first_layers():
    model = tiny("bert")
    frozen = apply_freezing(model, embeddings=True, first_n_layers=2)
    expected = names(model, "bert.embeddings.", "bert.encoder.layer.0.", "bert.encoder.layer.1.")
    assert set(frozen) == expected
    assert trainable(model) == names(model) - expected


def test_linear_probe_trains_only_the_head():
    model = tiny("llama-cls")
    apply_freezing(model, linear_probe=True)
    assert trainable(model) == {"score.weight"}


def test_patterns_then_unfreeze_patterns():
    model = tiny("bert")
    apply_freezing(model, patterns=["*.attention.*"], unfreeze_patterns=[r"re:layer\.3\."])
    attention = {n for n in names(model) if ".attention." in n}
    assert attention
    assert trainable(model) == names(model) - attention | names(model, "bert.encoder.layer.3.")


def test_freezing_keeps_already_frozen_params_frozen():
    model = tiny("bert")
    for p in model.bert.pooler.parameters():
        p.requires_grad_(False)
    apply_freezing(model, first_n_layers=1)
    assert not trainable(model) & names(model, "bert.pooler.", "bert.encoder.layer.0.")


def test_freeze_errors_name_the_recipe_key():
    model = tiny("bert")
    with pytest.raises(ConfigError, match="has 4") as err:
        apply_freezing(model, first_n_layers=5)
    assert err.value.key == "transfer.freeze_layers"
    with pytest.raises(ConfigError) as err:
        apply_freezing(model, patterns=["*.no_such_module.*"])
    assert err.value.key == "transfer.freeze_patterns"
    with pytest.raises(ConfigError) as err:
        apply_freezing(model, unfreeze_patterns=["re:layer.(3"])
    assert err.value.key == "transfer.unfreeze_patterns"
    with pytest.raises(ConfigError) as err:
        apply_freezing(tiny("llama"), linear_probe=True)  # tied lm_head: no separate head
    assert err.value.key == "transfer.linear_probe"


def test_freezing_tied_embeddings_freezes_lm_head_with_a_warning():
    model = tiny("llama")
    with pytest.warns(UserWarning, match="tied to lm_head.weight"):
        frozen = apply_freezing(model, embeddings=True)
    assert frozen == ["model.embed_tokens.weight"]
    assert not model.lm_head.weight.requires_grad  # one tensor: frozen under both names


def test_training_step_changes_only_trainable_params():
    model = tiny("bert")
    apply_freezing(model, embeddings=True, first_n_layers=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = build_optimizer(param_groups(model, lr=1e-2, weight_decay=0.01), lr=1e-2)
    batch = torch.randint(1, 100, (4, 8))
    model(input_ids=batch, labels=torch.tensor([0, 1, 0, 1])).loss.backward()
    opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable(model)


# --- gradual unfreezing ----------------------------------------------------------------------


def test_gradual_unfreezing_goes_top_down():
    model = tiny("bert")
    unfreezer = GradualUnfreezer(model, layer_layout(model), every=2)
    assert unfreezer.num_groups == 6 and unfreezer.num_unfrozen_groups == 1
    assert trainable(model) == names(model, "classifier.", "bert.pooler.")
    order = []
    for _ in range(12):
        newly = unfreezer.advance()
        if newly:
            order.append(set(newly))
    layer = "bert.encoder.layer."
    assert order == [names(model, f"{layer}{i}.") for i in (3, 2, 1, 0)] + [
        names(model, "bert.embeddings.")
    ]
    assert unfreezer.num_unfrozen_groups == 6
    assert trainable(model) == names(model)


def test_gradual_unfreezing_never_unfreezes_user_frozen_groups():
    model = tiny("bert")
    layout = layer_layout(model)
    apply_freezing(model, embeddings=True, first_n_layers=1, layout=layout)
    unfreezer = GradualUnfreezer(model, layout, every=1)
    for _ in range(10):
        unfreezer.advance()
    assert trainable(model) == names(model) - names(
        model, "bert.embeddings.", "bert.encoder.layer.0."
    )


def test_gradual_unfreezing_state_dict_round_trip():
    model = tiny("gpt2")
    unfreezer = GradualUnfreezer(model, layer_layout(model), every=3)
    for _ in range(7):
        unfreezer.advance()
    state = unfreezer.state_dict()

    resumed = tiny("gpt2")
    again = GradualUnfreezer(resumed, layer_layout(resumed), every=3)
    again.load_state_dict(state)
    assert again.num_unfrozen_groups == unfreezer.num_unfrozen_groups == 3
    assert trainable(resumed) == trainable(model)
    assert trainable(model) == names(
        model, "transformer.ln_f.", "transformer.h.3.", "transformer.h.2."
    )
    with pytest.raises(ConfigError):
        GradualUnfreezer(resumed, layer_layout(resumed), every=2).load_state_dict(state)
    with pytest.raises(ConfigError):
        GradualUnfreezer(resumed, layer_layout(resumed), every=0)


def test_optimizer_holds_params_that_unfreeze_later():
    model = tiny("bert")
    unfreezer = GradualUnfreezer(model, layer_layout(model), every=1)
    groups = param_groups(model, lr=1e-3, weight_decay=0.0, include=unfreezer.will_train)
    assert {n for g in groups for n in g["names"]} == names(model)
    assert len(trainable(model)) < len(names(model))


# --- layer-wise LR decay ---------------------------------------------------------------------


def test_layerwise_lr_scales_follow_the_formula():
    model = tiny("bert")
    layout = layer_layout(model)
    scales = layerwise_lr_scales(model, layout, 0.5)
    assert set(scales) == names(model)
    assert scales["classifier.weight"] == 1.0
    assert scales["bert.pooler.dense.weight"] == 1.0
    for i in range(4):  # block i+1 of L=4 gets decay**(L+1-(i+1))
        assert scales[f"bert.encoder.layer.{i}.output.dense.weight"] == 0.5 ** (4 - i)
    assert scales["bert.embeddings.word_embeddings.weight"] == 0.5**5
    assert set(layerwise_lr_scales(model, layout, 1.0).values()) == {1.0}
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ConfigError) as err:
            layerwise_lr_scales(model, layout, bad)
        assert err.value.key == "transfer.layerwise_lr_decay"

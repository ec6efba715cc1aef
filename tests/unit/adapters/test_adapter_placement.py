"""The adapters compute what the papers say, where the papers put them (checked by hand)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tunesmith.adapters import (
    HoulsbyConfig,
    IA3Config,
    LoraConfig,
    ParallelConfig,
    adapter_parameters,
    add_adapter,
)
from tunesmith.adapters.targets import SLOT

from .helpers import perturb, tiny_model


def slot(module, name="a"):
    return getattr(module, SLOT)[name]


def test_houlsby_in_bert_sits_inside_the_residual_before_layer_norm():
    model = tiny_model("bert")
    add_adapter(model, "a", HoulsbyConfig(train_layer_norms=False))
    perturb(adapter_parameters(model, "a"))
    out = model.bert.encoder.layer[0].attention.output  # BertSelfOutput: LN(dropout(dense(h)) + r)
    h, r = torch.randn(2, 5, 32), torch.randn(2, 5, 32)
    adapter = slot(out.dropout)
    y = out.dense(h)
    expected = out.LayerNorm(y + adapter.up(F.silu(adapter.down(y))) + r)
    torch.testing.assert_close(out(h, r), expected)


def test_parallel_in_bert_adds_a_scaled_adapter_of_the_sublayer_input():
    model = tiny_model("bert")
    add_adapter(model, "a", ParallelConfig())
    perturb(adapter_parameters(model, "a"))
    out = model.bert.encoder.layer[1].output  # BertOutput(intermediate, r): FFN input is r
    h, r = torch.randn(2, 5, 64), torch.randn(2, 5, 32)
    adapter = slot(out)
    assert adapter.down.out_features == 16  # reduction factor 2
    expected = out.LayerNorm(out.dense(h) + r + 4.0 * adapter.up(F.relu(adapter.down(r))))
    torch.testing.assert_close(out(h, r), expected)


def test_houlsby_and_parallel_in_llama_act_on_the_sublayer_output():
    model = tiny_model("llama")
    add_adapter(model, "a", HoulsbyConfig(non_linearity="gelu"))
    perturb(adapter_parameters(model, "a"))
    o_proj = model.model.layers[0].self_attn.o_proj
    x = torch.randn(2, 5, 32)
    adapter = slot(o_proj)
    y = F.linear(x, o_proj.weight)
    torch.testing.assert_close(o_proj(x), y + adapter.up(F.gelu(adapter.down(y))))
    norm = model.model.layers[0].post_attention_layernorm
    affine = slot(norm)
    plain = norm.weight * x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    torch.testing.assert_close(norm(x), plain * (1 + affine.gain) + affine.shift)

    par = tiny_model("llama")
    add_adapter(par, "a", ParallelConfig())
    perturb(adapter_parameters(par, "a"))
    mlp = par.model.layers[1].mlp
    adapter = slot(mlp)
    base = mlp.down_proj(F.silu(mlp.gate_proj(x)) * mlp.up_proj(x))
    torch.testing.assert_close(mlp(x), base + 4.0 * adapter.up(F.relu(adapter.down(x))))


def test_lora_on_gpt2_conv1d_matches_the_formula():
    model = tiny_model("gpt2")
    add_adapter(model, "a", LoraConfig(r=4, alpha=16))
    perturb(adapter_parameters(model, "a"))
    c_attn = model.transformer.h[0].attn.c_attn  # Conv1D: y = x W + b, W: (in, out)
    lora = slot(c_attn)
    x = torch.randn(2, 5, 32)
    delta = x @ lora.lora_A.weight.T @ lora.lora_B.weight.T * (16 / 4)
    torch.testing.assert_close(c_attn(x), x @ c_attn.weight + c_attn.bias + delta)


def test_ia3_scales_outputs_and_feedforward_inputs():
    model = tiny_model("t5")
    touched = add_adapter(model, "a", IA3Config())
    assert {t.rsplit(".", 1)[-1] for t in touched} == {"k", "v", "wo"}
    perturb(adapter_parameters(model, "a"))
    ff = model.encoder.block[0].layer[1].DenseReluDense
    k = model.encoder.block[0].layer[0].SelfAttention.k
    x, h = torch.randn(2, 5, 32), torch.randn(2, 5, 64)
    torch.testing.assert_close(ff.wo(h), F.linear(h * slot(ff.wo).ia3_l[0], ff.wo.weight))
    torch.testing.assert_close(k(x), F.linear(x, k.weight) * slot(k).ia3_l[:, 0])

"""Per-example attention over packed rows (``tunesmith_packed``): the same logits and gradients
as SDPA with transformers' block-diagonal mask, and plain SDPA wherever that is not exact."""

import pytest
import torch
from transformers import AutoModelForCausalLM, Gemma3TextConfig, Qwen2Config

from tunesmith import packedattn
from tunesmith.packedattn import PACKED, segment_groups, use_packed_attention
from tunesmith.testing import tiny_config

T = 40
LENGTHS = [[10, 20, 10], [7, 7, 7, 7, 12], [40]]  # three packed rows of T tokens


def positions(rows=LENGTHS):
    return torch.tensor([[p for n in row for p in range(n)] for row in rows])


def tiny(arch, **kw):
    if arch == "llama":  # 4 query heads on 2 key/value heads, as SmolLM2's GQA
        config = tiny_config("llama", 100)
    elif arch == "qwen2":
        config = Qwen2Config(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=64,
        )
    else:  # gemma3: sliding-window and global layers, query_pre_attn_scalar, one kv head
        config = Gemma3TextConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=8,
            intermediate_size=64,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            query_pre_attn_scalar=16,
            sliding_window=kw.pop("window"),
        )
    for key, value in kw.items():
        setattr(config, key, value)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").float()


@pytest.fixture
def per_example_calls(monkeypatch):
    """How many attention calls ran per example (not delegated to transformers' SDPA)."""
    calls = []
    grouped = packedattn._grouped

    def counting(*args, **kw):
        calls.append(1)
        return grouped(*args, **kw)

    monkeypatch.setattr(packedattn, "_grouped", counting)
    return calls


def forward_backward(model, impl, **inputs):
    model.set_attn_implementation(impl)
    model.zero_grad()
    logits = model(**inputs, use_cache=False).logits
    logits.square().mean().backward()
    return logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_segment_groups_pad_similar_lengths_together():
    assert segment_groups([10, 20, 10]) == [[1], [0, 2]]
    assert segment_groups([100, 95, 50, 48, 47, 5]) == [[0, 1], [2, 3, 4], [5]]
    lengths = [150, 140, 120, 90, 60, 30, 12]
    for group in segment_groups(lengths):  # each group within the waste bound
        exact = sum(lengths[i] ** 2 for i in group)
        assert lengths[group[0]] ** 2 * len(group) <= packedattn.GROUP_WASTE * exact


@pytest.mark.parametrize(
    "arch, kw, per_example_layers",
    [
        ("llama", {}, 2),
        ("qwen2", {}, 2),
        ("gemma3", {"window": 64}, 3),  # every example within the window: all layers
        ("gemma3", {"window": 12}, 1),  # examples longer than the window: sliding layers delegate
    ],
)
def test_packed_logits_and_gradients_equal_the_block_mask(
    arch, kw, per_example_layers, per_example_calls
):
    model = tiny(arch, **kw)
    ids = torch.randint(0, 100, (3, T), generator=torch.Generator().manual_seed(1))
    ref, ref_grads = forward_backward(model, "sdpa", input_ids=ids, position_ids=positions())
    assert not per_example_calls
    out, grads = forward_backward(model, PACKED, input_ids=ids, position_ids=positions())
    assert len(per_example_calls) == per_example_layers
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    assert grads.keys() == ref_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], atol=1e-5, rtol=0, msg=name)


def test_each_packed_example_equals_it_alone_under_gradient_checkpointing(per_example_calls):
    model = tiny("llama")
    model.set_attn_implementation(PACKED)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    ids = torch.randint(0, 100, (3, T), generator=torch.Generator().manual_seed(2))
    packed = model(input_ids=ids, position_ids=positions(), use_cache=False).logits
    packed.sum().backward()
    assert len(per_example_calls) == 4  # 2 layers, forward and the recomputation in backward
    assert model.model.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        for r, row in enumerate(LENGTHS):
            start = 0
            for n in row:
                alone = model(input_ids=ids[r : r + 1, start : start + n], use_cache=False).logits
                torch.testing.assert_close(
                    packed[r, start : start + n].detach(), alone[0], atol=1e-5, rtol=0
                )
                start += n


def test_what_is_not_a_packed_batch_runs_plain_sdpa(per_example_calls):
    model = tiny("gemma3", window=12).eval()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 100, (2, 9), generator=g)
    padded = {"input_ids": ids, "attention_mask": torch.tensor([[1] * 9, [1] * 6 + [0] * 3])}
    # packed positions with a 2D mask: transformers reads no packing from them
    masked_packed = {"input_ids": ids, "position_ids": positions([[4, 5], [9]]).expand(2, -1)}
    masked_packed["attention_mask"] = torch.ones(2, 9, dtype=torch.long)
    with torch.no_grad():
        for inputs in (padded, masked_packed):
            model.set_attn_implementation("sdpa")
            ref = model(**inputs).logits
            model.set_attn_implementation(PACKED)
            assert torch.equal(model(**inputs).logits, ref)
        generated = {}
        for impl in ("sdpa", PACKED):  # with a KV cache
            model.set_attn_implementation(impl)
            generated[impl] = model.generate(
                ids[:1, :5], max_new_tokens=4, do_sample=False, pad_token_id=0
            )
        assert torch.equal(generated["sdpa"], generated[PACKED])
    assert not per_example_calls


def test_only_an_sdpa_model_is_switched():
    model = tiny("llama")
    assert use_packed_attention(model) and model.config._attn_implementation == PACKED
    eager = tiny("llama")
    eager.set_attn_implementation("eager")
    assert not use_packed_attention(eager) and eager.config._attn_implementation == "eager"


def test_a_mask_passed_in_again_is_checked_against_the_new_positions(per_example_calls):
    model = tiny("llama").eval()
    model.set_attn_implementation(PACKED)
    ids = torch.randint(0, 100, (3, T), generator=torch.Generator().manual_seed(4))
    seg = packedattn._segment_ids(positions())
    mask = ((seg[:, :, None] == seg[:, None, :]) & torch.ones(T, T).bool().tril())[:, None]
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=positions(), attention_mask=mask).logits
        assert len(per_example_calls) == 2  # the mask is the rows' block-diagonal one
        other = positions([[40]] * 3)  # the same mask object, positions that do not match it
        again = model(input_ids=ids, position_ids=other, attention_mask=mask).logits
        assert len(per_example_calls) == 2
        model.set_attn_implementation("sdpa")
        assert torch.equal(
            again, model(input_ids=ids, position_ids=other, attention_mask=mask).logits
        )
        ref = model(input_ids=ids, position_ids=positions(), attention_mask=mask).logits
    torch.testing.assert_close(packed, ref, atol=1e-5, rtol=0)


def test_bf16_rows_on_the_gemm_kernel_match_the_block_mask(monkeypatch):
    from tunesmith import causalattn

    monkeypatch.setattr(causalattn, "_chosen", {})
    monkeypatch.setenv(causalattn.KERNEL_ENV, "gemm")
    model = tiny("llama").to(torch.bfloat16)
    ids = torch.randint(0, 100, (3, T), generator=torch.Generator().manual_seed(4))
    ref, _ = forward_backward(model, "sdpa", input_ids=ids, position_ids=positions())
    out, grads = forward_backward(model, PACKED, input_ids=ids, position_ids=positions())
    assert list(causalattn.kernel_choices().values()) == ["gemm"]
    torch.testing.assert_close(out.float(), ref.float(), atol=5e-2, rtol=2e-2)
    assert all(torch.isfinite(g).all() for g in grads.values())

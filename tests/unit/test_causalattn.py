"""Causal attention of equal-length sequences: the GEMM form equals SDPA (values and gradients),
and the kernel is chosen per (device, dtype, heads, head dim) by measurement or the env var."""

import pytest
import torch
import torch.nn.functional as F

from tunesmith import causalattn
from tunesmith.causalattn import (
    KERNEL_ENV,
    causal_attention,
    gemm_causal_attention,
    kernel_choices,
)


@pytest.fixture(autouse=True)
def fresh_choices(monkeypatch):
    monkeypatch.setattr(causalattn, "_chosen", {})
    monkeypatch.delenv(KERNEL_ENV, raising=False)


def qkv(heads=4, kv_heads=2, n=3, length=11, dim=8, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(n, h, length, dim, generator=g).to(dtype).requires_grad_()
        for h in (heads, kv_heads, kv_heads)
    ]


def grads(fn, tensors):
    out = fn(*tensors)
    (out.float() * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
    result = [out.detach()] + [t.grad.clone() for t in tensors]
    for t in tensors:
        t.grad = None
    return result


@pytest.mark.parametrize("kv_heads, scale", [(2, None), (4, 0.3), (1, None)])
def test_gemm_form_equals_sdpa_values_and_gradients(kv_heads, scale):
    tensors = qkv(kv_heads=kv_heads)

    def sdpa(q, k, v):
        gqa = k.shape[1] != q.shape[1]
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale, enable_gqa=gqa)

    ref = grads(sdpa, tensors)
    ours = grads(lambda q, k, v: gemm_causal_attention(q, k, v, scale), tensors)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_first_position_attends_only_to_itself():
    q, k, v = (t.detach() for t in qkv(kv_heads=4))
    out = gemm_causal_attention(q, k, v)
    torch.testing.assert_close(out[:, :, 0], v[:, :, 0])


def test_bf16_gemm_form_is_as_close_to_fp32_as_sdpa_in_bf16():
    q, k, v = (t.detach() for t in qkv(length=64, dim=16, dtype=torch.bfloat16, seed=1))
    exact = F.scaled_dot_product_attention(
        q.float(), k.float(), v.float(), is_causal=True, enable_gqa=True
    )
    gemm = (gemm_causal_attention(q, k, v).float() - exact).abs().max()
    sdpa = (
        (F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).float() - exact)
        .abs()
        .max()
    )
    assert gemm <= max(2 * sdpa, 2e-2)


@pytest.mark.parametrize("forced", ["gemm", "sdpa", "GEMM "])
def test_env_var_fixes_the_kernel(monkeypatch, forced):
    monkeypatch.setenv(KERNEL_ENV, forced)
    calls = []
    monkeypatch.setattr(causalattn, "_measure", lambda *a: calls.append(a) or "sdpa")
    q, k, v = qkv(dtype=torch.bfloat16)
    causal_attention(q, k, v).float().sum().backward()
    assert not calls
    assert kernel_choices() == {"cpu bfloat16 H4/2 D8": forced.strip().lower()}
    assert k.grad is not None


def test_bad_env_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(KERNEL_ENV, "fast")
    with pytest.raises(ValueError, match="TUNESMITH_ATTN_KERNEL='fast'.*sdpa, gemm"):
        causal_attention(*qkv(dtype=torch.bfloat16))


def test_fp32_and_dropout_always_use_sdpa(monkeypatch):
    monkeypatch.setattr(causalattn, "gemm_causal_attention", lambda *a: pytest.fail("gemm ran"))
    monkeypatch.setenv(KERNEL_ENV, "gemm")
    causal_attention(*qkv())
    assert kernel_choices() == {}
    causal_attention(*qkv(dtype=torch.bfloat16), dropout=0.1)


def test_measured_once_per_shape_and_used(monkeypatch):
    measured = []
    real = causalattn._measure

    def counting(*shape):
        measured.append(shape)
        return real(*shape)

    monkeypatch.setattr(causalattn, "_measure", counting)
    for _ in range(3):
        causal_attention(*qkv(dtype=torch.bfloat16))
    causal_attention(*qkv(heads=2, kv_heads=2, dtype=torch.bfloat16))
    assert measured == [("cpu", torch.bfloat16, 4, 2, 8), ("cpu", torch.bfloat16, 2, 2, 8)]
    assert set(kernel_choices().values()) <= {"gemm", "sdpa"}
    assert len(kernel_choices()) == 2


def test_first_measurement_inside_a_checkpointed_forward(monkeypatch):
    """The measurement runs apart from the caller's autocast, no_grad and checkpoint hooks: a
    checkpointed function that triggers it recomputes with the same saved tensors."""
    from torch.utils.checkpoint import checkpoint

    seen = []
    real = causalattn._measure

    def watching(*shape):
        seen.append((torch.is_grad_enabled(), torch.is_autocast_enabled("cpu")))
        return real(*shape)

    monkeypatch.setattr(causalattn, "_measure", watching)
    q, k, v = qkv(dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = checkpoint(
            lambda a, b, c: causal_attention(a, b, c) * 2, q, k, v, use_reentrant=False
        )
    out.float().sum().backward()
    assert seen == [(True, False)] and q.grad is not None
    with torch.no_grad():
        causal_attention(*qkv(heads=8, kv_heads=8, dtype=torch.bfloat16))
    assert seen[-1] == (True, False)

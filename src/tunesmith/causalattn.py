"""Causal self-attention over a batch of equal-length sequences: SDPA's kernel or two GEMMs.

:mod:`tunesmith.packedattn` attends each example of a packed row alone, grouped by length, so its
calls are short causal sequences (n, H, L, D). PyTorch's fused CPU kernel for them is fast in fp32
but, on some CPUs and builds, slow in bf16/fp16: on the 2-core AVX512-BF16 machine these
benchmarks run on, forward + backward of 7 x 168-token examples (SmolLM2's 9 query / 3 KV heads)
took 40 ms with the fused kernel and 18 ms as ``softmax(q k^T * scale + causal mask) v`` with both
products as bf16 GEMMs (the CPU's native bf16 matmul) and the softmax in fp32, whose full L x L
scores cost ~2x the causal half in arithmetic but run at GEMM speed.

Which is faster depends on the CPU and the torch build, so it is measured, not assumed: once per
process for each (device, dtype, heads, KV heads, head dim), forward + backward of both on a
(4, H, 128, D) batch, three alternating repeats; the GEMM form is used when its median time is at
most 0.9x the fused kernel's. CUDA and fp32 always use SDPA (its kernels win there).

The two differ in rounding, not in what they compute. The fused CPU kernel takes the scores
``q k^T`` in fp32 (on this machine it converts bf16 inputs and runs fp32 arithmetic, which is why
it is slow); the GEMM form gets them from a bf16 GEMM (fp32 accumulation, result rounded to bf16),
which is the numerics of transformers' own ``eager`` attention in bf16 (its ``matmul(q, k^T)``
in the input dtype, then an fp32 softmax). Measured on a SmolLM2 LoRA batch (4 packed rows, bf16
base): loss 2.0851 with the GEMM form vs 2.0876 with fp32 scores; fp32 runs are exact (SDPA).
``TUNESMITH_ATTN_KERNEL=sdpa`` (fp32 scores) or ``gemm`` fixes the choice, e.g. for
bitwise-reproducible bf16 reruns on a machine whose load could flip the measurement.
:func:`kernel_choices` says what was chosen (summary.json ``attention_kernels``).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Any

import torch
import torch.nn.functional as F
from transformers.integrations.sdpa_attention import repeat_kv

__all__ = ["KERNEL_ENV", "causal_attention", "gemm_causal_attention", "kernel_choices"]

KERNEL_ENV = "TUNESMITH_ATTN_KERNEL"
KERNELS = ("sdpa", "gemm")
_chosen: dict[tuple[str, torch.dtype, int, int, int], str] = {}


def gemm_causal_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """``softmax(q k^T * scale + causal mask) v`` for q (n, H, L, D), k/v (n, H_kv, L, D) with
    H a multiple of H_kv; both products in the inputs' dtype, the softmax in fp32."""
    heads, kv_heads, length = query.shape[1], key.shape[1], query.shape[2]
    if kv_heads != heads:
        key, value = repeat_kv(key, heads // kv_heads), repeat_kv(value, heads // kv_heads)
    scores = torch.matmul(query, key.transpose(-1, -2)).float()
    scores = scores * (query.shape[-1] ** -0.5 if scale is None else scale)
    future = torch.ones(length, length, dtype=torch.bool, device=query.device).triu(1)
    probs = scores.masked_fill(future, float("-inf")).softmax(-1).to(value.dtype)
    return torch.matmul(probs, value)


def _sdpa(query, key, value, scale=None, dropout=0.0):
    gqa = key.shape[1] != query.shape[1]
    return F.scaled_dot_product_attention(
        query, key, value, dropout_p=dropout, is_causal=True, scale=scale, enable_gqa=gqa
    )


def causal_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    scale: float | None = None,
    dropout: float = 0.0,
) -> torch.Tensor:
    """Causal attention (n, H, L, D) with the faster kernel for these inputs (module doc)."""
    if dropout == 0.0 and _kernel(query, key) == "gemm":
        return gemm_causal_attention(query, key, value, scale)
    return _sdpa(query, key, value, scale, dropout)


def kernel_choices() -> dict[str, str]:
    """The kernels chosen so far in this process: ``"cpu bf16 H9/3 D64" -> "gemm"``."""
    return {
        f"{dev} {str(dtype).removeprefix('torch.')} H{h}/{kv} D{d}": kernel
        for (dev, dtype, h, kv, d), kernel in _chosen.items()
    }


def _kernel(query: torch.Tensor, key: torch.Tensor) -> str:
    if query.device.type != "cpu" or query.dtype not in (torch.bfloat16, torch.float16):
        return "sdpa"
    forced = os.environ.get(KERNEL_ENV, "").strip().lower()
    if forced and forced not in KERNELS:
        raise ValueError(f"{KERNEL_ENV}={forced!r}: expected one of {', '.join(KERNELS)}")
    shape = (query.device.type, query.dtype, query.shape[1], key.shape[1], query.shape[-1])
    if forced:
        _chosen[shape] = forced
    elif shape not in _chosen:
        _chosen[shape] = _measure_apart(*shape)
    return _chosen[shape]


def _measure_apart(*shape: Any) -> str:
    """:func:`_measure` in a thread of its own: the first call comes from inside a model's
    forward, where autocast, no_grad and gradient checkpointing's saved-tensor hooks are set for
    this thread -- a checkpointed layer would record the measurement's tensors in its forward and
    not in its recomputation. A new thread starts with none of them."""
    result: list[str] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(_measure(*shape))
        except BaseException as exc:  # noqa: BLE001  (re-raised in the caller's thread)
            errors.append(exc)

    thread = threading.Thread(target=target, name="tunesmith-attn-measure")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def _measure(device: str, dtype: torch.dtype, heads: int, kv_heads: int, dim: int) -> str:
    """'gemm' when forward + backward of the GEMM form takes <= 0.9x the fused kernel's (median of
    three alternating repeats after one warm-up each) on a (4, H, 128, D) batch."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(4, h, 128, dim, generator=gen).to(device=device, dtype=dtype)
        for h in (heads, kv_heads, kv_heads)
    )
    times: dict[str, list[float]] = {"sdpa": [], "gemm": []}
    fns = {"sdpa": _sdpa, "gemm": gemm_causal_attention}
    with torch.enable_grad():
        for rep in range(4):
            for name in KERNELS if rep % 2 == 0 else KERNELS[::-1]:
                qq, kk, vv = (x.detach().requires_grad_() for x in (q, k, v))
                start = time.perf_counter()
                fns[name](qq, kk, vv).float().sum().backward()
                if rep:
                    times[name].append(time.perf_counter() - start)
    gemm, sdpa = statistics.median(times["gemm"]), statistics.median(times["sdpa"])
    return "gemm" if gemm <= 0.9 * sdpa else "sdpa"

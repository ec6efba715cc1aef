"""The chunked cross-entropy through a bare linear head computes its gradients in the forward
(distill/fusedce.py): same loss and gradients as the unchunked loss and as the checkpointed
chunks, one head GEMM per chunk, no full logits kept."""

import pytest
import torch
from torch import nn

from tunesmith.distill import chunked, fusedce
from tunesmith.distill.chunked import LMHead, chunked_causal_lm_loss, chunked_forward
from tunesmith.distill.fusedce import fusable
from tunesmith.tasks.causal_lm import causal_lm_loss

from .test_distill_chunked import (
    CHUNKS,
    B,
    H,
    T,
    V,
    assert_same,
    grads,
    leaf,
    make_heads,
    make_labels,
    model_grads,
    saved_shapes,
    tiny_lm,
)


def frozen(module):
    return module.requires_grad_(False)


def test_only_a_frozen_bare_linear_is_fused():
    assert fusable(frozen(nn.Linear(4, 5)))
    assert not fusable(nn.Linear(4, 5))  # a trained head: the checkpointed chunks
    hooked = frozen(nn.Linear(4, 5))
    hooked.register_forward_hook(lambda *a: None)
    assert not fusable(hooked)
    assert not fusable(frozen(nn.Sequential(nn.Linear(4, 5))))

    class MyLinear(nn.Linear):
        pass

    assert not fusable(frozen(MyLinear(4, 5)))


def hidden_grad(loss, hidden):
    return loss.detach(), torch.autograd.grad(loss, [hidden])


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("softcap", [None, 5.0])
def test_fused_equals_the_checkpointed_chunks_and_the_full_logits(chunk, softcap, monkeypatch):
    labels, (head, _) = make_labels(), make_heads(softcap)
    frozen(head.module)
    h1, h2, h3 = leaf(3), leaf(3), leaf(3)
    fused = hidden_grad(chunked_causal_lm_loss(h1, labels, head, chunk), h1)
    assert_same(fused, hidden_grad(causal_lm_loss(head(h3), labels), h3))
    monkeypatch.setattr(chunked, "fusable", lambda module: False)
    assert_same(fused, hidden_grad(chunked_causal_lm_loss(h2, labels, head, chunk), h2))


def test_one_head_gemm_per_chunk_and_no_vocabulary_wide_tensor_kept(monkeypatch):
    labels, (head, _) = make_labels(), make_heads()
    frozen(head.module)
    calls = []
    linear = fusedce.F.linear
    monkeypatch.setattr(fusedce.F, "linear", lambda *a: calls.append(a[0].shape[0]) or linear(*a))
    h, chunk = leaf(4), 4
    with saved_shapes() as saved:
        loss = chunked_causal_lm_loss(h, labels, head, chunk)
    n = int((labels[:, 1:] != -100).sum())
    assert calls == [4] * (n // chunk) + ([n % chunk] if n % chunk else [])
    (loss * 3.0).backward()  # the incoming gradient scales the stored ones
    assert len(calls) == -(-n // chunk)  # nothing recomputed in the backward
    assert not any(len(shape) == 2 and shape[1] == V for shape in saved)  # no logits
    ref_h = leaf(4)
    (causal_lm_loss(head(ref_h), labels) * 3.0).backward()
    torch.testing.assert_close(h.grad, ref_h.grad, atol=1e-5, rtol=1e-5)


def test_no_gradient_needed_computes_the_loss_only():
    labels, (head, _) = make_labels(), make_heads()
    frozen(head.module)
    h = leaf(5).detach()
    with torch.no_grad():
        ours = chunked_causal_lm_loss(h, labels, head, 4)
    torch.testing.assert_close(ours, causal_lm_loss(head(h), labels), atol=1e-6, rtol=1e-6)


def test_bf16_autocast_matches_the_checkpointed_chunks(monkeypatch):
    labels, (head, _) = make_labels(), make_heads(softcap=5.0)
    frozen(head.module)  # as under adapters
    out = {}
    for name, fuse in (("fused", True), ("checkpointed", False)):
        monkeypatch.setattr(chunked, "fusable", lambda module, fuse=fuse: fuse and fusable(module))
        h = leaf(6)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = chunked_causal_lm_loss(h, labels, head, 5)
        loss.backward()
        out[name] = (loss.detach(), h.grad)
    torch.testing.assert_close(out["fused"][0], out["checkpointed"][0], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(out["fused"][1], out["checkpointed"][1], atol=2e-3, rtol=2e-2)


@pytest.mark.parametrize("softcap", [None, 3.0])
def test_the_function_also_gives_weight_and_bias_gradients(softcap):
    """Called directly (a trained head is not dispatched here, but the function supports it)."""
    head, _ = make_heads(softcap)
    h = torch.randn(7, H, requires_grad=True)
    y = torch.randint(0, V, (7,))
    total = fusedce.LinearCrossEntropy.apply(h, head.module.weight, head.module.bias, y, 3, softcap)
    ours = grads(total * 0.5, h, head)
    ref = grads(0.5 * nn.functional.cross_entropy(head(h), y, reduction="sum"), h, head)
    assert_same(ours, ref)


@pytest.mark.parametrize(
    ("arch", "kw"),
    [("llama", {}), ("llama", {"tie_word_embeddings": False}), ("gpt2", {}), ("gemma3", {})],
)
def test_frozen_head_through_the_model(arch, kw):
    """Everything trains but the head (and its tied embeddings): the fused path, same loss and
    gradients as the full logits'."""
    model = tiny_lm(arch, **kw)
    model.requires_grad_(True)
    frozen(model.get_output_embeddings())
    ids, labels = torch.randint(1, V, (B, T)), make_labels()
    inputs = {"input_ids": ids, "attention_mask": torch.ones(B, T, dtype=torch.long)}
    ref = model_grads(model, causal_lm_loss(model(**inputs).logits, labels))
    out = chunked_forward(model, model, inputs, chunk=5)
    assert fusable(out.lm.head.module)
    assert_same(model_grads(model, out.lm.loss(labels)), ref)


def test_a_bf16_head_with_the_input_cast_hook_is_fused():
    """A frozen bf16 head in an fp32 model (model.dtype: bf16) casts its input (memory.py's hook):
    still fused, with the cast, and equal to calling the module."""
    from tunesmith.memory import align_input_dtypes

    head = nn.Linear(H, V, bias=False).to(torch.bfloat16).requires_grad_(False)
    align_input_dtypes(head)
    assert fusable(head)
    labels = make_labels()
    h1, h2 = leaf(7), leaf(7)
    fused = chunked_causal_lm_loss(h1, labels, LMHead(head), 4)
    fused.backward()
    ref = causal_lm_loss(head(h2), labels)
    ref.backward()
    torch.testing.assert_close(fused, ref, atol=1e-3, rtol=1e-3)
    assert h1.grad.dtype == torch.float32
    torch.testing.assert_close(h1.grad, h2.grad, atol=1e-3, rtol=2e-2)

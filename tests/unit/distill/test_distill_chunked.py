"""Chunked causal-LM losses (train.loss_chunk_tokens): equal to the unchunked losses and their
gradients, and the head never sees more than one chunk of rows."""

import contextlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaForCausalLM

from tunesmith.adapters import LoraConfig, add_adapter
from tunesmith.data.collate import Collator
from tunesmith.distill.chunked import (
    ChunkedOutputs,
    LMHead,
    chunked_causal_lm_loss,
    chunked_divergence,
    chunked_forward,
    chunked_sparse_forward_kl,
    lm_head,
)
from tunesmith.distill.losses import generalized_jsd, lm_token_mask, sparse_forward_kl
from tunesmith.distill.student import student_from_teacher
from tunesmith.errors import ConfigError
from tunesmith.objectives.distill import KDTerm, LMKDTerm, OnPolicyTerm, bind_teacher
from tunesmith.tasks.causal_lm import causal_lm_loss
from tunesmith.testing import tiny_config

from .conftest import lm_examples

B, T, H, V = 3, 9, 8, 50
CHUNKS = [1, 3, 7, 10_000]  # 3 and 7 do not divide the 18 kept rows; 10_000 > all rows


def make_labels(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[0, :4] = -100  # a masked prompt
    labels[2, 6:] = -100  # padding
    return labels


def make_heads(softcap=None):
    g = torch.Generator().manual_seed(1)
    student = nn.Linear(H, V)
    teacher = nn.Linear(H, V, bias=False).requires_grad_(False)
    with torch.no_grad():
        for p in (*student.parameters(), teacher.weight):
            p.copy_(torch.randn(p.shape, generator=g))
    return LMHead(student, softcap), LMHead(teacher)


def leaf(seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, H, generator=g).requires_grad_(True)


def grads(loss, hidden, head):
    """The loss and the gradients w.r.t. the hidden states and the head's parameters."""
    tensors = [hidden, *head.module.parameters()]
    return loss.detach(), torch.autograd.grad(loss, tensors)


def assert_same(chunked, reference):
    """Loss and every gradient equal to 1e-5 (of the tensor's scale when that exceeds 1: fp32
    sums taken in another order differ in their last bits)."""
    (a, ga), (b, gb) = chunked, reference
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (a, b)
    for x, y in zip(ga, gb, strict=True):
        scale = max(1.0, float(y.abs().max()))
        assert float((x - y).abs().max()) <= 1e-5 * scale, ((x - y).abs().max(), scale)


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize("softcap", [None, 5.0])
def test_cross_entropy_equals_unchunked(chunk, softcap):
    labels, (head, _) = make_labels(), make_heads(softcap)
    h1, h2 = leaf(2), leaf(2)
    ours = grads(chunked_causal_lm_loss(h1, labels, head, chunk), h1, head)
    assert_same(ours, grads(causal_lm_loss(head(h2), labels), h2, head))


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize(("beta", "temperature"), [(0.0, 1.0), (1.0, 2.0), (0.5, 1.0), (0.3, 3.0)])
def test_divergences_equal_unchunked(chunk, beta, temperature):
    labels, (head, teacher) = make_labels(), make_heads()
    th = torch.randn(B, T, H)
    h1, h2 = leaf(3), leaf(3)
    loss = chunked_divergence(h1, labels, head, th, teacher, chunk, beta, temperature)
    ref = generalized_jsd(
        head(h2)[:, :-1], teacher(th)[:, :-1], beta, temperature, lm_token_mask(labels)
    )
    assert_same(grads(loss, h1, head), grads(ref, h2, head))


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize(("k", "temperature"), [(5, 1.0), (V, 2.0)])
def test_top_k_forward_kl_equals_unchunked(chunk, k, temperature):
    labels, (head, teacher) = make_labels(), make_heads()
    lp, ids = F.log_softmax(teacher(torch.randn(B, T, H)), -1).topk(k, -1)
    h1, h2 = leaf(4), leaf(4)
    loss = chunked_sparse_forward_kl(h1, labels, head, lp, ids, chunk, temperature)
    ref = sparse_forward_kl(
        head(h2)[:, :-1], lp[:, :-1], ids[:, :-1], lm_token_mask(labels), temperature
    )
    assert_same(grads(loss, h1, head), grads(ref, h2, head))


def test_no_trained_position():
    labels, (head, teacher) = torch.full((B, T), -100), make_heads()
    h = leaf(5)
    kd = chunked_divergence(h, labels, head, torch.randn(B, T, H), teacher, 4)
    assert kd.item() == 0.0 and kd.requires_grad  # as the unchunked mean: 0, in the graph
    kd.backward()
    assert torch.isnan(chunked_causal_lm_loss(h, labels, head, 4))  # as F.cross_entropy's mean
    assert torch.isnan(causal_lm_loss(head(h), labels))


@contextlib.contextmanager
def saved_shapes():
    """The shapes of the tensors autograd saves for the backward inside the block."""
    shapes: list[tuple[int, ...]] = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield shapes


def test_head_sees_one_chunk_and_no_full_logits_are_saved():
    """The head runs on <= chunk rows, in the forward and again in the backward (recompute),
    and nothing of vocabulary width is kept for the backward outside a chunk."""
    labels, (head, teacher) = make_labels(), make_heads()
    rows: list[tuple[int, bool]] = []
    head.module.register_forward_hook(
        lambda m, args, out: rows.append((args[0].shape[0], torch.is_grad_enabled()))
    )
    h, chunk = leaf(6), 4
    with saved_shapes() as saved:
        loss = chunked_causal_lm_loss(h, labels, head, chunk)
        loss = loss + chunked_divergence(h, labels, head, torch.randn(B, T, H), teacher, chunk)
    forward_calls = len(rows)
    loss.backward()
    n = int(lm_token_mask(labels).sum())
    assert forward_calls == 2 * -(-n // chunk)  # two losses, ceil(n / chunk) chunks each
    assert len(rows) == 2 * forward_calls  # every chunk recomputed once in the backward
    assert max(r for r, _ in rows) <= chunk
    assert not any(V in shape for shape in saved), saved


def tiny_lm(arch: str = "llama", seed: int = 0, **kw):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch == "gemma3":
            config = Gemma3TextConfig(
                vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=8, intermediate_size=64, sliding_window=4,
                final_logit_softcapping=3.0, layer_types=["sliding_attention", "full_attention"],
            )  # fmt: skip
        else:
            config = tiny_config(arch, V, **kw)
        return AutoModelForCausalLM.from_config(config).eval()


def model_grads(model, loss):
    params = [p for p in model.parameters() if p.requires_grad]
    return loss.detach(), torch.autograd.grad(loss, params)


@pytest.mark.parametrize(
    ("arch", "kw"),
    [("llama", {}), ("llama", {"tie_word_embeddings": False}), ("gpt2", {}), ("gemma3", {})],
)
def test_model_forward_with_lora_on_the_head(arch, kw):
    """Through the model: same loss and gradients (LoRA on lm_head + attention, base weights)."""
    model = tiny_lm(arch, **kw)
    targets = ["lm_head", "c_attn"] if arch == "gpt2" else ["lm_head", "q_proj"]
    add_adapter(model, "default", LoraConfig(r=2, targets=targets))
    with torch.no_grad():  # B = 0 at init: give the update a value so A gets gradients
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.1)
    model.requires_grad_(True)
    ids, labels = torch.randint(1, V, (B, T)), make_labels()
    mask = torch.ones(B, T, dtype=torch.long)
    mask[2, 7:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    ref = model_grads(model, causal_lm_loss(model(**inputs).logits, labels))
    out = chunked_forward(model, model, inputs, chunk=5)
    assert isinstance(out, ChunkedOutputs) and out.lm.hidden.shape[:2] == (B, T)
    assert_same(model_grads(model, out.lm.loss(labels)), ref)


class ScaledLogits(LlamaForCausalLM):
    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        out.logits = out.logits * 2.0
        return out


def test_a_model_with_an_unknown_logit_transform_is_refused():
    model = ScaledLogits(tiny_config("llama", V)).eval()
    with pytest.raises(ConfigError, match="train.loss_chunk_tokens: .*logit transform"):
        chunked_forward(model, model, {"input_ids": torch.ones(1, 4, dtype=torch.long)}, 4)


def test_a_term_reading_full_logits_is_told_why():
    model = tiny_lm()
    out = chunked_forward(model, model, {"input_ids": torch.ones(1, 4, dtype=torch.long)}, 4)
    with pytest.raises(ConfigError, match="reads the full logits"):
        out.logits  # noqa: B018
    assert out.hidden_states is None  # other fields are the model's


@pytest.fixture
def lm_batch(causal_tok):
    return Collator(pad_token_id=0)(lm_examples(causal_tok, 4))


def term_case(llama_teacher, batch, term, chunk):
    """(loss, student gradients) of ``term`` on the student, chunked (``chunk``) or not."""
    student = student_from_teacher(llama_teacher, "every_other").eval()
    student.requires_grad_(True)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    bind_teacher([term], llama_teacher)
    if chunk is None:
        outputs = student(**inputs)
    else:
        outputs = chunked_forward(student, student, inputs, chunk, [term])
    return model_grads(student, term.loss(student, batch, outputs))


@pytest.mark.parametrize(
    "make",
    [
        lambda: LMKDTerm(params=LMKDTerm.Params(beta=0.0, temperature=2.0)),
        lambda: LMKDTerm(params=LMKDTerm.Params(beta=1.0)),
        lambda: LMKDTerm(params=LMKDTerm.Params(beta=0.4, temperature=1.5)),
        lambda: KDTerm(params=KDTerm.Params(temperature=2.0)),
        lambda: OnPolicyTerm(params=OnPolicyTerm.Params(lmbda=0.0, beta=0.5)),
    ],
)
def test_lm_terms_chunked_equal_unchunked_with_a_live_teacher(llama_teacher, lm_batch, make):
    ref = term_case(llama_teacher, lm_batch, make(), None)
    lm_head(llama_teacher)  # its one-time check runs the whole (short) head: not counted below
    rows: list[int] = []
    llama_teacher.lm_head.register_forward_hook(lambda m, a, o: rows.append(a[0].shape[-2]))
    term = make()
    assert_same(term_case(llama_teacher, lm_batch, term, 3), ref)
    assert term.teacher.head_skipped and max(rows) <= 3  # the teacher's logits never built whole


def test_lm_kd_from_cached_top_k_chunked(llama_teacher, lm_batch):
    with torch.no_grad():
        logits = llama_teacher(input_ids=lm_batch["input_ids"]).logits
    lp, ids = F.log_softmax(logits, -1).topk(8, -1)
    batch = {**lm_batch, "teacher_topk_logprobs": lp, "teacher_topk_ids": ids}
    make = lambda: LMKDTerm(params=LMKDTerm.Params(temperature=2.0))  # noqa: E731
    ref = term_case(llama_teacher, batch, make(), None)
    assert_same(term_case(llama_teacher, batch, make(), 2), ref)


def test_on_policy_gkd_samples_and_scores_chunked(llama_teacher, lm_batch):
    make = lambda: OnPolicyTerm(params=OnPolicyTerm.Params(lmbda=1.0, max_new_tokens=3))  # noqa: E731
    ref = term_case(llama_teacher, lm_batch, make(), None)
    assert_same(term_case(llama_teacher, lm_batch, make(), 4), ref)


@pytest.mark.parametrize("chunk", CHUNKS)
@pytest.mark.parametrize(
    ("k", "beta", "temperature"), [(5, 0.0, 1.0), (5, 0.5, 2.0), (V, 1.0, 1.0)]
)
def test_top_k_tail_equals_unchunked(chunk, k, beta, temperature):
    from tunesmith.distill.chunked import chunked_topk_tail
    from tunesmith.distill.topk import cached_lm_divergence, teacher_tail

    labels, (head, teacher) = make_labels(), make_heads()
    log_p = F.log_softmax(teacher(torch.randn(B, T, H)), -1)
    lp, ids = log_p.topk(k, -1)
    batch = {"teacher_topk_ids": ids, "teacher_topk_logprobs": lp.half(),
             "teacher_topk_tail": teacher_tail(log_p.reshape(-1, V), ids.reshape(-1, k)).view(B, T)}  # fmt: skip
    h1, h2 = leaf(5), leaf(5)
    loss = chunked_topk_tail(h1, labels, head, batch, chunk, beta, temperature)
    ref = cached_lm_divergence(head(h2)[:, :-1], batch, lm_token_mask(labels), beta, temperature)
    assert_same(grads(loss, h1, head), grads(ref, h2, head))


def test_lm_kd_from_cached_top_k_tail_chunked(llama_teacher, lm_batch):
    from tunesmith.distill.topk import teacher_tail

    with torch.no_grad():
        log_p = F.log_softmax(llama_teacher(input_ids=lm_batch["input_ids"]).logits, -1)
    lp, ids = log_p.topk(8, -1)
    tail = teacher_tail(log_p.flatten(0, 1), ids.flatten(0, 1)).view(lp.shape[:2])
    batch = {**lm_batch, "teacher_topk_logprobs": lp.half(), "teacher_topk_ids": ids,
             "teacher_topk_tail": tail}  # fmt: skip
    make = lambda: LMKDTerm(params=LMKDTerm.Params(beta=0.5, temperature=2.0))  # noqa: E731
    ref = term_case(llama_teacher, batch, make(), None)
    assert_same(term_case(llama_teacher, batch, make(), 2), ref)

"""Top-k + tail teacher: pure losses (hand values, full-vocabulary references), the cache, the terms."""

import math

import pytest
import torch
import torch.nn.functional as F

from tunesmith.data.collate import Collator
from tunesmith.distill.cache import TeacherCache, attach_teacher_outputs
from tunesmith.distill.collate import DistillCollator
from tunesmith.distill.losses import forward_kl, generalized_jsd, reverse_kl
from tunesmith.distill.topk import (
    teacher_tail,
    topk_forward_kl,
    topk_jsd,
    topk_reverse_kl,
    topk_tail_rows,
)
from tunesmith.objectives.distill import LMKDTerm, bind_teacher

from .conftest import lm_examples


def _cached(teacher_logits, k):
    log_p = F.log_softmax(teacher_logits.float(), -1)
    lp, ids = log_p.topk(k, -1)
    return ids, lp, teacher_tail(log_p, ids)


def test_hand_value_forward_and_reverse():
    # teacher p = [0.5, 0.3, 0.2] over 3 tokens, k = 1 (token 0) + tail 0.5;
    # student uniform: buckets [1/3, 2/3]
    student = torch.zeros(1, 3)
    ids, lp, tail = torch.tensor([[0]]), torch.tensor([[math.log(0.5)]]), torch.tensor([0.5]).log()
    fwd = 0.5 * math.log(0.5 / (1 / 3)) + 0.5 * math.log(0.5 / (2 / 3))
    rev = (1 / 3) * math.log((1 / 3) / 0.5) + (2 / 3) * math.log((2 / 3) / 0.5)
    assert topk_forward_kl(student, ids, lp, tail).item() == pytest.approx(fwd, abs=1e-6)
    assert topk_reverse_kl(student, ids, lp, tail).item() == pytest.approx(rev, abs=1e-6)
    m = [0.5 * 0.5 + 0.5 / 3, 0.5 * 0.5 + 0.5 * 2 / 3]
    jsd = 0.5 * sum(t * math.log(t / mm) for t, mm in zip([0.5, 0.5], m, strict=True))
    jsd += 0.5 * sum(s * math.log(s / mm) for s, mm in zip([1 / 3, 2 / 3], m, strict=True))
    assert topk_jsd(student, ids, lp, tail, beta=0.5).item() == pytest.approx(jsd, abs=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("beta", [0.0, 0.3, 1.0])
def test_k_equal_vocab_is_the_full_divergence(beta, temperature):
    torch.manual_seed(0)
    s, t = torch.randn(7, 11) * 3, torch.randn(7, 11) * 3
    ids, lp, tail = _cached(t, 11)
    got = topk_tail_rows(s, ids, lp, tail, beta, temperature).mean()
    want = generalized_jsd(s, t, beta, temperature)
    assert got.item() == pytest.approx(want.item(), abs=1e-5)


def test_concentrated_teacher_is_close_and_mass_is_kept():
    torch.manual_seed(1)
    s = torch.randn(5, 50)
    t = torch.randn(5, 50)
    t[:, :4] += 12.0  # the teacher's mass sits on 4 tokens
    ids, lp, tail = _cached(t, 4)
    assert torch.allclose(lp.exp().sum(-1) + tail.exp(), torch.ones(5), atol=1e-6)
    assert topk_forward_kl(s, ids, lp, tail).item() == pytest.approx(
        forward_kl(s, t).item(), rel=1e-3
    )
    # reverse KL / JSD weigh the student's own tail: close when the student is concentrated too
    near = t + 0.5 * torch.randn(5, 50)
    assert topk_reverse_kl(near, ids, lp, tail).item() == pytest.approx(
        reverse_kl(near, t).item(), rel=1e-2
    )
    assert topk_jsd(near, ids, lp, tail).item() == pytest.approx(
        generalized_jsd(near, t, 0.5).item(), rel=1e-2
    )


def test_gradient_is_finite_when_k_is_the_vocab():
    s = torch.randn(3, 6, requires_grad=True)
    ids, lp, tail = _cached(torch.randn(3, 6), 6)
    for beta in (0.0, 0.5, 1.0):
        (g,) = torch.autograd.grad(topk_tail_rows(s, ids, lp, tail, beta).sum(), s)
        assert torch.isfinite(g).all()


def test_cache_stores_fp16_tail_and_bytes_per_token(tmp_path, llama_teacher, causal_tok):
    examples = lm_examples(causal_tok)
    cache = TeacherCache.build(tmp_path, llama_teacher, examples, task="causal_lm", top_k=4)
    assert cache.bytes_per_token == 4 * 6 + 4 == cache.meta["bytes_per_token"]
    assert cache.shards[0]["values"].dtype == torch.float16
    assert cache.shards[0]["tail"].dtype == torch.float32
    got = cache.example(0)
    batch = Collator(pad_token_id=0)([examples[0]])
    batch.pop("labels")
    with torch.no_grad():
        logits = llama_teacher(**batch).logits[0]
    log_p = F.log_softmax(logits, -1)
    trained = [
        t for t in range(len(examples[0]["input_ids"]) - 1) if examples[0]["labels"][t + 1] != -100
    ]
    lp, ids = log_p.topk(4, -1)
    assert torch.allclose(got["teacher_topk_tail"][trained], teacher_tail(log_p, ids)[trained])
    total = got["teacher_topk_logprobs"][trained].float().exp().sum(-1)
    assert torch.allclose(
        total + got["teacher_topk_tail"][trained].exp(), torch.ones(len(trained)), atol=2e-3
    )


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_lm_kd_on_a_full_vocab_cache_equals_the_live_teacher(
    tmp_path, llama_teacher, causal_tok, beta
):
    vocab = llama_teacher.config.vocab_size
    examples = lm_examples(causal_tok)
    cache = TeacherCache.build(tmp_path, llama_teacher, examples, task="causal_lm", top_k=vocab)
    attach_teacher_outputs(examples, cache)
    batch = DistillCollator(Collator(pad_token_id=0))(examples)
    assert batch["teacher_topk_tail"].shape == batch["input_ids"].shape
    torch.manual_seed(0)
    outputs = type("Out", (), {"logits": torch.randn(*batch["input_ids"].shape, vocab)})()
    term = LMKDTerm(params=LMKDTerm.Params(beta=beta, temperature=1.0))
    cached = term.loss(llama_teacher, batch, outputs)
    live_term = LMKDTerm(params=LMKDTerm.Params(beta=beta, temperature=1.0))
    bind_teacher([live_term], llama_teacher)
    plain = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    live = live_term.loss(llama_teacher, plain, outputs)
    assert cached.item() == pytest.approx(live.item(), abs=2e-3)  # fp16 log-probs

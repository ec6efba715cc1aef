import math

import pytest
import torch
import torch.nn.functional as F

from tunesmith.distill.losses import (
    attention_loss,
    forward_kl,
    generalized_jsd,
    hidden_state_loss,
    hinton_kd_loss,
    lm_token_mask,
    reverse_kl,
    sparse_forward_kl,
)


def test_hinton_two_classes_by_hand():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    # T=1: p_t = (3/4, 1/4), p_s = (1/2, 1/2)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert hinton_kd_loss(student, teacher, 1.0).item() == pytest.approx(kl, rel=1e-6)
    # T=2: p_t = softmax(ln3/2, 0) = (sqrt3, 1) / (1 + sqrt3); loss scaled by T^2 = 4
    a = math.sqrt(3) / (1 + math.sqrt(3))
    kl2 = a * math.log(a / 0.5) + (1 - a) * math.log((1 - a) / 0.5)
    assert hinton_kd_loss(student, teacher, 2.0).item() == pytest.approx(4 * kl2, rel=1e-6)
    # batchmean: a second, identical pair of rows keeps the value
    two = hinton_kd_loss(student.repeat(2, 1), teacher.repeat(2, 1), 2.0)
    assert two.item() == pytest.approx(4 * kl2, rel=1e-6)


def test_reverse_kl_by_hand():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert reverse_kl(student, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_t_squared_gradient_identity_and_large_t_invariance():
    torch.manual_seed(0)
    teacher = torch.randn(4, 5)
    base = torch.randn(4, 5)
    grads = {}
    for T in (1.0, 2.0, 50.0, 100.0):
        s = base.clone().requires_grad_(True)
        hinton_kd_loss(s, teacher, T).backward()
        # exact: d/ds KL(T) = (softmax(s/T) - softmax(t/T)) / T / B, so T^2 * KL gives T * (...)
        exact = T * (F.softmax(base / T, -1) - F.softmax(teacher / T, -1)) / 4
        assert torch.allclose(s.grad, exact, atol=1e-6)
        grads[T] = s.grad
    # Hinton eq. 4: for large T the scaled gradient tends to (z - v - mean(z - v)) / (C * B)
    diff = base - teacher
    limit = (diff - diff.mean(-1, keepdim=True)) / (5 * 4)
    assert torch.allclose(grads[100.0], limit, rtol=0.05, atol=1e-4)
    assert torch.allclose(grads[50.0], grads[100.0], rtol=0.05, atol=1e-4)  # ~T-invariant


def test_jsd_limits_equal_the_kls():
    torch.manual_seed(1)
    s, t = torch.randn(3, 7, 11), torch.randn(3, 7, 11)
    fkl, rkl = forward_kl(s, t), reverse_kl(s, t)
    assert torch.allclose(generalized_jsd(s, t, beta=0.0), fkl)
    assert torch.allclose(generalized_jsd(s, t, beta=1.0), rkl)
    eps = 1e-4  # the formula itself: JSD(beta)/beta -> KL(t||s), JSD/(1-beta) -> KL(s||t)
    assert (generalized_jsd(s, t, beta=eps) / eps).item() == pytest.approx(fkl.item(), rel=1e-2)
    assert (generalized_jsd(s, t, beta=1 - eps) / eps).item() == pytest.approx(rkl.item(), rel=1e-2)
    # symmetric JSD at beta=0.5 is bounded by log 2
    assert 0 < generalized_jsd(s, t, beta=0.5).item() < math.log(2)


def test_lm_token_mask_is_shifted():
    labels = torch.tensor([[-100, -100, 5, 6, -100]])
    assert lm_token_mask(labels).tolist() == [[False, True, True, False]]


@pytest.mark.parametrize(
    "fn",
    [
        lambda s, t, m: forward_kl(s, t, 2.0, m),
        lambda s, t, m: reverse_kl(s, t, 1.0, m),
        lambda s, t, m: generalized_jsd(s, t, 0.3, 1.5, m),
        lambda s, t, m: hinton_kd_loss(s, t, 4.0, m),
    ],
)
def test_masked_positions_do_not_count(fn):
    torch.manual_seed(2)
    s, t = torch.randn(2, 6, 9), torch.randn(2, 6, 9)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]]).bool()
    s2, t2 = s.clone(), t.clone()
    s2[~mask] += 100 * torch.randn_like(s2[~mask])
    t2[~mask] = torch.randn_like(t2[~mask])
    s2.requires_grad_(True)
    value = fn(s2, t2, mask)
    assert torch.allclose(value, fn(s, t, mask))
    value.backward()
    assert torch.all(s2.grad[~mask] == 0)
    # mean over kept positions only: equals the loss of the kept rows flattened
    assert torch.allclose(fn(s, t, mask), fn(s[mask][None], t[mask][None], None))
    # an all-masked batch gives 0, not nan
    assert fn(s, t, torch.zeros_like(mask)).item() == 0.0


def test_agrees_with_trl_generalized_jsd_loss():
    gkd = pytest.importorskip("trl.experimental.gkd.gkd_trainer")
    torch.manual_seed(3)
    s, t = torch.randn(3, 8, 13), torch.randn(3, 8, 13)
    labels = torch.randint(0, 13, (3, 8))
    labels[0, :3] = -100
    labels[2, 5:] = -100
    for beta in (0.0, 0.1, 0.5, 0.9, 1.0):
        for T in (1.0, 2.0):
            ref = gkd.GKDTrainer.generalized_jsd_loss(s, t, labels=labels, beta=beta, temperature=T)
            ours = generalized_jsd(s, t, beta, T, mask=labels != -100)
            assert torch.allclose(ours, ref, atol=1e-6), (beta, T)


def test_sparse_forward_kl():
    torch.manual_seed(4)
    s, t = torch.randn(2, 5, 10), torch.randn(2, 5, 10)
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1, 3:] = False
    lp = F.log_softmax(t, -1)
    for T in (1.0, 3.0):
        full_lp, full_ids = lp.topk(10, -1)  # k = V: exact forward KL
        exact = sparse_forward_kl(s, full_lp, full_ids, mask, T)
        assert torch.allclose(exact, forward_kl(s, t, T, mask), atol=1e-6)
    # k < V: the teacher renormalised over its top k, the student with its full normaliser
    top_lp, top_ids = lp.topk(3, -1)
    q = F.softmax(top_lp / 2.0, -1)
    log_ps = F.log_softmax(s / 2.0, -1).gather(-1, top_ids)
    by_hand = (q * (q.log() - log_ps)).sum(-1)[mask].mean()
    assert torch.allclose(sparse_forward_kl(s, top_lp, top_ids, mask, 2.0), by_hand, atol=1e-6)


def test_hidden_state_loss_by_hand_and_projection():
    s = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [9.0, 9.0]]])
    t = torch.tensor([[[0.0, 0.0], [0.0, 1.0], [0.0, 0.0]]])
    mask = torch.tensor([[1, 1, 0]])
    # per token mean squared error: (1 + 0)/2 = 0.5 and (0 + 1)/2 = 0.5
    assert hidden_state_loss(s, t, mask, "mse").item() == pytest.approx(0.5)
    # cosine: token 0 has t = 0 (cos 0 -> 1), token 1 is parallel (cos 1 -> 0)
    assert hidden_state_loss(s, t, mask, "cosine").item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="projection"):
        hidden_state_loss(torch.randn(1, 3, 4), torch.randn(1, 3, 6), None)
    proj = torch.nn.Linear(4, 6)
    loss = hidden_state_loss(torch.randn(1, 3, 4), torch.randn(1, 3, 6), None, "mse", proj)
    loss.backward()
    assert proj.weight.grad is not None and proj.weight.grad.abs().sum() > 0


def test_attention_loss():
    torch.manual_seed(5)
    a = torch.softmax(torch.randn(2, 4, 5, 5), -1)
    b = torch.softmax(torch.randn(2, 4, 5, 5), -1)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert attention_loss(a, a, mask).item() == pytest.approx(0.0, abs=1e-7)
    keep = mask.bool()[:, None, :].expand(-1, 4, -1)
    by_hand = (b * (b.log() - a.log())).sum(-1)[keep].mean()
    assert torch.allclose(attention_loss(a, b, mask, "kl"), by_hand, atol=1e-6)
    by_hand_mse = (a - b).pow(2).mean(-1)[keep].mean()
    assert torch.allclose(attention_loss(a, b, mask, "mse"), by_hand_mse, atol=1e-7)
    two_heads = torch.softmax(torch.randn(2, 2, 5, 5), -1)  # head counts differ: head means
    assert torch.isfinite(attention_loss(two_heads, b, mask))

"""Task losses (pure functions of logits and labels): by hand and against transformers."""

import torch
import torch.nn.functional as F

from tunesmith.tasks.causal_lm import causal_lm_loss
from tunesmith.tasks.sequence_classification import sequence_classification_loss
from tunesmith.tasks.token_classification import token_classification_loss


def test_sequence_classification_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    # -log softmax: row0 log(1+e^-2), row1 log(1+e^1)
    expected = (
        torch.log1p(torch.exp(torch.tensor(-2.0))) + torch.log1p(torch.exp(torch.tensor(1.0)))
    ) / 2
    assert torch.allclose(sequence_classification_loss(logits, labels), expected)


def test_token_loss_ignores_padding():
    logits = torch.randn(2, 3, 4)
    labels = torch.tensor([[1, -100, 2], [-100, -100, 3]])
    keep = labels != -100
    expected = F.cross_entropy(logits[keep], labels[keep])
    assert torch.allclose(token_classification_loss(logits, labels), expected)


def test_causal_loss_shifts_and_matches_transformers():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=32)
    )
    ids = torch.randint(0, 50, (2, 7))
    labels = ids.clone()
    labels[:, :3] = -100  # prompt masking
    out = model(input_ids=ids, labels=labels)
    assert torch.allclose(causal_lm_loss(out.logits, labels), out.loss, atol=1e-6)

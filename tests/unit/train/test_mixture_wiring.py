"""The wiring the loop needs, in miniature: concatenated tasks, a mixture plan, per-task heads.

This is the sketch ``docs/multitask.md`` describes for the loop's mixture mode
(``train/modes/mixture.py``): the task of a micro-batch
is read from its first example, the head and the loss follow from it, and a resumed run that
recomputes the plan from its step ends with the same weights as an uninterrupted one.
"""

import random

import torch

from tunesmith.data import Collator, LabelVocab, encode_classification, encode_token_classification
from tunesmith.data.mixing import MixtureSampler, concat_tasks, mixing_rates
from tunesmith.heads import HeadSpec, MultiHeadModel
from tunesmith.tasks import model_inputs, task_loss
from tunesmith.testing import tiny_bert_backbone

POS, NEG = "good happy love yes".split(), "bad sad hate no".split()


def tiny_tasks(tokenizer):
    rng = random.Random(0)
    sent_vocab, ner_vocab = LabelVocab(["0", "1"]), LabelVocab(["B-X", "O"])
    sent = [
        {"text": f"the film was {rng.choice(POS if i % 2 else NEG)}", "label": str(i % 2)}
        for i in range(24)
    ]
    ner = []
    for _ in range(10):
        words = rng.sample(["the", "cat", "dog", "man", "house", *POS], 4)
        ner.append({"tokens": words, "tags": ["B-X" if w in POS else "O" for w in words]})
    return {
        "sent": encode_classification(sent, tokenizer, sent_vocab),
        "ner": encode_token_classification(ner, tokenizer, ner_vocab),
    }, {"sent": sent_vocab, "ner": ner_vocab}


def build(vocabs):
    heads = {
        "sent": HeadSpec("sequence_classification", vocabs["sent"].labels),
        "ner": HeadSpec("token_classification", vocabs["ner"].labels),
    }
    model = MultiHeadModel(tiny_bert_backbone(), heads, init_seed=0, dropout=0.0)
    return model, torch.optim.AdamW(model.parameters(), lr=3e-3)


def run_steps(model, opt, examples, collator, plan):
    losses = []
    for micro_batches in plan:
        for idx in micro_batches:
            task = examples[idx[0]]["task"]  # micro-batches are homogeneous
            kind = model.task_kind(task)
            batch = collator([examples[i] for i in idx])
            out = model(**model_inputs(kind, batch), task=task)
            loss = task_loss(kind, out.logits, batch["labels"])
            (loss / len(micro_batches)).backward()
            losses.append(float(loss.detach()))
        opt.step()
        opt.zero_grad(set_to_none=True)
    return losses


def test_mixture_training_and_resume(bert_tokenizer, tmp_path):
    train, vocabs = tiny_tasks(bert_tokenizer)
    examples, offsets = concat_tasks(train)
    rates = mixing_rates({t: len(v) for t, v in train.items()}, "temperature")
    sampler = MixtureSampler({t: len(v) for t, v in train.items()}, rates, 4, seed=1, grad_accum=2)
    collator = Collator(pad_token_id=bert_tokenizer.pad_token_id)
    n, k = 24, 10

    torch.manual_seed(0)  # dropout draws from the global RNG
    model, opt = build(vocabs)
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    losses = run_steps(model, opt, examples, collator, sampler.index_plan(0, n, offsets))
    assert sum(losses[-8:]) < sum(losses[:8])  # it learns
    for name, p in model.named_parameters():  # both heads and the backbone trained
        assert not torch.equal(p, start[name]), name

    # a run killed after k steps: save model, optimizer and RNG (as accelerate's checkpoint does),
    # rebuild, recompute the plan from step k; no sampler state is saved
    torch.manual_seed(0)
    part, opt_a = build(vocabs)
    run_steps(part, opt_a, examples, collator, sampler.index_plan(0, k, offsets))
    ckpt = {"model": part.state_dict(), "opt": opt_a.state_dict(), "rng": torch.get_rng_state()}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    torch.manual_seed(123)  # a new process
    resumed, opt_b = build(vocabs)
    state = torch.load(tmp_path / "ckpt.pt")
    resumed.load_state_dict(state["model"])
    opt_b.load_state_dict(state["opt"])
    torch.set_rng_state(state["rng"])
    fresh = MixtureSampler(sampler.sizes, rates, 4, seed=1, grad_accum=2)
    run_steps(resumed, opt_b, examples, collator, fresh.index_plan(k, n - k, offsets))
    for name, p in model.named_parameters():
        torch.testing.assert_close(resumed.state_dict()[name], p, rtol=0, atol=0)

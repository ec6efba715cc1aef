"""Text-to-text formatting and label-set scoring against hand-computed log-likelihoods."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from tunesmith.data.textformat import TextFormat, verbaliser
from tunesmith.errors import DataError
from tunesmith.testing import BOS_ID, EOS_ID, PAD_ID
from tunesmith.train.scoring import classify_by_scoring, score_label_set

PROMPTS = ["the movie was good", "sentence : a bad film , i hate it"]
WORDS = ["positive", "negative", "very good"]


def ids(tokenizer, text):
    return tokenizer.convert_tokens_to_ids(text.lower().split())


@pytest.fixture(scope="module")
def llama(tiny_lms):
    return AutoModelForCausalLM.from_pretrained(
        tiny_lms["llama"]
    ).eval(), AutoTokenizer.from_pretrained(tiny_lms["llama"])


@pytest.fixture(scope="module")
def t5(tiny_lms):
    return AutoModelForSeq2SeqLM.from_pretrained(
        tiny_lms["t5"]
    ).eval(), AutoTokenizer.from_pretrained(tiny_lms["t5"])


@torch.no_grad()
def causal_by_hand(model, tok, prompt, word, include_eos=True):
    """<s> prompt word </s>: sum over the word (and </s>) of log p(token | everything before)."""
    p, w = [BOS_ID, *ids(tok, prompt)], ids(tok, word) + ([EOS_ID] if include_eos else [])
    seq = torch.tensor([p + w + ([] if include_eos else [EOS_ID])])
    logp = F.log_softmax(model(input_ids=seq).logits[0].float(), -1)
    return sum(float(logp[len(p) + k - 1, t]) for k, t in enumerate(w)), len(w)


@torch.no_grad()
def seq2seq_by_hand(model, tok, prompt, word, include_eos=True):
    src = torch.tensor([ids(tok, prompt) + [EOS_ID]])
    target = ids(tok, word) + ([EOS_ID] if include_eos else [])
    dec = torch.tensor([[PAD_ID, *target[:-1]]])  # T5 starts decoding from pad
    logp = F.log_softmax(model(input_ids=src, decoder_input_ids=dec).logits[0].float(), -1)
    return sum(float(logp[k, t]) for k, t in enumerate(target)), len(target)


@pytest.mark.parametrize("include_eos", [True, False])
def test_causal_scores_equal_hand_log_likelihood(llama, include_eos):
    model, tok = llama
    got = score_label_set(model, tok, PROMPTS, WORDS, include_eos=include_eos, batch_size=4)
    assert got.shape == (2, 3)
    for i, p in enumerate(PROMPTS):
        for j, w in enumerate(WORDS):
            want, _ = causal_by_hand(model, tok, p, w, include_eos)
            assert float(got[i, j]) == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("include_eos", [True, False])
def test_seq2seq_scores_equal_hand_log_likelihood(t5, include_eos):
    model, tok = t5
    got = score_label_set(model, tok, PROMPTS, WORDS, include_eos=include_eos, batch_size=5)
    for i, p in enumerate(PROMPTS):
        for j, w in enumerate(WORDS):
            want, _ = seq2seq_by_hand(model, tok, p, w, include_eos)
            assert float(got[i, j]) == pytest.approx(want, abs=1e-4)


def test_mean_reduction_and_argmax(llama):
    model, tok = llama
    total = score_label_set(model, tok, PROMPTS, WORDS)
    mean = score_label_set(model, tok, PROMPTS, WORDS, reduction="mean")
    lengths = torch.tensor([[causal_by_hand(model, tok, p, w)[1] for w in WORDS] for p in PROMPTS])
    torch.testing.assert_close(mean, total / lengths)
    assert classify_by_scoring(model, tok, PROMPTS, WORDS) == total.argmax(-1).tolist()
    assert model.training is False


def test_records_are_scored_as_training_renders_them(llama):
    """Records (alpaca instruction + input, or prompt_key) score the text training encodes:
    the same as their rendered user turn given as a string; the alpaca template with an input
    renders its own layout, different from the instruction alone."""
    model, tok = llama
    records = [{"instruction": "sentence :", "input": p, "output": "x"} for p in PROMPTS]
    strings = [f"sentence :\n\n{p}" for p in PROMPTS]
    for template in ("plain", "alpaca"):
        got = score_label_set(model, tok, records, WORDS, template=template)
        want = score_label_set(model, tok, strings, WORDS, template=template)
        if template == "plain":
            torch.testing.assert_close(got, want)
        else:
            assert not torch.allclose(got, want)  # "### Input:" is its own section
    keyed = [{"text": p} for p in PROMPTS]
    torch.testing.assert_close(
        score_label_set(model, tok, keyed, WORDS, prompt_key="text"),
        score_label_set(model, tok, PROMPTS, WORDS),
    )
    with pytest.raises(ValueError, match="all strings"):
        score_label_set(model, tok, [PROMPTS[0], keyed[0]], WORDS)


def test_long_prompt_keeps_its_end(llama):
    model, tok = llama
    prompt = "the cat " * 10 + "was good"
    full = [BOS_ID, *ids(tok, prompt), *ids(tok, "positive"), EOS_ID]
    short = score_label_set(model, tok, [prompt], ["positive"], max_length=8)
    seq = full[-8:]  # the prompt loses its start; "positive </s>" are the last two tokens
    with torch.no_grad():
        logp = F.log_softmax(model(input_ids=torch.tensor([seq])).logits[0].float(), -1)
    want = float(logp[5, seq[6]] + logp[6, seq[7]])
    assert len(full) > 8 and float(short[0, 0]) == pytest.approx(want, abs=1e-4)
    with pytest.raises(DataError, match="longer than max_length"):
        score_label_set(model, tok, [prompt], ["very good"], max_length=2)


def test_verbaliser():
    assert verbaliser(["0", "1"]) == {"0": "0", "1": "1"}
    assert verbaliser([0, 1], {0: "negative", 1: "positive"}) == {"0": "negative", "1": "positive"}
    with pytest.raises(DataError, match="both verbalise"):
        verbaliser(["a", "b"], {"a": "x", "b": "x"})
    with pytest.raises(DataError, match="unknown labels"):
        verbaliser(["a"], {"z": "x"})
    with pytest.raises(DataError, match="empty word"):
        verbaliser(["a"], {"a": " "})


def test_text_format_t5_style():
    sst2 = TextFormat("sst2", words=verbaliser(["0", "1"], {"0": "negative", "1": "positive"}))
    rte = TextFormat("rte", (("sentence1", "premise"), ("sentence2", "hypothesis")))
    assert (
        sst2.source({"text": " a charming film ", "label": "1"}) == "sst2 sentence: a charming film"
    )
    pairs = sst2.to_pairs([{"text": "dull", "label": 0}, {"text": "new"}])
    assert pairs == [
        {"source": "sst2 sentence: dull", "target": "negative"},
        {"source": "sst2 sentence: new"},
    ]
    rec = {"premise": "a man sleeps", "hypothesis": "a man is awake", "label": "not_entailment"}
    assert rte.source(rec) == "rte sentence1: a man sleeps sentence2: a man is awake"
    assert rte.target(rec["label"]) == "not_entailment"
    with pytest.raises(DataError, match="'hypothesis'"):
        rte.source({"premise": "x"})

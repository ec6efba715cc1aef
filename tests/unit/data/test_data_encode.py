"""Task encoders: label ids, tag alignment, prompt masking, seq2seq targets."""

from __future__ import annotations

import pytest

from tunesmith.data import (
    IGNORE_INDEX,
    LabelVocab,
    build_prompt,
    encode_causal_lm,
    encode_classification,
    encode_seq2seq,
    encode_token_classification,
)
from tunesmith.errors import ConfigError, DataError

X = IGNORE_INDEX


def test_classification(bert_tok) -> None:
    vocab = LabelVocab(["bad", "good"])
    recs = [{"text": "good movie", "label": "good"}, {"text": "bad", "label": None}]
    out = encode_classification(recs, bert_tok, vocab)
    assert out[0] == {"input_ids": [2, 9, 11, 3], "attention_mask": [1, 1, 1, 1], "labels": 1}
    assert "labels" not in out[1]
    pair = encode_classification(
        [{"a": "hello", "b": "world", "label": "bad"}],
        bert_tok,
        vocab,
        text_key="a",
        text_pair_key="b",
    )
    assert pair[0]["input_ids"] == [2, 4, 3, 5, 3] and pair[0]["labels"] == 0
    cut = encode_classification([{"text": "good movie is good"}], bert_tok, vocab, max_length=3)
    assert cut[0]["input_ids"] == [2, 9, 3]


def test_classification_errors(bert_tok) -> None:
    vocab = LabelVocab(["bad", "good"])
    with pytest.raises(DataError, match=r"unknown label 'meh' in dev example 1"):
        encode_classification(
            [{"text": "a", "label": "bad"}, {"text": "b", "label": "meh"}],
            bert_tok,
            vocab,
            where="dev",
        )
    with pytest.raises(DataError, match=r"example 0: no field 'sentence'"):
        encode_classification([{"text": "a"}], bert_tok, vocab, text_key="sentence")


def test_token_classification_alignment(bert_tok) -> None:
    vocab = LabelVocab(["B-x", "I-x", "O"])
    rec = {"tokens": ["hello", "unbelievable", "world"], "tags": ["O", "B-x", "O"]}
    (ex,) = encode_token_classification([rec], bert_tok, vocab)
    # [CLS] hello un ##believ ##able world [SEP]
    assert ex["input_ids"] == [2, 4, 6, 7, 8, 5, 3]
    assert ex["labels"] == [X, 2, 0, X, X, 2, X]
    (all_sub,) = encode_token_classification([rec], bert_tok, vocab, label_all_subtokens=True)
    assert all_sub["labels"] == [X, 2, 0, 1, 1, 2, X]
    (cut,) = encode_token_classification([rec], bert_tok, vocab, max_length=4)
    assert cut["input_ids"] == [2, 4, 6, 3] and cut["labels"] == [X, 2, 0, X]
    with pytest.raises(DataError, match="2 tokens but 1 tags"):
        encode_token_classification([{"tokens": ["a", "b"], "tags": ["O"]}], bert_tok, vocab)


QA = {"instruction": "what is the capital of France ?", "input": "", "output": "Paris ."}


def check_masked(ex: dict, tok, prompt: str, response_ids: list[int]) -> None:
    n = len(tok(prompt, add_special_tokens=False)["input_ids"])
    assert ex["labels"][:n] == [X] * n
    assert ex["labels"][n:] == ex["input_ids"][n:] == response_ids + [tok.eos_token_id]
    assert ex["attention_mask"] == [1] * len(ex["input_ids"])


def test_causal_lm_chat_masks_prompt(lm_tok) -> None:
    prompt = build_prompt(QA, lm_tok, "chat", system="Be brief")
    assert prompt == (
        "<s> system : Be brief </s> <s> user : what is the capital of France ? </s> <s> assistant : "
    )
    (ex,) = encode_causal_lm([QA], lm_tok, template="chat", system="Be brief")
    paris = lm_tok("Paris .", add_special_tokens=False)["input_ids"]
    check_masked(ex, lm_tok, prompt, paris)


def test_causal_lm_alpaca_masks_prompt(lm_tok) -> None:
    rec = {"instruction": "translate", "input": "hello world", "output": "Paris"}
    prompt = build_prompt(rec, lm_tok, "alpaca")
    assert "### Instruction:\ntranslate\n\n### Input:\nhello world\n\n### Response:\n" in prompt
    (ex,) = encode_causal_lm([rec], lm_tok, template="alpaca")
    check_masked(ex, lm_tok, prompt, [lm_tok.convert_tokens_to_ids("Paris")])
    (plain,) = encode_causal_lm([rec], lm_tok, template="plain", mask_prompt=False)
    assert plain["labels"] == plain["input_ids"]
    assert build_prompt(rec, lm_tok, "plain") == "translate\n\nhello world\n"


def test_causal_lm_offsets_fallback_when_tokens_merge(lm_tok, monkeypatch) -> None:
    # "assistant" + "Paris" is one (unknown) word in the full text, so the prompt ids are not a
    # prefix of the full ids; the token straddling the seam belongs to the response.
    monkeypatch.setattr(lm_tok, "chat_template", "{{ messages[0]['content'] }} assistant")
    (ex,) = encode_causal_lm([{"prompt": "hello", "output": "Paris"}], lm_tok, prompt_key="prompt")
    eos, unk = lm_tok.eos_token_id, lm_tok.unk_token_id
    assert ex["input_ids"] == [24, unk, eos]
    assert ex["labels"] == [X, unk, eos]


def test_causal_lm_truncation_and_text_key(lm_tok) -> None:
    short = {"instruction": "hello", "output": "Paris . Paris ."}
    long = {"instruction": "what is the capital of France ?" * 5, "output": "Paris"}
    with pytest.warns(UserWarning, match="dropped 1 example"):
        out = encode_causal_lm([short, long], lm_tok, template="plain", max_length=4)
    assert len(out) == 1 and len(out[0]["input_ids"]) == 4
    assert out[0]["labels"] == [X] + out[0]["input_ids"][1:]
    (lm,) = encode_causal_lm([{"text": "hello world"}], lm_tok, text_key="text")
    assert lm["input_ids"] == lm["labels"] == [24, 25, lm_tok.eos_token_id]


def test_causal_lm_errors(lm_tok, monkeypatch) -> None:
    with pytest.raises(DataError, match="example 0: no 'instruction'.*set prompt_key"):
        encode_causal_lm([{"q": "x", "output": "y"}], lm_tok)
    with pytest.raises(DataError, match="missing response field 'answer'"):
        encode_causal_lm([QA], lm_tok, response_key="answer")
    monkeypatch.setattr(lm_tok, "chat_template", None)
    with pytest.raises(ConfigError, match="no chat template.*template: alpaca"):
        encode_causal_lm([QA], lm_tok, template="chat")


def test_seq2seq(lm_tok) -> None:
    recs = [{"source": "hello world", "target": "Paris ."}, {"source": "hello"}]
    out = encode_seq2seq(recs, lm_tok, prefix="translate ")
    eos = lm_tok.eos_token_id
    assert out[0]["input_ids"] == [23, 24, 25]
    assert out[0]["labels"] == [21, 7, eos]
    assert "labels" not in out[1]
    (cut,) = encode_seq2seq(recs[:1], lm_tok, max_target_length=2)
    assert cut["labels"] == [21, eos]

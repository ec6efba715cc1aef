"""Tiny tokenizers built in process (no downloads) for the data tests."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

BERT_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]",
    "hello", "world", "un", "##believ", "##able", "good", "bad", "movie", "is",
]  # fmt: skip

LM_WORDS = [
    "<pad>", "<unk>", "<s>", "</s>", "#", "###", ":", ".", "Instruction", "Input", "Response",
    "user", "assistant", "system", "what", "is", "the", "capital", "of", "France", "?",
    "Paris", "it", "translate", "hello", "world", "Be", "brief",
]  # fmt: skip

CHAT_TEMPLATE = (
    "{% for m in messages %}<s> {{ m['role'] }} : {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<s> assistant : {% endif %}"
)


@pytest.fixture(scope="session")
def bert_tok() -> PreTrainedTokenizerFast:
    """WordPiece, ``[CLS] a [SEP] (b [SEP])``: 'unbelievable' -> un ##believ ##able."""
    tok = Tokenizer(models.WordPiece({w: i for i, w in enumerate(BERT_VOCAB)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )


@pytest.fixture(scope="session")
def lm_tok() -> PreTrainedTokenizerFast:
    """Word-level, whitespace + punctuation split, no post-processor (GPT-2-like), chat template."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(LM_WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    t = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
    )
    t.chat_template = CHAT_TEMPLATE
    return t

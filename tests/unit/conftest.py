"""Fixtures shared by several test folders: the tiny multi-head model (``heads/``, ``train/``) and
tiny generative models (``data/`` text formats, ``heads/``, ``train/`` evaluation). No network,
milliseconds each."""

import os

import pytest

from tunesmith.heads import HeadSpec, MultiHeadModel
from tunesmith.testing import (
    NER_TAGS,
    SENT_LABELS,
    save_tiny_model,
    tiny_bert_backbone,
    tiny_tokenizer,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _auto_precision_is_fp32():
    """``train.precision: auto`` (the default) resolves to fp32 in unit tests, whatever the CPU:
    tests that compare numbers exactly (resume, DDP parity, reference values) must agree on
    machines with and without native bf16. Session-wide, so module- and session-scoped fixtures
    that train see it too. Tests of auto's choice patch the probe themselves; recipes run in a
    subprocess pin ``precision: fp32``."""
    import tunesmith.precision

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            tunesmith.precision, "native_bf16", lambda device: (False, "unit tests: fp32")
        )
        yield


@pytest.fixture
def bert_tokenizer():
    return tiny_tokenizer(kind="bert")


@pytest.fixture
def multihead():
    """A tiny BERT with a 3-way sentence head and a 5-tag NER head."""
    heads = {
        "sent": HeadSpec("sequence_classification", SENT_LABELS),
        "ner": HeadSpec("token_classification", NER_TAGS),
    }
    return MultiHeadModel(tiny_bert_backbone(), heads, init_seed=1)


@pytest.fixture(scope="session")
def tiny_lms(tmp_path_factory):
    root = tmp_path_factory.mktemp("mt_models")
    return {
        "llama": save_tiny_model(root / "llama", "llama", "causal_lm", seed=2),
        "t5": save_tiny_model(root / "t5", "t5", "seq2seq", seed=3),
        "bert-cls": save_tiny_model(root / "bert-cls", "bert", "sequence_classification", seed=4),
    }

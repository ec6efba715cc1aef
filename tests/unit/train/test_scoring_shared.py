"""Label-word scoring with the prompt shared by its words (tree rows, train/sharedprompt.py):
the same scores as every (prompt, word) scored as its own sequence, and the rule for when."""

from types import SimpleNamespace

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    MistralConfig,
    Qwen2Config,
    Qwen3Config,
)

from tunesmith.packedattn import use_packed_attention
from tunesmith.testing import tiny_config, tiny_tokenizer
from tunesmith.train import scoring, sharedprompt
from tunesmith.train.scoring import score_label_set
from tunesmith.train.sharedprompt import can_share_prompt, tree_row

# prompts of different lengths (padding) and words of 1, 2 and 3 tokens, two sharing a first token
PROMPTS = [
    "the movie was good",
    "sentence : a bad film , i hate it and the book was bad too",
    "hi",
    "what is the answer to the question ?",
    "the cat and the dog",
]
WORDS = ["positive", "very good", "very bad film", "negative"]
SMALL = dict(
    vocab_size=len(tiny_tokenizer(kind="causal")),
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=64,
)


def tiny(arch: str, attn: str = "sdpa", window: int = 4):
    """A tiny random decoder of ``arch``; the windowed ones with a ``window``-token window, shorter
    than the scored sequences, so the sliding layers' mask matters."""
    if arch in ("llama", "gpt2"):
        config = tiny_config(arch, SMALL["vocab_size"])
    elif arch == "qwen2":  # its last layer slides
        config = Qwen2Config(
            **SMALL, use_sliding_window=True, sliding_window=window, max_window_layers=1
        )
    elif arch == "qwen3":
        config = Qwen3Config(**SMALL, head_dim=8)
    elif arch == "mistral":
        config = MistralConfig(**SMALL, sliding_window=window)
    elif arch == "gemma2":
        config = Gemma2Config(**SMALL, head_dim=8, sliding_window=window)
    else:  # gemma3: sliding and global layers
        config = Gemma3TextConfig(
            **(SMALL | {"num_hidden_layers": 3, "num_key_value_heads": 1}),
            head_dim=8,
            layer_types=["sliding_attention", "full_attention", "sliding_attention"],
            query_pre_attn_scalar=16,
            sliding_window=window,
        )
    if arch == "gemma2":
        attn = "eager"  # gemma2 has no SDPA path (attention soft-capping)
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation=attn).float().eval()


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer(kind="causal")


def separate(monkeypatch, *args, **kw):
    """The scores with every (prompt, word) as its own sequence."""
    with monkeypatch.context() as m:
        m.setattr(scoring, "can_share_prompt", lambda *a: False)
        return score_label_set(*args, **kw)


def shared(monkeypatch, *args, **kw):
    """The scores from tree rows (failing if the call would fall back)."""
    with monkeypatch.context() as m:
        m.setattr(scoring, "_separate_scores", None)
        return score_label_set(*args, **kw)


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3", "qwen3", "gemma2", "gpt2"])
def test_shared_prompt_scores_equal_separate_sequences(monkeypatch, tok, arch):
    model = tiny(arch)
    for kw in (
        {},
        {"include_eos": False, "reduction": "mean", "batch_size": 3},
        {"template": "chat", "system": "you are a help", "batch_size": 1},
    ):
        want = separate(monkeypatch, model, tok, PROMPTS, WORDS, **kw)
        got = shared(monkeypatch, model, tok, PROMPTS, WORDS, **kw)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_eager_and_packed_attention_equal_sdpa(monkeypatch, tok):
    want = separate(monkeypatch, tiny("llama"), tok, PROMPTS, WORDS)
    packed = tiny("llama")
    assert use_packed_attention(packed)
    for model in (tiny("llama", attn="eager"), packed):
        got = shared(monkeypatch, model, tok, PROMPTS, WORDS)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_shared_prompt_under_bf16_autocast(monkeypatch, tok, attn):
    """Under autocast (continual sequences score in train.precision) the masks still fit the
    attention; bf16 rounding only."""
    model = tiny("llama", attn=attn)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = shared(monkeypatch, model, tok, PROMPTS, WORDS)
        want = separate(monkeypatch, model, tok, PROMPTS, WORDS)
    torch.testing.assert_close(got, want, atol=0.1, rtol=0.01)


def test_records_and_truncated_prompts(monkeypatch, tok):
    """Alpaca records as training renders them; prompts longer than max_length keep their end, cut
    at a different token for words of different lengths (so little or nothing is shared)."""
    model = tiny("llama")
    records = [{"instruction": "sentence :", "input": p, "output": "x"} for p in PROMPTS]
    for kw in ({"template": "alpaca"}, {"max_length": 9}, {"max_length": 6, "batch_size": 2}):
        want = separate(monkeypatch, model, tok, records, WORDS, **kw)
        got = shared(monkeypatch, model, tok, records, WORDS, **kw)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_tree_row_layout():
    """The common prefix once, then each sequence's own tokens at its own positions; a scored
    token inside the prefix is predicted from the prefix."""
    ign = -100
    row = tree_row(
        [
            {"input_ids": [5, 7, 8, 9, 6], "labels": [ign, ign, ign, 9, 6]},
            {"input_ids": [5, 7, 8, 6], "labels": [ign, ign, 8, 6]},
        ],
        first_slot=10,
    )
    assert row.ids == [5, 7, 8, 9, 6, 6]
    assert row.positions == [0, 1, 2, 3, 4, 3]
    assert row.branch == [0, 0, 0, 1, 1, 2]
    assert row.targets == [(2, 9, 10), (3, 6, 10), (1, 8, 11), (2, 6, 11)]


def test_rule_for_sharing_the_prompt(tok):
    llama = tiny("llama")
    assert can_share_prompt(llama, 10_000)
    fake = SimpleNamespace(forward=llama.forward)
    for change in (
        {"_attn_implementation": "flash_attention_2"},  # no tree masks
        {"model_type": "bloom"},  # ALiBi from row indices
        {"is_encoder_decoder": True},
        {"layer_types": ["full_attention", "linear_attention"]},
    ):
        fake.config = SimpleNamespace(**(llama.config.to_dict() | change))
        fake.config._attn_implementation = change.get("_attn_implementation", "sdpa")
        assert not can_share_prompt(fake, 10)
    # Mistral slides without config.layer_types: exact only while nothing is longer than the window
    mistral = tiny("mistral", window=8)
    assert can_share_prompt(mistral, 8) and not can_share_prompt(mistral, 9)
    assert can_share_prompt(tiny("gemma3", window=8), 9)  # a mask per layer type


def test_fallback_scores_mistral_past_its_window(monkeypatch, tok):
    """Mistral with sequences longer than its window is scored as separate sequences."""
    model = tiny("mistral", window=4)
    calls = []
    monkeypatch.setattr(
        scoring, "score_tree_rows", lambda *a, **k: calls.append(1) or pytest.fail("tree")
    )
    got = score_label_set(model, tok, PROMPTS, WORDS)
    assert got.shape == (5, 4) and not calls
    short = tiny("mistral", window=64)
    monkeypatch.undo()
    torch.testing.assert_close(
        shared(monkeypatch, short, tok, PROMPTS, WORDS),
        separate(monkeypatch, short, tok, PROMPTS, WORDS),
        atol=1e-5,
        rtol=0,
    )


def test_batches_fit_the_token_budget(monkeypatch, tok):
    """A forward holds about batch_size sequences' tokens: several prompts' rows per forward, and
    one row alone when it is longer than the budget."""
    model = tiny("llama")
    widths = []
    forward = sharedprompt._batch_log_probs
    monkeypatch.setattr(
        sharedprompt,
        "_batch_log_probs",
        lambda m, rows, *a: widths.append(len(rows)) or forward(m, rows, *a),
    )
    score_label_set(model, tok, PROMPTS, WORDS, batch_size=16)
    assert sum(widths) == len(PROMPTS) and len(widths) < len(PROMPTS)
    widths.clear()
    score_label_set(model, tok, PROMPTS, WORDS, batch_size=1)
    assert widths == [1] * len(PROMPTS)
    assert score_label_set(model, tok, [], WORDS).shape == (0, len(WORDS))

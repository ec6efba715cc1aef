"""Tiny tokenizers and models for tests: built in process, no network, a few milliseconds each.

The tokenizer is a whitespace WordLevel tokenizer over a fixed English vocabulary, so token ids are
predictable (``tokenizer("the cat")`` is ``[CLS] the cat [SEP]`` for ``kind="bert"``). The models
are the real transformers architectures (BERT, Llama, GPT-2, T5) at hidden size 32 with 2 layers,
so adapters, losses and loops run the same code paths as on the embedded pretrained models.

Example::

    path = save_tiny_model(tmp_path / "bert", "bert", "sequence_classification", num_labels=3)
    model = load_model(path, "sequence_classification", num_labels=3)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (
    AutoModel,
    BertConfig,
    GPT2Config,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    T5Config,
)

from tunesmith.tasks import task_kind

__all__ = [
    "ARCHS",
    "mirror_in_hub_cache",
    "NER_TAGS",
    "SENT_LABELS",
    "SPECIAL_TOKENS",
    "TINY_WORDS",
    "save_tiny_model",
    "tiny_bert_backbone",
    "tiny_config",
    "tiny_tokenizer",
    "write_st_pooling",
]

# Fixed ids: the special tokens come first, in this order, in every tiny vocabulary.
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>"]
PAD_ID, UNK_ID, CLS_ID, SEP_ID, MASK_ID, BOS_ID, EOS_ID = range(len(SPECIAL_TOKENS))

# ~200 common English words, digits, punctuation and chat roles (lowercase: the normaliser
# lowercases input, and the Whitespace pre-tokenizer splits punctuation into its own tokens).
TINY_WORDS: list[str] = """
the of and to a in is it you that he was for on are with as i his they be at one have this
from or had by not word but what some we can out other were all there when up use your how said
an each she which do their time if will way about many then them write would like so these her
long make thing see him two has look more day could go come did number sound no most people my
over know water than call first who may down side been now find any new work part take get place
made live where after back little only round man year came show every good me give our under name
very through just form great think say help low line before turn cause same mean differ move
right boy old too does tell sentence set three want air well also play small end put home read
hand port large spell add even land here must big high such follow act why ask men change went
light kind off need house picture try us again animal point mother world near build self earth
father cat dog bad happy sad love hate movie film book yes positive negative neutral question
answer hi hello user assistant system
0 1 2 3 4 5 6 7 8 9 . , ! ? : ; ' " - ( )
""".split()

# Chat template for kind="causal": "<s> user : hi </s> assistant : hello </s>". Like Llama's
# template it emits bos itself, so tokenise rendered chats with add_special_tokens=False.
_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ message['role'] }} : {{ message['content'] }} </s> "
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant : {% endif %}"
)

_KINDS = ("bert", "causal", "seq2seq")


def tiny_tokenizer(words: list[str] | None = None, kind: str = "bert") -> PreTrainedTokenizerFast:
    """A lowercase whitespace WordLevel tokenizer over :data:`TINY_WORDS` (+ ``words``).

    Args:
        words: extra words appended to the built-in vocabulary (lowercased, duplicates dropped).
        kind: ``"bert"`` wraps text as ``[CLS] a [SEP]`` / ``[CLS] a [SEP] b [SEP]`` with
            token_type_ids; ``"causal"`` prefixes ``<s>`` (bos/eos ``<s>``/``</s>``, has a
            ``chat_template``); ``"seq2seq"`` appends ``</s>`` (T5 style).

    Every kind has ``[PAD]`` (id 0) as pad token, ``[UNK]`` (id 1) as unknown token, and pads on
    the right. Vocabulary size is ``len(tokenizer)``.
    """
    if kind not in _KINDS:
        raise ValueError(f"unknown tiny tokenizer kind {kind!r}; choose one of {list(_KINDS)}")
    vocab: dict[str, int] = {}
    for token in [*SPECIAL_TOKENS, *TINY_WORDS, *(w.lower() for w in words or [])]:
        vocab.setdefault(token, len(vocab))

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    backend.post_processor = _post_processor(kind)

    special: dict[str, Any] = {"pad_token": "[PAD]", "unk_token": "[UNK]"}
    if kind == "bert":
        special |= {"cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
        input_names = ["input_ids", "token_type_ids", "attention_mask"]
    elif kind == "causal":
        special |= {"bos_token": "<s>", "eos_token": "</s>"}
        input_names = ["input_ids", "attention_mask"]
    else:
        special |= {"eos_token": "</s>"}
        input_names = ["input_ids", "attention_mask"]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_input_names=input_names,
        padding_side="right",
        model_max_length=128,
        **special,
    )
    if kind == "causal":
        tokenizer.chat_template = _CHAT_TEMPLATE
    return tokenizer


def _post_processor(kind: str) -> processors.TemplateProcessing:
    if kind == "bert":
        return processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", CLS_ID), ("[SEP]", SEP_ID)],
        )
    if kind == "causal":
        return processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B:1", special_tokens=[("<s>", BOS_ID)]
        )
    return processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B:1 </s>:1", special_tokens=[("</s>", EOS_ID)]
    )


ARCHS: dict[str, dict[str, Any]] = {
    # arch: tokenizer kind and the tasks save_tiny_model builds for it
    "bert": {"kind": "bert", "tasks": ("sequence_classification", "token_classification")},
    "llama": {"kind": "causal", "tasks": ("causal_lm", "sequence_classification")},
    "gpt2": {"kind": "causal", "tasks": ("causal_lm", "sequence_classification")},
    "t5": {"kind": "seq2seq", "tasks": ("seq2seq",)},
}


def tiny_config(arch: str, vocab_size: int, **kw: Any) -> PretrainedConfig:
    """A config for a tiny model (hidden 32, 2 layers, intermediate 64, 128 positions).

    Special token ids follow :func:`tiny_tokenizer` (pad 0, bos 5, eos 6). ``kw`` overrides any
    field, e.g. ``tiny_config("bert", 300, num_labels=3)``.
    """
    ids = {"pad_token_id": PAD_ID, "bos_token_id": BOS_ID, "eos_token_id": EOS_ID}
    if arch == "bert":
        base = dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=128,
            pad_token_id=PAD_ID,
        )
        return BertConfig(vocab_size=vocab_size, **(base | kw))
    if arch == "llama":
        base = dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,  # grouped-query attention, as in SmolLM2
            intermediate_size=64,
            max_position_embeddings=128,
            tie_word_embeddings=True,  # as in SmolLM2
            **ids,
        )
        return LlamaConfig(vocab_size=vocab_size, **(base | kw))
    if arch == "gpt2":
        base = dict(n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=128, **ids)
        return GPT2Config(vocab_size=vocab_size, **(base | kw))
    if arch == "t5":
        base = dict(
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=32,
            n_positions=128,
            feed_forward_proj="relu",
            pad_token_id=PAD_ID,
            eos_token_id=EOS_ID,
            decoder_start_token_id=PAD_ID,  # T5 starts decoding from pad
        )
        return T5Config(vocab_size=vocab_size, **(base | kw))
    raise ValueError(f"unknown tiny arch {arch!r}; choose one of {sorted(ARCHS)}")


NER_TAGS = ("B-PER", "I-PER", "B-LOC", "I-LOC", "O")
"""Tag set of the tiny multi-head test model's token-classification task (``ner``)."""
SENT_LABELS = ("negative", "neutral", "positive")
"""Label set of the tiny multi-head test model's sentence task (``sent``)."""


def tiny_bert_backbone(seed: int = 0) -> PreTrainedModel:
    """A tiny BERT encoder without a head (for per-task heads), initialised from ``seed`` without
    touching the global RNG."""
    config = tiny_config("bert", len(tiny_tokenizer(kind="bert")))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModel.from_config(config)


def save_tiny_model(
    path: str | Path, arch: str, task: str, num_labels: int = 2, seed: int = 0
) -> Path:
    """Save a random tiny ``arch`` model with a ``task`` head and its tokenizer into ``path``.

    The folder is a normal Hugging Face folder, usable as ``model: <path>`` in a recipe. Weights
    depend only on ``seed`` (the global torch RNG is left untouched).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown tiny arch {arch!r}; choose one of {sorted(ARCHS)}")
    if task not in ARCHS[arch]["tasks"]:
        raise ValueError(f"tiny {arch} supports tasks {list(ARCHS[arch]['tasks'])}, not {task!r}")
    tokenizer = tiny_tokenizer(kind=ARCHS[arch]["kind"])
    kw: dict[str, Any] = {}
    kind = task_kind(task)
    if kind.classification:
        kw = {
            "num_labels": num_labels,
            "id2label": {i: f"LABEL_{i}" for i in range(num_labels)},
            "label2id": {f"LABEL_{i}": i for i in range(num_labels)},
        }
    config = tiny_config(arch, len(tokenizer), **kw)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = kind.auto_class.from_config(config)
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def write_st_pooling(path: str | Path, mode: str = "mean") -> Path:
    """Make ``path`` look like a sentence-transformers checkpoint pooled by ``mode`` (``mean``,
    ``cls`` or another ``pooling_mode_*`` flag): ``modules.json`` + ``1_Pooling/config.json``, as
    the embedded all-MiniLM-L6-v2 folder has them. Returns ``path``."""
    path = Path(path)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    (path / "modules.json").write_text(json.dumps(modules))
    (path / "1_Pooling").mkdir(exist_ok=True)
    flags = {f"pooling_mode_{m}": False for m in ("cls_token", "mean_tokens", "max_tokens")}
    named = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token"}
    flags[named.get(mode, mode)] = True
    (path / "1_Pooling" / "config.json").write_text(json.dumps(flags))
    return path


def mirror_in_hub_cache(cache: str | Path, repo_id: str, folder: str | Path) -> Path:
    """Make model folder ``folder`` look like hub model ``repo_id`` downloaded into the hub cache
    ``cache`` (``models--owner--name/refs/main`` + ``snapshots/<rev>/`` with links to the files),
    so ``from_pretrained(repo_id, cache_dir=cache)`` -- or ``HF_HUB_CACHE=cache`` -- finds it
    offline. Returns the snapshot folder."""
    repo = Path(cache) / f"models--{repo_id.replace('/', '--')}"
    revision = "0" * 40
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(revision)
    for file in Path(folder).iterdir():
        if not (snapshot / file.name).exists():
            (snapshot / file.name).symlink_to(file.resolve())
    return snapshot

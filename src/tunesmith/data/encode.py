"""Turn records into token ids for each task type (plain Python lists; tensors come at collate time).

Why: this is the only place that knows how a task maps text to ``input_ids`` / ``labels``, so the
training loop, evaluation and prediction share one definition. These are the tokenisation
primitives; each task kind (:mod:`tunesmith.tasks`) wires its encoder to the recipe's data keys.
Each encoder returns ``list[dict]`` with ``input_ids`` (T,), ``attention_mask`` (T,) and, when the
record is labelled, ``labels``: an ``int`` (sequence classification) or a list with ``-100``
wherever no loss is taken (token classification: (T,); causal LM: (T,); seq2seq: (T_target,)).
Tokenisation is batched (fast tokenizers do the work in Rust).

Here: the label-id tasks (sequence and token classification, seq2seq) and the helpers every encoder
shares (chunked tokenizer calls, field checks that name the record). Causal LM, with its prompt
templates, is :mod:`tunesmith.data.lmencode`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from tunesmith.data.labels import LabelVocab
from tunesmith.errors import DataError, ModelError

IGNORE_INDEX = -100
"""Label id that the loss skips (torch ``cross_entropy`` default ``ignore_index``)."""

_CHUNK = 1000  # records per tokenizer call

Example = dict[str, Any]


def encode_classification(
    records: Sequence[dict[str, Any]],
    tokenizer: Any,
    vocab: LabelVocab,
    *,
    text_key: str = "text",
    text_pair_key: str | None = None,
    label_key: str = "label",
    max_length: int = 128,
    where: str = "",
) -> list[Example]:
    """Sequence (pair) classification: ``labels`` is the class id; unlabelled records get none.

    ``token_type_ids`` are kept when the tokenizer makes them (BERT sentence pairs need them).
    """
    out: list[Example] = []
    for start, chunk in _chunks(records):
        texts = [_text(r, text_key, _place(where, start + i)) for i, r in enumerate(chunk)]
        pairs = None
        if text_pair_key:
            pairs = [_text(r, text_pair_key, _place(where, start + i)) for i, r in enumerate(chunk)]
        enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        for i, rec in enumerate(chunk):
            ex = _ids(enc, i)
            if rec.get(label_key) is not None:
                ex["labels"] = vocab.encode(rec[label_key], _place(where, start + i))
            out.append(ex)
    return out


def encode_token_classification(
    records: Sequence[dict[str, Any]],
    tokenizer: Any,
    vocab: LabelVocab,
    *,
    tokens_key: str = "tokens",
    tags_key: str = "tags",
    max_length: int = 128,
    label_all_subtokens: bool = False,
    where: str = "",
) -> list[Example]:
    """Tagging: one tag per word, placed on the word's first sub-token.

    Special tokens and later sub-tokens get ``-100``; with ``label_all_subtokens`` later
    sub-tokens repeat the tag (``B-x`` becomes ``I-x`` when that tag exists).
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            "token classification needs a fast (Rust) tokenizer to align tags with sub-tokens "
            "(word_ids); load the model's tokenizer.json or pick a model that has one"
        )
    out: list[Example] = []
    for start, chunk in _chunks(records):
        words = []
        for i, rec in enumerate(chunk):
            toks = rec.get(tokens_key)
            if not isinstance(toks, list) or not toks:
                raise DataError(
                    f"{_place(where, start + i)}: {tokens_key!r} must be a non-empty list"
                )
            tags = rec.get(tags_key)
            if tags is not None and len(tags) != len(toks):
                raise DataError(
                    f"{_place(where, start + i)}: {len(toks)} tokens but {len(tags)} tags; "
                    "every token needs exactly one tag"
                )
            words.append([str(t) for t in toks])
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
        for i, rec in enumerate(chunk):
            ex = _ids(enc, i)
            tags = rec.get(tags_key)
            if tags is not None:
                place = _place(where, start + i)
                ex["labels"] = _align(enc.word_ids(i), tags, vocab, label_all_subtokens, place)
            out.append(ex)
    return out


def _align(
    word_ids: list[int | None], tags: list[Any], vocab: LabelVocab, all_sub: bool, place: str
) -> list[int]:
    ids = [vocab.encode(t, place) for t in tags]
    labels: list[int] = []
    prev: int | None = None
    for w in word_ids:
        if w is None:
            labels.append(IGNORE_INDEX)
        elif w != prev:
            labels.append(ids[w])
        elif all_sub:
            tag = str(tags[w])
            inside = "I-" + tag[2:]
            labels.append(
                vocab.label2id[inside] if tag.startswith("B-") and inside in vocab else ids[w]
            )
        else:
            labels.append(IGNORE_INDEX)
        prev = w
    return labels


def encode_seq2seq(
    records: Sequence[dict[str, Any]],
    tokenizer: Any,
    *,
    source_key: str = "source",
    target_key: str = "target",
    prefix: str = "",
    max_source_length: int = 256,
    max_target_length: int = 128,
    where: str = "",
) -> list[Example]:
    """Encoder-decoder: ``prefix + source`` -> ``input_ids``; target ids ending in EOS -> ``labels``.

    Records without a target (prediction input) get no ``labels``.
    """
    eos = tokenizer.eos_token_id
    out: list[Example] = []
    for start, chunk in _chunks(records):
        sources = [
            prefix + _text(r, source_key, _place(where, start + i)) for i, r in enumerate(chunk)
        ]
        enc = tokenizer(sources, truncation=True, max_length=max_source_length)
        has_target = [r.get(target_key) is not None for r in chunk]
        targets = [str(r[target_key]) for r, t in zip(chunk, has_target, strict=True) if t]
        tgt_ids = iter(
            tokenizer(text_target=targets, truncation=True, max_length=max_target_length)[
                "input_ids"
            ]
            if targets
            else []
        )
        for i, labelled in enumerate(has_target):
            ex = _ids(enc, i)
            if labelled:
                labels = list(next(tgt_ids))
                if eos is not None and (not labels or labels[-1] != eos):
                    labels = labels[: max_target_length - 1] + [eos]
                ex["labels"] = labels
            out.append(ex)
    return out


def _chunks(items: Sequence[Any]) -> Iterator[tuple[int, Sequence[Any]]]:
    for start in range(0, len(items), _CHUNK):
        yield start, items[start : start + _CHUNK]


def _batch_ids(tokenizer: Any, texts: list[str], add_special_tokens: bool) -> list[list[int]]:
    out: list[list[int]] = []
    for _, chunk in _chunks(texts):
        enc = tokenizer(list(chunk), add_special_tokens=add_special_tokens)
        out.extend(list(x) for x in enc["input_ids"])
    return out


def _ids(enc: Any, i: int) -> Example:
    ex: Example = {
        "input_ids": list(enc["input_ids"][i]),
        "attention_mask": list(enc["attention_mask"][i]),
    }
    if "token_type_ids" in enc:
        ex["token_type_ids"] = list(enc["token_type_ids"][i])
    return ex


def _text(rec: dict[str, Any], key: str, place: str) -> str:
    if key not in rec:
        raise DataError(f"{place}: no field {key!r} (fields: {sorted(rec)}); set the *_key option")
    value = rec[key]
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{place}: field {key!r} is empty or not text: {value!r:.40}")
    return value


def _place(where: str, i: int) -> str:
    return f"{where} example {i}" if where else f"example {i}"

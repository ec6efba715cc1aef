"""Turn records into token ids for each task type (plain Python lists; tensors come at collate time).

Why: this is the only place that knows how a task maps text to ``input_ids`` / ``labels``, so the
training loop, evaluation and prediction share one definition. These are the tokenisation
primitives; each task kind (:mod:`tunesmith.tasks`) wires its encoder to the recipe's data keys. Each encoder returns
``list[dict]`` with ``input_ids`` (T,), ``attention_mask`` (T,) and, when the record is labelled,
``labels``: an ``int`` (sequence classification) or a list with ``-100`` wherever no loss is taken
(token classification: (T,); causal LM: (T,); seq2seq: (T_target,)).
Tokenisation is batched (fast tokenizers do the work in Rust).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from tunesmith.data.labels import LabelVocab
from tunesmith.errors import ConfigError, DataError, ModelError

IGNORE_INDEX = -100
"""Label id that the loss skips (torch ``cross_entropy`` default ``ignore_index``)."""

TEMPLATES = ("chat", "alpaca", "plain", "raw")
ALPACA_HEADER = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
ALPACA_HEADER_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request."
)
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


def build_prompt(
    record: dict[str, Any],
    tokenizer: Any,
    template: str = "chat",
    prompt_key: str | None = None,
    system: str | None = None,
) -> str:
    """The prompt text the model sees before its response (training and generation alike).

    The user turn is ``record[prompt_key]``, or alpaca style ``instruction`` (+ ``"\\n\\n" + input``).
    ``chat`` renders it with the tokenizer's chat template (generation prompt added); ``alpaca``
    uses the classic ``### Instruction: / ### Response:`` layout; ``plain`` is ``prompt + "\\n"``;
    ``raw`` is the prompt text as it is (TRL's prompt/completion text: response appended directly).
    """
    if prompt_key is not None:
        if record.get(prompt_key) in (None, ""):
            raise DataError(f"missing or empty prompt field {prompt_key!r} in {_brief(record)}")
        user, instruction, inp = str(record[prompt_key]), None, ""
    else:
        if not record.get("instruction"):
            raise DataError(
                f"no 'instruction' field in {_brief(record)}; set prompt_key to the field that "
                "holds the prompt, or text_key for plain language modelling (records with "
                "messages, conversations or prompt + completion are read as chat: chat_format)"
            )
        instruction, inp = str(record["instruction"]), str(record.get("input") or "")
        user = instruction + (f"\n\n{inp}" if inp else "")
    if template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                "template", "the tokenizer has no chat template", "use template: alpaca (or plain)"
            )
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": user})
        return str(
            tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        )
    if template == "alpaca":
        if instruction is not None and inp:
            head = system or ALPACA_HEADER_INPUT
            body = f"### Instruction:\n{instruction}\n\n### Input:\n{inp}"
        else:
            head, body = system or ALPACA_HEADER, f"### Instruction:\n{user}"
        return f"{head}\n\n{body}\n\n### Response:\n"
    if template == "plain":
        return (f"{system}\n\n" if system else "") + user + "\n"
    if template == "raw":
        return (f"{system}\n\n" if system else "") + user
    raise ConfigError(
        "template", f"unknown prompt template {template!r}", f"choose one of {TEMPLATES}"
    )


def encode_causal_lm(
    records: Sequence[dict[str, Any]],
    tokenizer: Any,
    *,
    template: str = "chat",
    prompt_key: str | None = None,
    response_key: str = "output",
    text_key: str | None = None,
    system: str | None = None,
    mask_prompt: bool = True,
    max_length: int = 512,
    where: str = "",
) -> list[Example]:
    """Causal LM: ``labels`` equal ``input_ids`` except ``-100`` over the prompt (``mask_prompt``).

    The model shifts labels itself, so loss falls on the response and the closing EOS only.
    Sequences are cut to ``max_length`` from the right; an example whose response is cut away
    entirely is dropped (one warning with the count). ``text_key`` switches to plain language
    modelling on that field (loss on every token).
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ModelError("the tokenizer has no eos_token; set one so the model learns to stop")
    if text_key is not None:
        texts = [_text(r, text_key, _place(where, i)) for i, r in enumerate(records)]
        full = _batch_ids(tokenizer, texts, add_special_tokens=True)
        plain = (_lm_example(_with_eos(ids, eos), 0, max_length) for ids in full)
        return [ex for ex in plain if ex is not None]

    add_special = prompt_adds_special_tokens(template)
    prompts, responses = _prompts_and_responses(
        records, tokenizer, template, prompt_key, response_key, system, where
    )
    fulls = [p + r for p, r in zip(prompts, responses, strict=True)]
    prompt_ids = _batch_ids(tokenizer, prompts, add_special_tokens=add_special)
    out: list[Example] = []
    dropped = 0
    for start, chunk in _chunks(fulls):
        enc = tokenizer(
            list(chunk),
            add_special_tokens=add_special,
            return_offsets_mapping=bool(getattr(tokenizer, "is_fast", False)),
        )
        for i in range(len(chunk)):
            ids = _with_eos(list(enc["input_ids"][i]), eos)
            offsets = enc["offset_mapping"][i] if "offset_mapping" in enc else None
            n_prompt = _prompt_len(prompt_ids[start + i], ids, offsets, len(prompts[start + i]))
            ex = _lm_example(ids, n_prompt if mask_prompt else 0, max_length)
            if ex is None:
                dropped += 1
            else:
                out.append(ex)
    if dropped:
        warnings.warn(
            f"{where or 'causal_lm data'}: dropped {dropped} example(s) whose prompt fills "
            f"max_length={max_length} (no response token left); raise max_length or shorten prompts",
            stacklevel=2,
        )
    return out


def _prompts_and_responses(
    records: Sequence[dict[str, Any]],
    tokenizer: Any,
    template: str,
    prompt_key: str | None,
    response_key: str,
    system: str | None,
    where: str,
) -> tuple[list[str], list[str]]:
    """Each record's prompt text (in ``template``) and response; errors name the record."""
    prompts, responses = [], []
    for i, rec in enumerate(records):
        try:
            prompts.append(build_prompt(rec, tokenizer, template, prompt_key, system))
        except DataError as e:
            raise DataError(f"{_place(where, i)}: {e}") from None
        response = rec.get(response_key)
        if not isinstance(response, str):
            raise DataError(
                f"{_place(where, i)}: missing response field {response_key!r} "
                f"(fields: {sorted(rec)}); set response_key"
            )
        responses.append(response)
    return prompts, responses


def prompt_adds_special_tokens(template: str) -> bool:
    """Whether prompts in ``template`` are tokenised with the tokenizer's special tokens (BOS).

    Chat templates write their own BOS/turn markers; the other templates rely on the tokenizer.
    """
    return template != "chat"


def encode_prompt(
    text: str,
    tokenizer: Any,
    *,
    template: str = "chat",
    prompt_key: str | None = None,
    text_key: str | None = None,
    system: str | None = None,
) -> list[int]:
    """Token ids of a generation prompt for ``text``, exactly as :func:`encode_causal_lm` tokenises
    the prompt part of a training example (same template, system prompt and special tokens).

    ``text`` is the user turn (``record[prompt_key]``, or the alpaca ``instruction``); with
    ``text_key`` (plain language modelling) it is a prefix to continue, tokenised as training text.
    """
    if text_key is not None:
        return _batch_ids(tokenizer, [text], add_special_tokens=True)[0]
    record = {prompt_key or "instruction": text}
    prompt = build_prompt(record, tokenizer, template, prompt_key, system)
    add_special = prompt_adds_special_tokens(template)
    return _batch_ids(tokenizer, [prompt], add_special_tokens=add_special)[0]


def _prompt_len(prompt_ids: list[int], ids: list[int], offsets: Any, prompt_chars: int) -> int:
    """How many leading tokens of ``ids`` belong to the prompt."""
    if ids[: len(prompt_ids)] == prompt_ids:
        return len(prompt_ids)
    if offsets is not None:
        # Token merges across the prompt/response seam: the response starts at the first real
        # token that ends past the prompt text (special tokens have empty offsets).
        for k, (s, e) in enumerate(offsets):
            if e > s and e > prompt_chars:
                return k
        return len(ids) - 1  # all text is prompt: only the EOS is a response token
    n = 0  # slow tokenizer: longest common prefix
    while n < min(len(ids), len(prompt_ids)) and ids[n] == prompt_ids[n]:
        n += 1
    return n


def _with_eos(ids: list[int], eos: int) -> list[int]:
    return ids if ids and ids[-1] == eos else ids + [eos]


def _lm_example(ids: list[int], n_prompt: int, max_length: int) -> Example | None:
    ids = ids[:max_length]
    labels = [IGNORE_INDEX] * min(n_prompt, len(ids)) + ids[n_prompt:]
    if all(x == IGNORE_INDEX for x in labels):
        return None
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


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


def _brief(record: dict[str, Any]) -> str:
    return f"record with fields {sorted(record)}"

"""Causal-LM records in any chat format -> token ids with a loss mask (plain lists).

Why: a multi-turn conversation trains on every assistant turn and on nothing else, and the turn
boundaries must be found in the tokens the model actually sees: the conversation rendered by the
model's own chat template. As TRL and axolotl do, the mask is built by rendering incrementally:
for each trained turn ``k``, the turns before it with the generation prompt (``before``), and the
turns up to and including it (``upto``); the turn's tokens are those between the two prefixes.
Both renderings must be prefixes of the whole conversation's rendering (a template that rewrites
earlier turns, e.g. drops past reasoning, is not *prefix-stable* and fails with a clear error),
and their token ids are compared with the conversation's as prefixes (a token merged across a
seam falls back to character offsets, as :func:`tunesmith.data.lmencode.encode_causal_lm` does).
Non-conversational records (alpaca, prompt/completion text, plain text) go to
:func:`~tunesmith.data.lmencode.encode_causal_lm` with the fields of their format.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from jinja2.exceptions import TemplateError

from tunesmith.data.chatformats import (
    Conversation,
    check_records,
    conversation,
    is_conversational,
    split_format,
)
from tunesmith.data.encode import IGNORE_INDEX, Example, _batch_ids, _chunks, _place
from tunesmith.data.lmencode import _prompt_len, encode_causal_lm
from tunesmith.errors import ConfigError, DataError, ModelError

__all__ = ["conversation_mask", "encode_conversations", "encode_lm"]


def encode_lm(
    records: Sequence[dict[str, Any]],
    tokenizer: Any,
    *,
    chat_format: str = "auto",
    template: str = "chat",
    prompt_key: str | None = None,
    response_key: str = "output",
    text_key: str | None = None,
    system: str | None = None,
    mask_prompt: bool = True,
    max_length: int = 512,
    where: str = "",
) -> list[Example]:
    """Causal-LM examples from records in ``chat_format`` (``auto``: detected from the first
    record, see :func:`~tunesmith.data.chatformats.detect_format`). Conversations (``messages``,
    sharegpt, prompt/completion turns) train on their assistant turns through the chat template;
    prompt/completion text is the prompt -> response pair ``prompt`` -> ``completion`` in
    ``template``; alpaca reads ``prompt_key`` (or ``instruction`` + ``input``) -> ``response_key``;
    plain trains on every token of ``text_key`` (default ``text``)."""
    fmt = split_format(records, chat_format, prompt_key, text_key)
    if is_conversational(fmt, records):
        return encode_conversations(
            records,
            tokenizer,
            fmt=fmt,
            template=template,
            system=system,
            mask_prompt=mask_prompt,
            max_length=max_length,
            where=where,
        )
    if fmt == "plain":
        text_key = text_key or "text"
    else:
        text_key = None
    if fmt == "prompt_completion":
        check_records(records, fmt, None, None, lambda rec, i: _place(where, i))
        prompt_key, response_key = "prompt", "completion"
    return encode_causal_lm(
        records,
        tokenizer,
        template=template,
        prompt_key=prompt_key,
        response_key=response_key,
        text_key=text_key,
        system=system,
        mask_prompt=mask_prompt,
        max_length=max_length,
        where=where,
    )


def encode_conversations(
    records: Sequence[dict[str, Any]],
    tokenizer: Any,
    *,
    fmt: str = "messages",
    template: str = "chat",
    system: str | None = None,
    mask_prompt: bool = True,
    max_length: int = 512,
    where: str = "",
) -> list[Example]:
    """Conversations (records in ``fmt``) -> ``input_ids`` / ``attention_mask`` / ``labels``,
    labels ``-100`` outside the trained turns (everywhere trained when not ``mask_prompt``).

    ``system`` becomes the first turn of a conversation that has no system turn. Rows are cut to
    ``max_length`` from the right, ids and labels together; a conversation with no trained token
    left is dropped (one warning with the count). The template writes its own special tokens
    (BOS, turn ends), so no EOS is appended.
    """
    _require_chat_template(tokenizer, template)
    convs = [
        conversation(rec, fmt, _place(where, i)).with_system(system)
        for i, rec in enumerate(records)
    ]
    out: list[Example] = []
    dropped = 0
    for start, chunk in _chunks(convs):
        places = [_place(where, start + i) for i in range(len(chunk))]
        for ids, keep in _masks(tokenizer, list(chunk), places):
            labels = [
                t if k or not mask_prompt else IGNORE_INDEX for t, k in zip(ids, keep, strict=True)
            ]
            ids, labels = ids[:max_length], labels[:max_length]
            if all(x == IGNORE_INDEX for x in labels):
                dropped += 1
                continue
            out.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    if dropped:
        warnings.warn(
            f"{where or 'causal_lm data'}: dropped {dropped} conversation(s) with no assistant "
            f"token within max_length={max_length}; raise max_length or shorten the conversations",
            stacklevel=2,
        )
    return out


def conversation_mask(
    tokenizer: Any, conv: Conversation, place: str = "conversation"
) -> tuple[list[int], list[bool]]:
    """(token ids of ``conv`` rendered by the chat template, whether each token is trained)."""
    return _masks(tokenizer, [conv], [place])[0]


def _masks(
    tokenizer: Any, convs: list[Conversation], places: list[str]
) -> list[tuple[list[int], list[bool]]]:
    """Ids and trained-token flags of each conversation (tokenised in one batch)."""
    rendered = [_render_turns(tokenizer, c, p) for c, p in zip(convs, places, strict=True)]
    fast = bool(getattr(tokenizer, "is_fast", False))
    enc = tokenizer(
        [full for full, _ in rendered], add_special_tokens=False, return_offsets_mapping=fast
    )
    bounds = [text for _, spans in rendered for pair in spans for text in pair]
    bound_ids = iter(_batch_ids(tokenizer, bounds, add_special_tokens=False))
    out = []
    for i, (_, spans) in enumerate(rendered):
        ids = list(enc["input_ids"][i])
        offsets = enc["offset_mapping"][i] if "offset_mapping" in enc else None
        keep = [False] * len(ids)
        for before, upto in spans:
            start = _prompt_len(next(bound_ids), ids, offsets, len(before))
            end = _prompt_len(next(bound_ids), ids, offsets, len(upto))
            keep[start:end] = [True] * (end - start)
        out.append((ids, keep))
    return out


def _render_turns(
    tokenizer: Any, conv: Conversation, place: str
) -> tuple[str, list[tuple[str, str]]]:
    """The whole conversation's text, and per trained turn its (before, upto) prefixes; each is
    checked to be a prefix of the next (the template is prefix-stable on this conversation)."""
    msgs = conv.messages
    full = _render(tokenizer, msgs, False, place)
    spans = []
    for k in conv.trained:
        before = _render(tokenizer, msgs[:k], True, place)
        upto = _render(tokenizer, msgs[: k + 1], False, place)
        _check_prefix(
            before, upto, f"up to turn {k} with the generation prompt", f"turn {k}", place
        )
        _check_prefix(upto, full, f"up to turn {k}", "the whole conversation", place)
        spans.append((before, upto))
    return full, spans


def _render(tokenizer: Any, messages: list[dict[str, str]], gen: bool, place: str) -> str:
    try:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=gen, tokenize=False)
    except TemplateError as e:
        raise DataError(f"{place}: the chat template refused the conversation: {e}") from None
    return str(text)


def _check_prefix(part: str, whole: str, part_name: str, whole_name: str, place: str) -> None:
    if whole.startswith(part):
        return
    pairs = enumerate(zip(part, whole, strict=False))
    n = next((i for i, (a, b) in pairs if a != b), min(len(part), len(whole)))
    raise ModelError(
        f"{place}: the chat template is not prefix-stable: the conversation rendered {part_name} "
        f"is not a prefix of its rendering with {whole_name} (they differ at character {n}: "
        f"{part[n : n + 30]!r} vs {whole[n : n + 30]!r}); the loss mask is built turn by turn "
        "from such prefixes. Use a prefix-stable chat template (the tokenizer's chat_template), "
        "or give each assistant answer as its own prompt/completion record"
    )


def _require_chat_template(tokenizer: Any, template: str) -> None:
    if template != "chat":
        raise ConfigError(
            "data.template",
            f"conversations are rendered with the model's chat template, not {template!r}",
            "set template: chat (or use alpaca / prompt-completion text records)",
        )
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            "data.template",
            "the tokenizer has no chat template to render conversations with",
            "use a chat model, or set tokenizer.chat_template",
        )

"""The record formats of causal-LM data, told apart by their fields, and conversations checked.

Why: users come with data in the formats of the tools they know. TRL's conversational
``messages`` (a list of ``{role, content}`` turns), TRL's ``prompt`` / ``completion`` (both text,
or both lists of turns), sharegpt's ``conversations`` (``{from, value}`` turns with
``human`` / ``gpt`` / ``system``) and alpaca's ``instruction`` (+ ``input``) / ``output`` all
train the same model. This module only reads records (no tokenizer): which format a split is in
(``data.chat_format``, or detected from its first record), and each conversation as a
:class:`Conversation` (turns with the roles system / user / assistant, and which turns carry the
loss), with a :class:`~tunesmith.errors.DataError` naming the record for a malformed one.
Turning conversations into token ids and loss masks is :mod:`tunesmith.data.chatencode`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.errors import DataError

__all__ = [
    "CHAT_FORMATS",
    "ROLES",
    "Conversation",
    "check_records",
    "conversation",
    "detect_format",
    "is_conversational",
    "split_format",
]

CHAT_FORMATS = ("auto", "messages", "prompt_completion", "sharegpt", "alpaca", "plain")
"""``data.chat_format`` values; ``auto`` detects the format from a split's first record."""
ROLES = ("system", "user", "assistant")
SHAREGPT_ROLES = {
    "human": "user",
    "gpt": "assistant",
    "system": "system",
    "user": "user",
    "assistant": "assistant",
}
"""sharegpt ``from`` -> role (``user`` / ``assistant`` are accepted as themselves)."""

Record = dict[str, Any]


@dataclass(frozen=True)
class Conversation:
    """Turns as ``{"role", "content"}`` (roles in :data:`ROLES`) and the indices of the turns
    that carry the loss (every assistant turn; for prompt/completion, the completion's turns)."""

    messages: list[dict[str, str]]
    trained: tuple[int, ...]

    def with_system(self, system: str | None) -> Conversation:
        """The conversation with ``system`` as its first turn when it has no system turn."""
        if not system or self.messages[0]["role"] == "system":
            return self
        head = [{"role": "system", "content": system}]
        return Conversation(head + self.messages, tuple(k + 1 for k in self.trained))


def detect_format(
    record: Record, prompt_key: str | None = None, lm_text_key: str | None = None
) -> str:
    """The format of ``record`` from its fields. ``lm_text_key`` means plain text, ``prompt_key``
    alpaca-style prompt/response fields; else ``messages``, ``conversations`` (sharegpt),
    ``prompt`` + ``completion``, and anything else is alpaca (whose reader names a missing
    ``instruction``)."""
    if lm_text_key:
        return "plain"
    if prompt_key:
        return "alpaca"
    if "messages" in record:
        return "messages"
    if "conversations" in record:
        return "sharegpt"
    if "prompt" in record and "completion" in record:
        return "prompt_completion"
    return "alpaca"


def split_format(
    records: Sequence[Record],
    chat_format: str = "auto",
    prompt_key: str | None = None,
    lm_text_key: str | None = None,
) -> str:
    """The format of a split: ``chat_format`` when given, else detected from its first record
    (one split is one format; a record that does not fit fails in :func:`conversation`)."""
    if chat_format not in CHAT_FORMATS:
        raise DataError(f"unknown chat_format {chat_format!r}; choose one of {CHAT_FORMATS}")
    if chat_format != "auto":
        return chat_format
    return detect_format(records[0], prompt_key, lm_text_key) if records else "alpaca"


def is_conversational(fmt: str, records: Sequence[Record]) -> bool:
    """Whether a split in ``fmt`` is read as conversations through the chat template:
    ``messages``, ``sharegpt``, and ``prompt_completion`` whose first prompt is a list of turns."""
    if fmt in ("messages", "sharegpt"):
        return True
    first = records[0] if records else {}
    return fmt == "prompt_completion" and isinstance(first.get("prompt"), list)


def conversation(record: Record, fmt: str, place: str) -> Conversation:
    """``record`` (in ``fmt``: messages | sharegpt | prompt_completion) as a checked
    :class:`Conversation`; a malformed one is a DataError naming ``place``."""
    if not isinstance(record, dict):
        raise DataError(f"{place}: expected a record (an object), got {record!r:.60}")
    if fmt == "prompt_completion":
        if _pc_kind(record, place) != "turns":
            raise DataError(
                f"{place}: 'prompt' and 'completion' are text here, but this split's first "
                "record has lists of turns; give every record in one split the same shape"
            )
        prompt = _turns(record["prompt"], "prompt", place, sharegpt=False)
        completion = _turns(record["completion"], "completion", place, sharegpt=False)
        for t, turn in enumerate(completion):
            if turn["role"] != "assistant":
                raise DataError(
                    f"{place}: completion[{t}] has role {turn['role']!r}; a completion holds "
                    "the assistant's turns only (put the others in 'prompt')"
                )
        trained = tuple(range(len(prompt), len(prompt) + len(completion)))
        return _checked(Conversation(prompt + completion, trained), place)
    key = "conversations" if fmt == "sharegpt" else "messages"
    if key not in record:
        raise DataError(
            f"{place}: no {key!r} field (fields: {sorted(record)}); this split is read as "
            f"{fmt} (data.chat_format, or detected from its first record)"
        )
    turns = _turns(record[key], key, place, sharegpt=fmt == "sharegpt")
    trained = tuple(k for k, turn in enumerate(turns) if turn["role"] == "assistant")
    return _checked(Conversation(turns, trained), place)


def _checked(conv: Conversation, place: str) -> Conversation:
    if not conv.trained:
        raise DataError(
            f"{place}: the conversation has no assistant turn, so nothing to learn from; "
            "give it at least one assistant (sharegpt: gpt) turn"
        )
    if conv.messages[0]["role"] == "assistant":
        raise DataError(
            f"{place}: the conversation starts with an assistant turn; it needs a user (or "
            "system) turn before the first answer"
        )
    return conv


def _turns(value: Any, key: str, place: str, sharegpt: bool) -> list[dict[str, str]]:
    """A list of turns as ``{"role", "content"}``; each malformed turn is named by its index."""
    if not isinstance(value, list) or not value:
        raise DataError(f"{place}: {key!r} must be a non-empty list of turns, got {value!r:.60}")
    role_key, text_key = ("from", "value") if sharegpt else ("role", "content")
    allowed = SHAREGPT_ROLES if sharegpt else {r: r for r in ROLES}
    out = []
    for t, turn in enumerate(value):
        at = f"{place}: {key}[{t}]"
        if not isinstance(turn, dict):
            raise DataError(f"{at} is not a turn ({{{role_key}, {text_key}}}): {turn!r:.60}")
        role, content = turn.get(role_key), turn.get(text_key)
        if role not in allowed:
            raise DataError(
                f"{at}: unknown {role_key} {role!r}; use one of {sorted(allowed)} "
                f"(fields of the turn: {sorted(turn)})"
            )
        if not isinstance(content, str) or not content.strip():
            raise DataError(f"{at}: {text_key!r} is missing, empty or not text: {content!r:.60}")
        out.append({"role": allowed[role], "content": content})
    return out


def _pc_kind(record: Record, place: str) -> str:
    """``"text"`` when prompt and completion are both strings, ``"turns"`` when both lists."""
    missing = [k for k in ("prompt", "completion") if k not in record]
    if missing:
        raise DataError(
            f"{place}: no {missing[0]!r} field (fields: {sorted(record)}); prompt/completion "
            "records need both"
        )
    kinds = {type(record["prompt"]), type(record["completion"])}
    if kinds == {str}:
        return "text"
    if kinds == {list}:
        return "turns"
    raise DataError(
        f"{place}: 'prompt' and 'completion' must both be text or both be lists of turns, "
        f"got {type(record['prompt']).__name__} and {type(record['completion']).__name__}"
    )


def check_records(
    records: Sequence[Record],
    chat_format: str,
    prompt_key: str | None,
    lm_text_key: str | None,
    place_of: Callable[[Record, int], str],
) -> str:
    """Check every record of one split in its format (before any model loads; ``place_of``
    names ``file:line``). Returns the split's format."""
    fmt = split_format(records, chat_format, prompt_key, lm_text_key)
    if is_conversational(fmt, records):
        for i, rec in enumerate(records):
            conversation(rec, fmt, place_of(rec, i))
    elif fmt == "prompt_completion":
        for i, rec in enumerate(records):
            if _pc_kind(rec, place_of(rec, i)) != "text":
                raise DataError(
                    f"{place_of(rec, i)}: 'prompt' and 'completion' are lists of turns here, but "
                    "this split's first record has text; give every record the same shape"
                )
    return fmt

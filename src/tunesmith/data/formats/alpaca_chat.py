"""``alpaca_chat``: single-turn alpaca records read as multi-turn ``messages`` conversations.

Why: multi-turn chat data is rare among small open instruction sets, and a chat fine-tune should
be tried on conversations of several turns (the loss on every assistant turn, later turns seeing
the earlier ones). This reader chains every :data:`TURNS` consecutive ``{instruction, input,
output}`` records of an alpaca file (a JSON list, or JSONL) into one conversation::

    {"id": "records 0-2", "messages": [{"role": "user", "content": instruction (+ "\\n\\n" + input)},
                                       {"role": "assistant", "content": output}, ... 3 turns]}

so ``recipes/chat_smollm2_lora.yaml`` trains on multi-turn data built from ``alpaca_2k`` at read
time, with nothing copied or generated on disk. A record without an instruction or output is a
malformed line (``on_error`` applies) naming the record.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunesmith.data.formats.jsonl import read_json, read_jsonl
from tunesmith.data.readers import Bad, DataFormat, ReadOptions, Row
from tunesmith.registry import FORMATS

TURNS = 3
"""Alpaca records (user/assistant exchanges) per conversation; the last one may be shorter."""


def read_alpaca_chat(path: Path, opts: ReadOptions) -> Iterator[Row | Bad]:
    """Alpaca records (JSON list, or JSONL for a ``.jsonl`` file) chained into conversations."""
    read = read_jsonl if path.suffix.lower() == ".jsonl" else read_json
    group: list[tuple[int, dict[str, Any], int | None]] = []
    n = 0
    for item in read(path, opts):
        if isinstance(item, Bad):
            yield item
            continue
        rec, line = (item.record, item.line) if isinstance(item, Row) else (item, None)
        bad = _missing(rec)
        if bad:
            yield Bad(line or 1, f"alpaca record {n} has no {bad!r} text (fields: {sorted(rec)})")
        else:
            group.append((n, rec, line))
        n += 1
        if len(group) == TURNS:
            yield _conversation(group)
            group = []
    if group:
        yield _conversation(group)


def _missing(rec: dict[str, Any]) -> str | None:
    for key in ("instruction", "output"):
        value = rec.get(key)
        if not isinstance(value, str) or not value.strip():
            return key
    return None


def _conversation(group: list[tuple[int, dict[str, Any], int | None]]) -> Row:
    messages = []
    for _, rec, _ in group:
        inp = str(rec.get("input") or "")
        user = rec["instruction"] + (f"\n\n{inp}" if inp else "")
        messages += [
            {"role": "user", "content": user},
            {"role": "assistant", "content": rec["output"]},
        ]
    first, last = group[0][0], group[-1][0]
    return Row({"id": f"records {first}-{last}", "messages": messages}, group[0][2])


FORMATS.register(
    "alpaca_chat",
    DataFormat(read_alpaca_chat),
    f"alpaca records chained {TURNS} to a multi-turn `messages` conversation",
)

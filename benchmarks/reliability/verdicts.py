"""How one trial of the fault-injection benchmark is judged, and how a probe's trials are counted.

The verdicts follow the contract of issue 13, not today's behaviour:

- ``exact``: the command completed and its result equals the reference (same final weights, or
  for a data input: the task it defines is the one the input really holds);
- ``clear_error``: exit code 2 (or a ``TunesmithError`` in process) whose message is one
  ``error: ...`` line, and no traceback anywhere;
- ``traceback``: Python traceback text, a non-``TunesmithError`` exception in process, or any
  other failure that is not a clear one (a crash, a signal, an exit code other than 0 and 2);
- ``silent_wrong``: exit 0 but the result differs (other weights, a changed label set, a wrong
  number of examples, an empty split accepted, duplicated metrics rows ...);
- ``hang``: the command ran past its time limit and was killed;
- ``code_executed``: a planted payload's marker file appeared (beats every other verdict).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

CATEGORIES = ("exact", "clear_error", "traceback", "silent_wrong", "hang", "code_executed")
FAILURES = CATEGORIES[2:]  # what the "done when" requires to be 0
TRACEBACK_TEXT = "Traceback (most recent call last)"


@dataclass
class Finished:
    """What one command did: exit code (None if killed for time), its stderr, and in process the
    exception that escaped (``clear`` tells whether it was a one-line ``TunesmithError``)."""

    code: int | None
    stderr: str = ""
    stdout: str = ""
    timed_out: bool = False
    exception: str | None = None  # repr of an escaped exception (in process)
    clear: bool = False  # the escaped exception was a TunesmithError with a one-line message


def is_one_line_error(stderr: str) -> bool:
    """The last non-blank stderr line is the only ``error: ...`` line (log lines may precede it)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    return len(errors) == 1 and lines[-1].startswith("error: ")


def failure_kind(run: Finished) -> str | None:
    """None when the command succeeded cleanly; else ``hang``, ``traceback`` or ``clear_error``."""
    if run.timed_out:
        return "hang"
    if TRACEBACK_TEXT in run.stderr:
        return "traceback"
    if run.exception is not None:
        return "clear_error" if run.clear else "traceback"
    if run.code == 0:
        return None
    if run.code == 2 and is_one_line_error(run.stderr):
        return "clear_error"
    return "traceback"


def verdict(run: Finished, *, code_ran: bool = False, wrong: str | None = None) -> str:
    """The category of one trial. ``wrong`` is why a successful result is not the reference
    (None: it is); ignored when the command failed."""
    if code_ran:
        return "code_executed"
    kind = failure_kind(run)
    if kind is not None:
        return kind
    return "silent_wrong" if wrong else "exact"


@dataclass(frozen=True)
class Expect:
    """What a data input really holds: its labels, and the example counts each split may have
    (a truncated last line may be kept or dropped, so a split can allow several counts)."""

    labels: frozenset[str] | None = None  # None: not a labelled task
    sizes: Mapping[str, frozenset[int]] = field(default_factory=dict)


def task_change(
    labels: Iterable[str] | None, sizes: Mapping[str, int], expect: Expect
) -> str | None:
    """Why an accepted input defines another task than it holds (None: it does not).

    A label outside the input's real labels (garbled, BOM-prefixed, a text word, a stray rare
    class), a split of an unexpected size (a whole file read as one example, lost lines), or an
    empty split that was accepted."""
    if expect.labels is not None and labels is not None:
        extra = sorted(set(labels) - expect.labels)
        if extra:
            return f"label set changed: {extra!r:.80}"
    for split, n in sizes.items():
        if n == 0:
            return f"empty {split} split accepted"
        allowed = expect.sizes.get(split)
        if allowed is not None and n not in allowed:
            return f"{split} has {n} examples, the input holds {sorted(allowed)}"
    return None


@dataclass
class Tally:
    """One probe's counts over its trials, plus notes: the first few failures (traceback,
    silent_wrong, hang, code_executed) with their reason, and skipped trials."""

    probe: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    notes: list[str] = field(default_factory=list)
    max_notes: int = 8

    @property
    def trials(self) -> int:
        return sum(self.counts.values())

    def add(self, category: str, note: str = "") -> None:
        if category not in self.counts:
            raise ValueError(f"unknown verdict {category!r}; one of {CATEGORIES}")
        self.counts[category] += 1
        if note and category in FAILURES and len(self.notes) < self.max_notes:
            self.notes.append(f"{category}: {note}")

    def note(self, text: str) -> None:
        self.notes.append(text)

    def row(self) -> dict:
        return {"probe": self.probe, "trials": self.trials, **self.counts, "notes": self.notes}


def markdown_table(runs: list[dict]) -> str:
    """The README table: one row per probe, a total row, notes shortened to one cell."""
    head = ["probe", "trials", *CATEGORIES]
    lines = ["| " + " | ".join([*head, "notes"]) + " |", "|" + "---|" * (len(head) + 1)]
    total = dict.fromkeys(head[1:], 0)
    for run in runs:
        for key in total:
            total[key] += run[key]
        notes = "; ".join(run.get("notes", []))[:300]
        cells = [_cell(run[k]) for k in head] + [_cell(notes)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{total[k]}**" for k in head[1:]) + " | |")
    return "\n".join(lines)


def _cell(value) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")

"""The reliability benchmark's judging logic on synthetic outcomes (not the benchmark itself):
verdicts, the changed-task check, the tally and table, the in-process runner and the seeded
fuzz generators."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks" / "reliability"))

import fuzzdata  # noqa: E402
from fuzz import call  # noqa: E402
from fuzzrecipe import generate_recipes  # noqa: E402
from verdicts import (  # noqa: E402
    CATEGORIES,
    Expect,
    Finished,
    Tally,
    markdown_table,
    task_change,
    verdict,
)

from tunesmith.errors import DataError  # noqa: E402

TB = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: boom\n'


@pytest.mark.parametrize(
    ("run", "kw", "expected"),
    [
        (Finished(0), {}, "exact"),
        (Finished(0), {"wrong": "final weights differ"}, "silent_wrong"),
        (Finished(2, "tunesmith: resuming\nerror: data.train: file changed\n"), {}, "clear_error"),
        (Finished(2, "error: first line\nsecond line of the message\n"), {}, "traceback"),
        (Finished(2, TB + "error: x\n"), {}, "traceback"),
        (Finished(1, TB), {}, "traceback"),
        (Finished(0, TB), {}, "traceback"),  # exit 0 after printing a traceback is no success
        (Finished(-9, ""), {}, "traceback"),  # killed by a signal
        (Finished(None, "", timed_out=True), {"wrong": "x"}, "hang"),
        (Finished(2, "error: refused\n"), {"code_ran": True}, "code_executed"),
        (Finished(0), {"code_ran": True}, "code_executed"),
        (Finished(2, exception="DataError('x')", clear=True), {}, "clear_error"),
        (Finished(1, exception="KeyError('label')"), {}, "traceback"),
    ],
)
def test_verdict_follows_the_contract(run, kw, expected):
    assert verdict(run, **kw) == expected


def test_task_change_flags_foreign_labels_wrong_sizes_and_empty_splits():
    expect = Expect(
        frozenset({"neg", "pos"}), {"train": frozenset({23, 24}), "dev": frozenset({8})}
    )
    assert task_change(["neg", "pos"], {"train": 24, "dev": 8}, expect) is None
    assert task_change(["neg"], {"train": 23, "dev": 8}, expect) is None  # a label may be missing
    assert "\\ufeffpos" in task_change(["neg", "pos", "\ufeffpos"], {"train": 24}, expect)
    assert "1 examples" in task_change(["neg", "pos"], {"train": 1}, expect)  # CR-only file
    assert "empty dev" in task_change(["neg", "pos"], {"train": 24, "dev": 0}, expect)


def test_tally_counts_notes_failures_only_and_renders_a_total_row():
    tally = Tally("b: fuzz csv")
    for category, note in [("exact", ""), ("clear_error", "refused"), ("silent_wrong", "bom")]:
        tally.add(category, note)
    with pytest.raises(ValueError, match="unknown verdict"):
        tally.add("crashed")
    row = tally.row()
    assert row["trials"] == 3 and row["notes"] == ["silent_wrong: bom"]
    assert set(CATEGORIES) <= set(row)
    table = markdown_table([row, {**row, "probe": "a|b", "notes": []}])
    lines = table.splitlines()
    assert len(lines) == 5 and "a\\|b" in lines[3]
    assert lines[-1].startswith("| **total** | **6** | **2** | **2** | **0** | **2** |")


def test_in_process_call_classifies_errors_exceptions_and_hangs():
    def refuse():
        raise DataError("train.txt:3: missing label")

    def crash():
        raise KeyError("label")

    assert verdict(call(lambda: 0)[0]) == "exact"
    assert verdict(call(lambda: 2)[0]) == "traceback"  # exit 2 without an error: line
    assert verdict(call(refuse)[0]) == "clear_error"
    assert verdict(call(crash)[0]) == "traceback"
    t0 = time.monotonic()
    assert verdict(call(lambda: time.sleep(5), limit=0.2)[0]) == "hang"
    assert time.monotonic() - t0 < 3


@pytest.mark.parametrize("fmt", sorted(fuzzdata.FORMAT_FILES))
def test_fuzz_generator_is_seeded_and_covers_every_mutation(fmt):
    a = fuzzdata.generate(fmt, 60, seed=1)
    b = fuzzdata.generate(fmt, 60, seed=1)
    assert [(c.name, c.train, c.dev) for c in a] == [(c.name, c.train, c.dev) for c in b]
    assert {c.name for c in a} == set(fuzzdata.mutation_names(fmt))
    for case in a:
        assert case.expect.labels and case.expect.sizes["train"]


def test_truncation_allows_the_cut_record_to_be_kept_or_dropped():
    records = [{"label": "pos", "text": "a b"}, {"label": "neg", "text": "c d"}]
    raw, ends = fuzzdata.render("label_text", records)
    assert raw == b"pos a b\nneg c d\n" and ends == [8, 16]

    class Cut:
        def randrange(self, n):
            return 10

    cut, sizes = fuzzdata.b_truncate(Cut(), raw, ends, 2)
    assert cut == b"pos a b\nne" and sizes == {1, 2}


def test_recipe_generator_marks_invalid_recipes(tmp_path):
    cases = generate_recipes(80, 3, tmp_path / "m", tmp_path / "d", tmp_path / "marker")
    assert len(cases) == 80
    assert any(c.must_fail is False for c in cases) and any(c.must_fail for c in cases)
    tagged = [c for c in cases if c.name == "python tag"]
    assert tagged and all(b"!!python/object/apply" in c.text for c in tagged)

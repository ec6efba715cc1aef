"""Bad data never silently changes the task (issue 13 item 3): every row of the issue's table that
is about data files is a DataError naming file:line (or an explicit opt-in), and label names
(issue 18 item 4) are validated."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tunesmith.config import parse_recipe
from tunesmith.data import LabelVocab, read_records
from tunesmith.data.pipeline import build_datasets, build_vocab, check_data, load_raw_splits
from tunesmith.errors import ConfigError, DataError

POS = ["good", "great", "fine", "nice"]
NEG = ["bad", "awful", "poor", "sad"]


def lines(n: int, fmt: str = "{label} the movie was {word}") -> list[str]:
    """``n`` well-formed label_text lines alternating neg/pos."""
    out = []
    for i in range(n):
        label, words = ("pos", POS) if i % 2 else ("neg", NEG)
        out.append(fmt.format(label=label, word=words[i % 4]))
    return out


def recipe(root: Path, train: str = "train.txt", fmt: str = "label_text", **data) -> object:
    spec = {"path": train, "format": fmt}
    return parse_recipe(
        {
            "model": "minilm",
            "task": data.pop("task", "sequence_classification"),
            "data": {"root": str(root), "train": spec, **data},
        }
    )


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


# --- issue 13 table rows -------------------------------------------------------------------


def test_label_text_line_without_label_is_an_error_not_a_class(tmp_path: Path) -> None:
    # row: `the movie was good` silently became a class 'the'
    rows = lines(40)
    rows.insert(7, "the movie was good")
    write(tmp_path / "train.txt", "\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"rare label.*'the' \(1x, first at .*train\.txt:8\)"):
        load_raw_splits(recipe(tmp_path))


def test_rare_label_opt_in_and_declared_labels(tmp_path: Path) -> None:
    rows = lines(40) + ["odd the movie was odd"]
    write(tmp_path / "train.txt", "\n".join(rows) + "\n")
    raw = load_raw_splits(recipe(tmp_path, allow_rare_labels=True))
    assert build_vocab(recipe(tmp_path, allow_rare_labels=True), raw).labels == [
        "neg",
        "odd",
        "pos",
    ]
    declared = recipe(tmp_path, labels=["neg", "pos", "odd"])
    assert build_vocab(declared, load_raw_splits(declared)).labels == ["neg", "pos", "odd"]
    # a small file is left alone (a class seen twice in 10 lines may be real)
    write(tmp_path / "small.txt", "\n".join(lines(8) + ["odd x y"]) + "\n")
    load_raw_splits(recipe(tmp_path, train="small.txt"))


def test_bom_in_the_middle_of_a_file_is_an_error(tmp_path: Path) -> None:
    # row: a byte-order mark mid-file (concatenated files) became class '\ufeffpos'
    first, second = lines(20), lines(20)
    second[0] = "\ufeff" + second[0]
    p = write(tmp_path / "train.txt", "\ufeff" + "\n".join(first) + "\n" + "\n".join(second))
    assert read_records(p, "label_text")[0]["label"] == "neg"  # a leading BOM is stripped
    with pytest.raises(DataError, match=r"train\.txt:21: label '\\ufeffneg' contains non-print"):
        load_raw_splits(recipe(tmp_path))


def test_cr_only_line_endings_are_an_error(tmp_path: Path) -> None:
    # row: CR-only line endings read the whole file as one example
    write(tmp_path / "train.txt", "\r".join(lines(30)) + "\r")
    with pytest.raises(DataError, match=r"train\.txt:1: .*CR-only .*line endings.*tr '\\r' '\\n'"):
        load_raw_splits(recipe(tmp_path))
    write(tmp_path / "a.jsonl", '{"text": "a", "label": 1}\r{"text": "b", "label": 0}\r')
    with pytest.raises(DataError, match=r"a\.jsonl:1: .*CR-only"):
        read_records(tmp_path / "a.jsonl")
    write(tmp_path / "crlf.txt", "\r\n".join(lines(4)) + "\r\n")  # Windows endings are fine
    assert len(read_records(tmp_path / "crlf.txt", "label_text")) == 4


@pytest.mark.parametrize("split", ["dev", "test"])
def test_empty_dev_or_test_file_is_an_error(tmp_path: Path, split: str) -> None:
    # row: an empty dev file was accepted and best-model selection silently off
    write(tmp_path / "train.txt", "\n".join(lines(30)) + "\n")
    write(tmp_path / "empty.txt", "\n\n")
    r = recipe(tmp_path, **{split: {"path": "empty.txt", "format": "label_text"}})
    with pytest.raises(DataError, match=rf"data\.{split} \(empty\.txt\): no examples"):
        load_raw_splits(r)
    with pytest.raises(DataError, match=r"data\.dev: no examples"):
        load_raw_splits(recipe(tmp_path, split={"dev": 0.01}))
    with pytest.raises(ConfigError, match=r"data\.limit\.dev: must be >= 1"):
        recipe(tmp_path, split={"dev": 0.2}, limit={"dev": 0})


def test_jsonl_record_without_label_key_names_file_and_line(tmp_path: Path, bert_tok) -> None:
    # row: a JSONL record without the label key gave a raw traceback from the collator
    rows = [{"text": "good movie", "label": i % 2} for i in range(30)]
    rows[4] = {"text": "good movie", "lable": 1}
    write(tmp_path / "train.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    r = recipe(tmp_path, train="train.jsonl", fmt="jsonl")
    with pytest.raises(DataError, match=r"train\.jsonl:5: no label \(field 'label' is missing"):
        build_datasets(r, bert_tok)


@pytest.mark.parametrize(
    ("name", "text", "fmt", "where"),
    [
        ("t.csv", "text,label\ngood,1\nbad,\n", "csv", r"t\.csv:3: no label"),
        ("t.tsv", "text\tlabel\ngood\t1\nbad\t\n", "tsv", r"t\.tsv:3: no label"),
        ("t.json", '[{"text": "a", "label": 1}, {"text": "b"}]', "json", r"t\.json record 1"),
        ("t.jsonl", '{"text": "a", "label": [1]}\n', "jsonl", r"t\.jsonl:1: the label 'label'"),
    ],
)
def test_every_reader_names_the_record_without_a_label(tmp_path, name, text, fmt, where) -> None:
    write(tmp_path / name, text)
    with pytest.raises(DataError, match=where):
        load_raw_splits(recipe(tmp_path, train=name, fmt=fmt))


def test_folder_and_conll_labels_are_checked(tmp_path: Path) -> None:
    for label in ("neg", "pos", "\ufeffpos"):
        (tmp_path / "f" / label).mkdir(parents=True)
        (tmp_path / "f" / label / "a.txt").write_text("some text")
    with pytest.raises(DataError, match=r"a\.txt:1: label '\\ufeffpos'"):
        load_raw_splits(recipe(tmp_path, train="f", fmt="folder"))
    sents = ["Paris\tB-LOC\nis\tO\nnice\tO"] * 25 + ["Rome\tB-LOC\nrocks\tB-LCO"]
    write(tmp_path / "n.conll", "-DOCSTART- -X- O O\n\n" + "\n\n".join(sents) + "\n")
    r = recipe(tmp_path, train="n.conll", fmt="conll", task="token_classification")
    # sentence 26 starts on line 3 + 25 * 4 = 103; its second token is line 104
    with pytest.raises(DataError, match=r"'B-LCO' \(1x, first at .*n\.conll:104\)"):
        load_raw_splits(r)


def test_declared_labels_refuse_any_other_label_in_any_split(tmp_path: Path) -> None:
    write(tmp_path / "train.txt", "\n".join(lines(30)) + "\n")
    write(tmp_path / "dev.txt", "neg a\npos b\nmaybe c\n")
    dev = {"path": "dev.txt", "format": "label_text"}
    with pytest.raises(DataError, match=r"dev\.txt:3: label 'maybe' is not one of data\.labels"):
        load_raw_splits(recipe(tmp_path, labels=["neg", "pos"], dev=dev))
    # undeclared: a dev label the training split lacks is named at its line too
    r = recipe(tmp_path, dev=dev)
    with pytest.raises(DataError, match=r"dev\.txt:3: label 'maybe' does not occur in the train"):
        build_vocab(r, load_raw_splits(r))


def test_label_counts_are_logged_once(tmp_path: Path, caplog) -> None:
    write(tmp_path / "train.txt", "\n".join(lines(30)) + "\n")
    r = recipe(tmp_path, split={"dev": 0.2}, label_names={"pos": "positive"})
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        build_vocab(r, load_raw_splits(r))
    msgs = [m for m in caplog.messages if "labels in train" in m]
    assert msgs == ["data: train 24, dev 6 examples; 2 labels in train: neg 12, positive 12"]


def test_validate_reads_every_file_with_its_encoding(tmp_path: Path) -> None:
    # issue 18 item 6 (data part): a file that cannot be decoded fails validate, not train
    write(tmp_path / "train.txt", "\n".join(lines(30)) + "\n")
    (tmp_path / "dev.txt").write_bytes("neg ok\npos caf\xe9\n".encode("latin-1"))
    r = recipe(tmp_path, dev={"path": "dev.txt", "format": "label_text"})
    with pytest.raises(DataError, match=r"dev\.txt:2: cannot decode byte .* \(byte offset 14\)"):
        check_data(r)
    ok = recipe(tmp_path, dev={"path": "dev.txt", "format": "label_text", "encoding": "latin-1"})
    assert check_data(ok) == ["data: train 30, dev 2 examples; 2 labels"]


# --- issue 18 item 4: label names ------------------------------------------------------------


def test_label_names_name_labels_and_refuse_unknown_keys(tmp_path: Path) -> None:
    v = LabelVocab(["0", "1", "2"], {"0": "negative", 2: "positive"})
    assert v.names == ["negative", "1", "positive"]
    assert v.named_id2label == {0: "negative", 1: "1", 2: "positive"}
    assert v.named_label2id == {"negative": 0, "1": 1, "positive": 2}
    assert v.id2label == {0: "0", 1: "1", 2: "2"}  # data is still encoded with raw labels
    assert LabelVocab(["a"]).names == ["a"]
    with pytest.raises(ConfigError, match=r"data\.label_names: names labels \['5'\]"):
        LabelVocab(["0", "1"], {"5": "x"})
    with pytest.raises(ConfigError, match="several labels are named"):
        LabelVocab(["0", "1"], {"0": "x", "1": "x"})
    # YAML int keys and int labels become strings; a name outside data.labels is refused early
    r = recipe(tmp_path, labels=[0, 1], label_names={0: "neg", 1: "pos"})
    assert (r.data.labels, r.data.label_names) == (["0", "1"], {"0": "neg", "1": "pos"})
    with pytest.raises(ConfigError, match=r"data\.label_names: names \['7'\]"):
        recipe(tmp_path, labels=["0", "1"], label_names={"7": "x"})
    with pytest.raises(ConfigError, match=r"data\.labels: lists \['a'\] twice"):
        recipe(tmp_path, labels=["a", "a"])
    write(tmp_path / "train.txt", "\n".join(lines(30)) + "\n")
    bad = recipe(tmp_path, label_names={"neutral": "meh"})
    with pytest.raises(ConfigError, match=r"names labels \['neutral'\] .* are \['neg', 'pos'\]"):
        build_vocab(bad, load_raw_splits(bad))


def test_a_truncated_tag_in_a_small_conll_file_is_an_error(tmp_path: Path) -> None:
    # reliability fuzz: a CoNLL file cut mid-tag ('B-PO' from 'B-PER') in a file of few sentences
    sentence = "John\tB-PER\nlives\tO\nin\tO\nParis\tB-LOC\n"
    write(tmp_path / "train.conll", (sentence + "\n") * 6 + "Mary\tB-PO")
    with pytest.raises(DataError, match=r"rare label.*'B-PO' \(1x, first at .*train\.conll:31"):
        load_raw_splits(recipe(tmp_path, "train.conll", "conll", task="token_classification"))
    write(tmp_path / "train.conll", (sentence + "\n") * 6)  # the same file whole reads
    assert (
        len(
            load_raw_splits(recipe(tmp_path, "train.conll", "conll", task="token_classification"))[
                "train"
            ]
        )
        == 6
    )

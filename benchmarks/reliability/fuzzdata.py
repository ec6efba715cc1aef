"""Seeded generator of bad (and a few valid) data files, for every reader format.

Each :class:`Case` is one input: the training file (bytes, or a folder tree for ``folder``), the
dev file, and an :class:`~verdicts.Expect` saying what the input really holds: the labels are
always the clean ones (``neg``/``pos``, or the tags ``B-POS``/``O``), so a garbled, BOM-prefixed,
text-word or stray rare label that is accepted counts as a changed task; sizes are the example
counts a correct reader can return (a cut last line may be kept or dropped).

Mutations: truncation at a random byte, invalid UTF-8 bytes, a BOM at the start of a line or of
the file, CR-only and CRLF line endings, a stray/garbled/rare label, a record without its label,
NaN/null/number/list labels (JSON), renamed/swapped/extra/missing columns (CSV/TSV), a wrong
delimiter, NUL bytes, an empty or whitespace-only file, random binary content, a very long line,
an empty dev file, a dev label unseen in training; folder trees get empty files, BOM/garbled/
hidden/rare label folders and latin-1 files.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from verdicts import Expect

LABELS = ("neg", "pos")
TAGS = ("B-POS", "O")
WORDS = "the movie film book was a very it is this one good bad happy sad love hate".split()
N_TRAIN, N_DEV = 24, 8
WEIRD = [
    "neutral", "Pos", "p0s", "pos ", " neg", "\ufeffpos", "po\u200bs", "p\u043es", "neg\x00",
    "NaN", "nan", "null", "None", "", "x" * 60, "pos\tneg", "négatif", "\x1b[31mpos", "1", "-",
]  # fmt: skip
BAD_BYTES = [b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80", b"\xe2\x82"]


@dataclass
class Case:
    """One generated input (``train`` is bytes, or {relative path: bytes} for a folder)."""

    name: str
    train: bytes | dict[str, bytes]
    dev: bytes | dict[str, bytes]
    expect: Expect
    data_options: dict = field(default_factory=dict)


def sentence(rng: random.Random, n: int = 5) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def clean_records(rng: random.Random, n: int, fmt: str) -> list[dict]:
    if fmt == "conll":
        out = []
        for _ in range(n):
            toks = [rng.choice(WORDS) for _ in range(rng.randint(2, 6))]
            out.append({"tokens": toks, "tags": [rng.choice(TAGS) for _ in toks]})
        return out
    return [{"label": LABELS[i % 2], "text": sentence(rng)} for i in range(n)]


# ---- rendering: records -> (bytes, byte offset after each record) ---------------------------


def _line(fmt: str, rec: dict) -> str:
    if fmt == "label_text":
        return " ".join(str(rec[k]) for k in ("label", "text") if k in rec)
    if fmt in ("csv", "tsv"):
        buf = io.StringIO()
        cols = rec.get("_cols", [rec.get("label", ""), rec.get("text", "")])
        csv.writer(buf, delimiter=rec.get("_delim", "," if fmt == "csv" else "\t"),
                   lineterminator="").writerow(cols)  # fmt: skip
        return buf.getvalue()
    if fmt == "jsonl":
        if "_raw" in rec:
            return rec["_raw"]
        return json.dumps({k: v for k, v in rec.items() if not k.startswith("_")})
    raise ValueError(fmt)


def render(fmt: str, records: list[dict], header: str | None = None) -> tuple[bytes, list[int]]:
    """The file's bytes and, per record, the byte offset just after it."""
    chunks: list[bytes] = []
    ends: list[int] = []
    size = 0
    if fmt in ("csv", "tsv"):
        header = header if header is not None else ("label,text" if fmt == "csv" else "label\ttext")
    if header:
        chunks.append((header + "\n").encode())
        size += len(chunks[-1])
    for rec in records:
        if fmt == "conll":
            text = "".join(f"{t}\t{g}\n" for t, g in zip(rec["tokens"], rec["tags"], strict=True))
            part = (text + "\n").encode("utf-8", "surrogatepass")
        elif fmt == "json":
            part = b""
        else:
            part = (_line(fmt, rec) + "\n").encode("utf-8", "surrogatepass")
        chunks.append(part)
        size += len(part)
        ends.append(size)
    if fmt == "json":
        data = json.dumps([{k: v for k, v in r.items() if not k.startswith("_")} for r in records])
        return data.encode(), [len(data)] * len(records)
    return b"".join(chunks), ends


def folder_tree(records: list[dict]) -> dict[str, bytes]:
    return {f"{r['label']}/{i:03d}.txt": r["text"].encode() for i, r in enumerate(records)}


# ---- mutations ------------------------------------------------------------------------------
# A record mutation edits the clean records before rendering; a byte mutation edits the rendered
# file. Both return the train sizes a correct reader may report.

Records = list[dict]


def _pick(rng: random.Random, recs: Records) -> dict:
    return recs[rng.randrange(len(recs))]


def m_stray_label(rng, fmt, recs):
    rec = _pick(rng, recs)
    if fmt == "conll":
        rec["tags"][rng.randrange(len(rec["tags"]))] = rng.choice(WEIRD[:14])
    else:
        rec["label"] = rng.choice(WEIRD)
    return {len(recs)}


def m_rare_label(rng, fmt, recs):
    for rec in rng.sample(recs, rng.randint(1, 2)):
        if fmt == "conll":
            rec["tags"][0] = "B-NEU"
        else:
            rec["label"] = "neutral"
    return {len(recs)}


def m_missing_label(rng, fmt, recs):
    rec = _pick(rng, recs)
    if fmt == "conll":
        rec["tags"][rng.randrange(len(rec["tags"]))] = ""
    elif fmt in ("csv", "tsv"):
        rec["_cols"] = rng.choice([["", rec["text"]], [rec["text"]]])
    else:
        del rec["label"]
    return {len(recs)}


def m_label_type(rng, fmt, recs):
    rec = _pick(rng, recs)
    value = rng.choice([1, 0.5, None, ["pos"], {"l": "pos"}, True, float("nan"), "NaN"])
    if fmt == "jsonl" and rng.random() < 0.3:
        rec["_raw"] = '{"label": NaN, "text": "the movie"}'
    else:
        rec["label"] = value
    return {len(recs)}


def m_text_type(rng, fmt, recs):
    rec = _pick(rng, recs)
    rec["text"] = rng.choice([None, 5, ["the", "movie"], {"t": 1}, ""])
    return {len(recs)}


def m_columns(rng, fmt, recs):
    rec = _pick(rng, recs)
    rec["_cols"] = rng.choice(
        [[rec["label"], rec["text"], "extra"], [rec["label"]], [rec["text"], rec["label"]], []]
    )
    if not rec["_cols"]:
        rec["_cols"] = ["", ""]
    return {len(recs)}


def m_delimiter(rng, fmt, recs):
    for rec in recs:
        rec["_delim"] = rng.choice([";", "|", " "]) if fmt == "csv" else ","
    return {len(recs)}


def m_long_text(rng, fmt, recs):
    rec = _pick(rng, recs)
    if fmt == "conll":
        rec["tokens"] = rec["tokens"] * 200
        rec["tags"] = rec["tags"] * 200
    else:
        rec["text"] = sentence(rng, 3000)
    return {len(recs)}


def m_nul(rng, fmt, recs):
    rec = _pick(rng, recs)
    key = "tokens" if fmt == "conll" else rng.choice(["label", "text"])
    if fmt == "conll":
        rec[key][0] = rec[key][0] + "\x00"
    else:
        rec[key] = str(rec[key]) + "\x00"
    return {len(recs)}


RECORD_MUTATIONS: dict[str, Callable] = {
    "stray label": m_stray_label,
    "rare label": m_rare_label,
    "missing label": m_missing_label,
    "nul byte": m_nul,
    "long text": m_long_text,
}
JSON_MUTATIONS = {"label type": m_label_type, "text type": m_text_type}
DELIMITED_MUTATIONS = {"columns": m_columns, "delimiter": m_delimiter}


def b_truncate(rng, raw: bytes, ends: list[int], n: int):
    cut = rng.randrange(max(len(raw), 1))
    k = sum(e <= cut for e in ends)
    return raw[:cut], {k, k + 1}


def b_bad_bytes(rng, raw, ends, n):
    at = rng.randrange(max(len(raw), 1))
    return raw[:at] + rng.choice(BAD_BYTES) + raw[at:], {n}


def b_bom_mid(rng, raw, ends, n):
    at = rng.choice([0, *ends[:-1]]) if rng.random() < 0.8 else rng.randrange(max(len(raw), 1))
    at = at or (ends[0] if ends else 0)
    return raw[:at] + "\ufeff".encode() + raw[at:], {n}


def b_bom_start(rng, raw, ends, n):
    return "\ufeff".encode() + raw, {n}


def b_cr_only(rng, raw, ends, n):
    return raw.replace(b"\n", b"\r"), {n}


def b_crlf(rng, raw, ends, n):
    return raw.replace(b"\n", b"\r\n"), {n}


def b_empty(rng, raw, ends, n):
    return rng.choice([b"", b"\n", b" \n\t\n", b"\n\n\n"]), {0}


def b_binary(rng, raw, ends, n):
    return bytes(rng.randrange(256) for _ in range(rng.randint(1, 400))), {0}


def b_header(rng, raw, ends, n):
    first, _, rest = raw.partition(b"\n")
    sep = b"," if b"," in first else b"\t"
    new = rng.choice([b"lbl" + sep + b"txt", b"text" + sep + b"label", b"label", b"label" + sep])
    return new + b"\n" + rest, {n}


BYTE_MUTATIONS: dict[str, Callable] = {
    "truncated": b_truncate,
    "invalid utf-8": b_bad_bytes,
    "BOM mid-file": b_bom_mid,
    "BOM at start (valid)": b_bom_start,
    "CR-only endings": b_cr_only,
    "CRLF endings (valid)": b_crlf,
    "empty file": b_empty,
    "binary garbage": b_binary,
}


# ---- folder trees ---------------------------------------------------------------------------


def t_move(rng, tree, label):
    key = rng.choice(sorted(tree))
    tree[f"{label}/{key.split('/')[1]}"] = tree.pop(key)


def folder_mutation(rng: random.Random, name: str, tree: dict[str, bytes], n: int) -> set[int]:
    key = rng.choice(sorted(tree))
    if name == "empty file":
        tree[key] = rng.choice([b"", b"  \n"])
    elif name == "BOM label folder":
        t_move(rng, tree, "\ufeffpos")
    elif name == "garbled label folder":
        t_move(rng, tree, rng.choice(["Pos", "pos ", "neutral", "p\u043es", "po\u200bs", "1"]))
    elif name == "hidden folder (valid)":
        tree[".cache/000.txt"] = b"the movie"
    elif name == "latin-1 file (valid)":
        tree[key] = "caf\xe9 film was good".encode("latin-1")
    elif name == "non-txt file (valid)":
        tree["pos/readme.md"] = b"notes"
    elif name == "BOM inside a file (valid)":
        tree[key] = "\ufeff".encode() + tree[key]
    elif name == "no label folders":
        tree.clear()
        tree["notes.txt"] = b"the movie"
        return {0}
    return {n}


FOLDER_MUTATIONS = [
    "empty file",
    "BOM label folder",
    "garbled label folder",
    "hidden folder (valid)",
    "latin-1 file (valid)",
    "non-txt file (valid)",
    "BOM inside a file (valid)",
    "no label folders",
]
DEV_MUTATIONS = ["empty dev file", "dev label unseen in training"]


def mutation_names(fmt: str) -> list[str]:
    if fmt == "folder":
        return FOLDER_MUTATIONS + DEV_MUTATIONS
    names = list(RECORD_MUTATIONS) + list(BYTE_MUTATIONS) + DEV_MUTATIONS
    if fmt in ("jsonl", "json"):
        names += list(JSON_MUTATIONS)
    if fmt in ("csv", "tsv"):
        names += [*DELIMITED_MUTATIONS, "header"]
    return names


def _file(fmt: str, recs: Records) -> tuple[bytes | dict[str, bytes], list[int]]:
    if fmt == "folder":
        return folder_tree(recs), []
    return render(fmt, recs)


def make_case(rng: random.Random, fmt: str, name: str) -> Case:
    train, dev = clean_records(rng, N_TRAIN, fmt), clean_records(rng, N_DEV, fmt)
    sizes = {"train": {N_TRAIN}, "dev": {N_DEV}}
    if name == "dev label unseen in training":
        if fmt == "conll":
            dev[0]["tags"][0] = "B-NEU"
        else:
            dev[0]["label"] = "neutral"
    if name in RECORD_MUTATIONS or name in JSON_MUTATIONS or name in DELIMITED_MUTATIONS:
        table = RECORD_MUTATIONS | JSON_MUTATIONS | DELIMITED_MUTATIONS
        sizes["train"] = table[name](rng, fmt, train)
    train_file, ends = _file(fmt, train)
    dev_file, _ = _file(fmt, dev)
    if name == "empty dev file":
        dev_file = {} if fmt == "folder" else rng.choice([b"", b"\n", b"label,text\n"])
        sizes["dev"] = {0}
    elif fmt == "folder" and name in FOLDER_MUTATIONS:
        sizes["train"] = folder_mutation(rng, name, train_file, N_TRAIN)
    elif name in BYTE_MUTATIONS:
        train_file, allowed = BYTE_MUTATIONS[name](rng, train_file, ends, N_TRAIN)
        sizes["train"] = allowed
    elif name == "header":
        train_file, sizes["train"] = b_header(rng, train_file, ends, N_TRAIN)
    labels = frozenset(TAGS if fmt == "conll" else LABELS)
    expect = Expect(labels, {k: frozenset(v) for k, v in sizes.items()})
    return Case(name, train_file, dev_file, expect)


FORMAT_FILES = {
    "label_text": "txt",
    "csv": "csv",
    "tsv": "tsv",
    "jsonl": "jsonl",
    "json": "json",
    "conll": "conll",
    "folder": "",
}


def generate(fmt: str, count: int, seed: int) -> list[Case]:
    """``count`` cases for ``fmt``, the mutations taken in turn (their details drawn from a
    generator seeded by ``seed`` and the format name)."""
    rng = random.Random(f"{seed}:{fmt}")
    names = mutation_names(fmt)
    return [make_case(rng, fmt, names[i % len(names)]) for i in range(count)]

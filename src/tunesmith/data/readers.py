"""Read a dataset file into a list of plain ``dict`` records, one per example.

Why: every task starts from "rows of named fields"; the task encoders (:mod:`tunesmith.data.encode`)
only ever see records, so a new file layout is one reader here and nothing else changes.
Readers are registered by name in :data:`FORMATS` (``tunesmith list`` shows them). Every malformed
line is reported as ``path:line: what is wrong`` with a hint, or skipped (``on_error="skip"``) with
one warning that gives the count.
"""

from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from tunesmith.errors import ConfigError, DataError
from tunesmith.paths import resolve_path
from tunesmith.registry import Registry

FORMATS = Registry("data format")

"""``embedded:<name>`` datasets: (python package, folder inside it, pip requirement)."""

_EXTENSIONS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv", ".conll": "conll"}


@dataclass(frozen=True)
class ReadOptions:
    """Options shared by all readers (each reader uses the ones that apply to it)."""

    encoding: str = "utf-8"
    delimiter: str | None = None  # csv: ","  tsv: "\t"
    quoting: bool = True  # False -> csv.QUOTE_NONE (GLUE TSVs contain stray quotes)
    header: bool | None = None  # None -> the format's default (csv/tsv: True, label_text: False)
    columns: list[str] | None = None  # names when there is no header row
    separator: str | None = None  # label_text: between label and text (None: any whitespace)
    label_position: str = "first"  # label_text: "first" | "last"
    label_sep: str | None = None  # label_text: keep only the label part before this (TREC ":")


class Bad(NamedTuple):
    """A malformed line a reader found (yielded instead of a record)."""

    line: int
    message: str
    file: Path | None = None  # when not the path that was read (a file inside a folder)


Reader = Callable[[Path, ReadOptions], Iterator["dict[str, Any] | Bad"]]


def read_records(
    path: str | Path,
    fmt: str | None = None,
    *,
    encoding: str = "utf-8",
    delimiter: str | None = None,
    quoting: bool = True,
    header: bool | None = None,
    columns: list[str] | None = None,
    separator: str | None = None,
    label_position: str = "first",
    label_sep: str | None = None,
    on_error: str = "raise",
) -> list[dict[str, Any]]:
    """Read ``path`` (format ``fmt`` or inferred from the extension) into records.

    ``header=None`` means the format's default: the first row names the columns for csv/tsv,
    while for ``label_text`` every line is data (set ``header=True`` to skip a title line, as in
    emotion's ``text;label_name``). ``on_error="raise"`` stops at the first malformed line with
    ``path:line: ...``; ``"skip"`` drops malformed lines and warns once with how many were dropped.
    """
    if isinstance(path, str) and path.startswith("embedded:"):
        path = resolve_path(path, Path.cwd())
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data file not found: {path.resolve()} (check the path in the recipe)")
    if on_error not in ("raise", "skip"):
        raise ConfigError("on_error", f"must be 'raise' or 'skip', got {on_error!r}")
    if label_position not in ("first", "last"):
        raise ConfigError("label_position", f"must be 'first' or 'last', got {label_position!r}")
    fmt = fmt or infer_format(path)
    reader: Reader = FORMATS.get(fmt, "format")
    opts = ReadOptions(
        encoding, delimiter, quoting, header, columns, separator, label_position, label_sep
    )
    records: list[dict[str, Any]] = []
    bad: list[Bad] = []
    for item in reader(path, opts):
        if isinstance(item, Bad):
            if on_error == "raise":
                raise DataError(
                    f"{item.file or path}:{item.line}: {item.message} "
                    "(fix the line, or set on_error: skip to drop malformed lines)"
                )
            bad.append(item)
        else:
            records.append(item)
    if bad:
        first = bad[0]
        warnings.warn(
            f"{path}: skipped {len(bad)} malformed line(s); first: {first.file or path}:{first.line}: "
            f"{first.message}",
            stacklevel=2,
        )
    return records


def infer_format(path: Path) -> str:
    """The format name for ``path``: a directory is ``folder``, else by extension."""
    if path.is_dir():
        return "folder"
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"cannot infer the data format of {path} from its extension; "
            f"set format: one of {FORMATS.names()}"
        )
    return fmt


def read_text(path: Path, encoding: str) -> str:
    """Decode a whole file; a decode error names the line and says to set ``encoding``."""
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: cannot decode byte {raw[e.start : e.start + 1]!r} as {encoding}; "
            "set encoding to the file's real encoding (e.g. encoding: latin-1)"
        ) from None
    except LookupError:
        raise ConfigError("encoding", f"unknown text encoding {encoding!r}") from None
    return text.removeprefix("\ufeff")


def _lines(path: Path, opts: ReadOptions) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline); universal newlines only, so a tweet
    containing e.g. U+2028 stays one line."""
    for i, line in enumerate(io.StringIO(read_text(path, opts.encoding)), start=1):
        yield i, line.rstrip("\r\n")


def _read_jsonl(path: Path, opts: ReadOptions) -> Iterator[dict[str, Any] | Bad]:
    for i, line in _lines(path, opts):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield Bad(i, f"invalid JSON ({e.msg} at column {e.colno})")
            continue
        yield obj if isinstance(obj, dict) else Bad(i, f"expected a JSON object, got {obj!r:.40}")


def _read_json(path: Path, opts: ReadOptions) -> Iterator[dict[str, Any] | Bad]:
    text = read_text(path, opts.encoding)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        yield Bad(e.lineno, f"invalid JSON ({e.msg} at column {e.colno})")
        return
    if not isinstance(data, list):
        yield Bad(1, "expected a JSON list of objects (use .jsonl for one object per line)")
        return
    for n, obj in enumerate(data):
        # json keeps no line numbers; name the item instead.
        yield obj if isinstance(obj, dict) else Bad(1, f"item {n} is not an object: {obj!r:.40}")


def _read_delimited(path: Path, opts: ReadOptions, default_delimiter: str) -> Iterator[Any]:
    text = read_text(path, opts.encoding)
    rows = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=opts.delimiter or default_delimiter,
        quoting=csv.QUOTE_MINIMAL if opts.quoting else csv.QUOTE_NONE,
    )
    names = opts.columns
    header_pending = opts.header if opts.header is not None else True
    try:
        for row in rows:
            line = rows.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header_pending:
                header_pending = False
                if names is None:  # explicit columns replace the header row's names
                    names = [c.strip() for c in row]
                continue
            if names is None:
                names = [f"col{k}" for k in range(len(row))]
            if len(row) != len(names):
                yield Bad(line, f"expected {len(names)} columns {names}, found {len(row)}")
                continue
            yield dict(zip(names, row, strict=True))
    except csv.Error as e:
        yield Bad(rows.line_num, f"unparseable row ({e}); try quoting: false")


def _read_csv(path: Path, opts: ReadOptions) -> Iterator[Any]:
    return _read_delimited(path, opts, ",")


def _read_tsv(path: Path, opts: ReadOptions) -> Iterator[Any]:
    return _read_delimited(path, opts, "\t")


def _read_conll(path: Path, opts: ReadOptions) -> Iterator[dict[str, Any] | Bad]:
    tokens: list[str] = []
    tags: list[str] = []
    bad: Bad | None = None
    for i, line in _lines(path, opts):
        line = line.replace("\ufeff", "")  # a stray BOM line ends WNUT-17's dev.conll
        if not line.strip():
            if bad is not None:
                yield bad  # a broken line invalidates its whole sentence
            elif tokens:
                yield {"tokens": tokens, "tags": tags}
            tokens, tags, bad = [], [], None
            continue
        if line.startswith("-DOCSTART-"):
            continue
        cols = line.split("\t") if "\t" in line else line.split()
        if len(cols) < 2 or not cols[0] or not cols[-1].strip():
            bad = bad or Bad(i, "expected 'token<TAB>tag' (token first, tag last column)")
            continue
        tokens.append(cols[0])
        tags.append(cols[-1].strip())
    if bad is not None:
        yield bad
    elif tokens:
        yield {"tokens": tokens, "tags": tags}


def _read_label_text(path: Path, opts: ReadOptions) -> Iterator[dict[str, Any] | Bad]:
    sep = opts.separator
    if opts.label_position == "last" and not sep:
        raise ConfigError("separator", "label_position 'last' needs a separator (e.g. ';')")
    skip_header = bool(opts.header)
    for i, line in _lines(path, opts):
        if not line.strip():
            continue
        if skip_header:
            skip_header = False
            continue
        if opts.label_position == "first":
            parts = line.strip().split(sep, 1) if sep else line.strip().split(None, 1)
            label, text = (parts + [""])[:2]
        else:
            assert sep is not None
            if sep not in line:
                yield Bad(i, f"no {sep!r} separator between text and label")
                continue
            text, _, label = line.rpartition(sep)
        if opts.label_sep and opts.label_sep in label:
            label = label.split(opts.label_sep, 1)[0]
        label, text = label.strip(), text.strip()
        if not label:
            yield Bad(i, "missing label")
        elif not text:
            where = "after" if opts.label_position == "first" else "before"
            yield Bad(i, f"empty text {where} the label (separator {sep or 'whitespace'!r})")
        else:
            yield {"label": label, "text": text}


def _read_folder(path: Path, opts: ReadOptions) -> Iterator[dict[str, Any] | Bad]:
    if not path.is_dir():
        raise DataError(f"format 'folder' needs a directory of <label>/*.txt, got file {path}")
    labels = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not labels:
        raise DataError(f"{path}: no label folders; expected <label>/*.txt")
    fallback = 0
    for label_dir in labels:
        for file in sorted(label_dir.glob("*.txt")):
            raw = file.read_bytes()
            try:
                text = raw.decode(opts.encoding)
            except UnicodeDecodeError:
                text = raw.decode("latin-1")  # never fails; one stray byte should not stop a corpus
                fallback += 1
            text = text.removeprefix("\ufeff").strip()
            item_id = f"{label_dir.name}/{file.name}"
            if not text:
                yield Bad(1, "empty file", file)
            else:
                yield {"id": item_id, "label": label_dir.name, "text": text}
    if fallback:
        warnings.warn(
            f"{path}: {fallback} file(s) were not valid {opts.encoding}; read them as latin-1",
            stacklevel=2,
        )


FORMATS.register("jsonl", _read_jsonl, "one JSON object per line")
FORMATS.register("json", _read_json, "a JSON list of objects")
FORMATS.register("csv", _read_csv, "comma-separated; header row gives keys (else columns)")
FORMATS.register("tsv", _read_tsv, "tab-separated; header row gives keys (else columns)")
FORMATS.register("conll", _read_conll, "token<TAB>tag lines, blank line between sentences")
FORMATS.register("label_text", _read_label_text, "'<label> <text>' or '<text>;<label>' lines")
FORMATS.register("folder", _read_folder, "a directory of <label>/*.txt files")

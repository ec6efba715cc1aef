"""Read a dataset file into a list of plain ``dict`` records, one per example.

Why: every task starts from "rows of named fields"; the task encoders (:mod:`tunesmith.data.encode`)
only ever see records, so a new file layout is one module in :mod:`tunesmith.data.formats` and
nothing else changes. This module holds what the formats share: the options, the malformed-line
record, decoding, line splitting, inference from the extensions the formats declare, and
:func:`read_records`. Formats are registered by name in :data:`tunesmith.registry.FORMATS`
(``tunesmith list`` shows them). Every malformed line is reported as ``path:line: what is wrong``
with a hint, or skipped (``on_error="skip"``) with one warning that gives the count.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from tunesmith.errors import ConfigError, DataError
from tunesmith.paths import resolve_path
from tunesmith.registry import FORMATS

__all__ = [
    "FORMATS",
    "Bad",
    "DataFormat",
    "ReadOptions",
    "Place",
    "Reader",
    "Row",
    "infer_format",
    "read_lines",
    "read_located",
    "read_records",
    "read_text",
    "resolve_path",
]


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


class Row(NamedTuple):
    """A record and where it was read (yielded by the built-in readers so that later checks, e.g.
    of labels, can name ``file:line``; a reader may also yield a bare ``dict``)."""

    record: dict[str, Any]
    line: int | None = None  # 1-based; None when the format keeps no lines (a JSON list)
    file: Path | None = None  # when not the path that was read (a file inside a folder)


class Place(NamedTuple):
    """Where a record was read: ``path:line`` (``path record N`` when the format keeps no lines)."""

    file: Path
    line: int | None
    index: int  # position among the file's records

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.line else f"{self.file} record {self.index}"

    def token(self, k: int) -> Place:
        """The place of token ``k`` of a one-token-per-line record (CoNLL)."""
        return self._replace(line=self.line + k) if self.line else self


Reader = Callable[[Path, ReadOptions], Iterator["dict[str, Any] | Row | Bad"]]


@dataclass(frozen=True)
class DataFormat:
    """What a format registers in :data:`FORMATS`: its reader, and the file extensions (lower
    case, with the dot) it is inferred from when a recipe gives no ``format``."""

    read: Reader
    extensions: tuple[str, ...] = ()


def read_records(path: str | Path, fmt: str | None = None, **options: Any) -> list[dict[str, Any]]:
    """Read ``path`` (format ``fmt`` or inferred from the extension) into records; the options
    are those of :func:`read_located`."""
    return read_located(path, fmt, **options)[0]


def read_located(
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
) -> tuple[list[dict[str, Any]], list[Place]]:
    """(records, the :class:`Place` each was read from).

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
    reader: Reader = FORMATS.get(fmt, "format").read
    opts = ReadOptions(
        encoding, delimiter, quoting, header, columns, separator, label_position, label_sep
    )
    records: list[dict[str, Any]] = []
    places: list[Place] = []
    bad: list[Bad] = []
    for item in reader(path, opts):
        if isinstance(item, Bad):
            if on_error == "raise":
                raise DataError(
                    f"{item.file or path}:{item.line}: {item.message} "
                    "(fix the line, or set on_error: skip to drop malformed lines)"
                )
            bad.append(item)
            continue
        row = item if isinstance(item, Row) else Row(item)
        places.append(Place(row.file or path, row.line, len(records)))
        records.append(row.record)
    if bad:
        first = bad[0]
        warnings.warn(
            f"{path}: skipped {len(bad)} malformed line(s); first: {first.file or path}:{first.line}: "
            f"{first.message}",
            stacklevel=3,
        )
    return records, places


def infer_format(path: Path) -> str:
    """The format name for ``path``: a directory is ``folder``, else the format that declares the
    file's extension (:attr:`DataFormat.extensions`)."""
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    matches = [e.name for e in FORMATS if suffix in e.obj.extensions]
    if len(matches) > 1:
        raise DataError(
            f"the extension of {path} is declared by several data formats {matches}; "
            "set format: to choose one"
        )
    if not matches:
        raise DataError(
            f"cannot infer the data format of {path} from its extension; "
            f"set format: one of {FORMATS.names()}"
        )
    return matches[0]


def read_text(path: Path, encoding: str) -> str:
    """Decode a whole file; a decode error names the line and says to set ``encoding``."""
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}:{line}: cannot decode byte {raw[e.start : e.start + 1]!r} (byte offset "
            f"{e.start}) as {encoding}; set encoding to the file's real encoding "
            "(e.g. encoding: latin-1)"
        ) from None
    except LookupError:
        raise ConfigError("encoding", f"unknown text encoding {encoding!r}") from None
    return text.removeprefix("\ufeff")


def read_lines(path: Path, opts: ReadOptions) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its newline); only ``\n`` (or ``\r\n``) ends a line,
    so a tweet containing e.g. U+2028 stays one line. A carriage return that no ``\n`` follows
    (classic Mac line endings) is an error: the lines would silently run together."""
    text = read_text(path, opts.encoding)
    for i, line in enumerate(io.StringIO(text), start=1):
        line = line.rstrip("\n").removesuffix("\r")
        if "\r" in line:
            raise DataError(
                f"{path}:{i}: a carriage return (\\r) that ends no \\n line: the file uses "
                "CR-only (classic Mac) line endings, so its lines would be read as one; convert "
                f"them to \\n, e.g. `tr '\\r' '\\n' < {path.name} > fixed_{path.name}`"
            )
        yield i, line

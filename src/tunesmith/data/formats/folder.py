"""``folder``: a directory of ``<label>/*.txt`` files, one example per file (20 Newsgroups,
BBC News); :func:`tunesmith.data.readers.infer_format` picks it for any directory."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

from tunesmith.data.readers import Bad, DataFormat, ReadOptions, Row
from tunesmith.errors import DataError
from tunesmith.registry import FORMATS


def read_folder(path: Path, opts: ReadOptions) -> Iterator[Row | Bad]:
    """``{"id": "<label>/<file>", "label", "text"}`` per non-empty file; files that are not valid
    ``opts.encoding`` are read as latin-1 with one warning giving their count."""
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
                yield Row({"id": item_id, "label": label_dir.name, "text": text}, 1, file)
    if fallback:
        warnings.warn(
            f"{path}: {fallback} file(s) were not valid {opts.encoding}; read them as latin-1",
            stacklevel=2,
        )


FORMATS.register("folder", DataFormat(read_folder), "a directory of <label>/*.txt files")

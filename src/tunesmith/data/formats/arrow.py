"""Columnar files: ``parquet`` and ``arrow`` (Arrow IPC, as ``datasets`` writes it), read with
``pyarrow`` (a dependency of ``datasets``) into one record per table row."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from tunesmith.data.readers import Bad, DataFormat, ReadOptions, Row
from tunesmith.registry import FORMATS


def _rows(table) -> Iterator[Row]:
    """One :class:`Row` per table row; columnar files keep no lines (``path record N``)."""
    for record in table.to_pylist():
        yield Row(record, None)


def read_parquet(path: Path, opts: ReadOptions) -> Iterator[Row | Bad]:
    """A parquet file (or a folder's worth via ``dataset: folder``)."""
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for damaged files
        yield Bad(1, f"not a readable parquet file ({str(exc).splitlines()[0]})")
        return
    yield from _rows(table)


def read_arrow(path: Path, opts: ReadOptions) -> Iterator[Row | Bad]:
    """An Arrow IPC file, in the stream layout ``datasets`` writes (``*.arrow`` in a
    ``save_to_disk`` folder) or the random-access file layout."""
    import pyarrow as pa

    table = None
    for open_ in (pa.ipc.open_stream, pa.ipc.open_file):
        try:
            with pa.memory_map(str(path)) as source:
                table = open_(source).read_all()
            break
        except pa.ArrowInvalid:
            continue
    if table is None:
        yield Bad(1, "not a readable Arrow IPC file (stream or file layout)")
        return
    yield from _rows(table)


FORMATS.register(
    "parquet", DataFormat(read_parquet, (".parquet",)), "a parquet table, one example per row"
)
FORMATS.register(
    "arrow", DataFormat(read_arrow, (".arrow",)), "an Arrow IPC table (as datasets writes it)"
)

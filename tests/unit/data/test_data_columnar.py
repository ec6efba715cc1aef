"""The parquet and arrow readers (issue 15): `data.train: {path: x.parquet}` used to pass
`validate` and then fail in `train` with `cannot infer the data format`."""

from __future__ import annotations

import pytest

from tunesmith.config import parse_recipe
from tunesmith.data import read_records
from tunesmith.data.pipeline import check_data
from tunesmith.errors import DataError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

RECORDS = [{"text": "good film", "label": "pos"}, {"text": "dull film", "label": "neg"}]


def test_parquet_is_inferred_and_read(tmp_path):
    pq.write_table(pa.Table.from_pylist(RECORDS), tmp_path / "t.parquet")
    assert read_records(tmp_path / "t.parquet") == RECORDS
    recipe = parse_recipe(
        {
            "model": "minilm",
            "task": "sequence_classification",
            "data": {"root": str(tmp_path), "train": "t.parquet"},
        }
    )
    assert check_data(recipe) == ["data: train 2 examples; 2 labels"]


@pytest.mark.parametrize("layout", ["stream", "file"])
def test_arrow_both_ipc_layouts(tmp_path, layout):
    table = pa.Table.from_pylist(RECORDS)
    path = tmp_path / "t.arrow"
    new = pa.ipc.new_stream if layout == "stream" else pa.ipc.new_file
    with pa.OSFile(str(path), "wb") as sink, new(sink, table.schema) as writer:
        writer.write_table(table)
    assert read_records(path) == RECORDS


def test_arrow_file_of_a_save_to_disk_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_list(RECORDS).save_to_disk(str(tmp_path / "saved"))
    (arrow,) = (tmp_path / "saved").glob("*.arrow")
    assert read_records(arrow) == RECORDS


def test_damaged_files_are_one_line_errors(tmp_path):
    for name in ("bad.parquet", "bad.arrow"):
        (tmp_path / name).write_bytes(b"not a table at all")
        with pytest.raises(DataError, match=rf"{name}:1: not a readable") as err:
            read_records(tmp_path / name)
        assert "\n" not in str(err.value)

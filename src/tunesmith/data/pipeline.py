"""Recipe ``data:`` section -> tokenised train/dev/test lists and the label vocabulary.

Reading, splitting, label handling and encoding each live in their own module; this one only
wires them in the order a run needs them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tunesmith.config import DataConfig, Recipe, SplitSource, TaskConfig, TextConfig
from tunesmith.data.checks import (
    check_file_labels,
    check_in_vocab,
    check_not_empty,
    check_rare_labels,
    log_label_counts,
    record_labels,
    where,
)
from tunesmith.data.hfdata import Loaded, given_splits, load_dataset_source, read_given
from tunesmith.data.labels import LabelVocab
from tunesmith.data.mixing import concat_tasks
from tunesmith.data.packing import pack_examples
from tunesmith.data.readers import Place, read_located, resolve_path
from tunesmith.data.splits import stratified_split
from tunesmith.data.textformat import TextFormat, verbaliser
from tunesmith.data.tokcache import cache_key, encode_cached
from tunesmith.errors import ConfigError, DataError
from tunesmith.registry import TASKS

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")


@dataclass
class Datasets:
    """Encoded examples per split (``list[dict]`` works as a map-style torch dataset)."""

    train: list[dict]
    dev: list[dict] | None = None
    test: list[dict] | None = None
    vocab: LabelVocab | None = None
    raw: dict[str, list[dict]] = field(default_factory=dict)
    # text-to-text tasks: per split (prompts, gold label words), and the label words in vocab order
    text_eval: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    label_words: list[str] = field(default_factory=list)


class RawSplits(dict):
    """``{split: records}`` as read, split and limited, plus where each record was read
    (``places``: ``id(record)`` -> :class:`~tunesmith.data.readers.Place` or a dataset's
    :class:`~tunesmith.data.hfdata.RowPlace`) so that later checks name ``file:line``, and the
    data fingerprint of each split that has one (``fingerprints``: the encoding cache key)."""

    places: dict[int, Place]
    fingerprints: dict[str, str]

    def __init__(
        self,
        splits: dict[str, list[dict]],
        places: dict[int, Place],
        fingerprints: dict[str, str] | None = None,
    ):
        super().__init__(splits)
        self.places = places
        self.fingerprints = fingerprints or {}


def _derived(fingerprint: str | None, *how: object) -> str | None:
    """The fingerprint of records derived from fingerprinted ones (a carved split, a limit)."""
    if fingerprint is None:
        return None
    return hashlib.sha256(repr((fingerprint, *how)).encode()).hexdigest()


def read_split(cfg: DataConfig, src: SplitSource, split: str = "train") -> Loaded:
    """(records, their places, data fingerprint or None) of one split's file or dataset."""
    key = f"data.{split}"
    if src.dataset is not None:
        loaded = load_dataset_source(src, split, cfg.root_path(), key)
        logger.info("%s: %s examples from dataset %s", key, len(loaded.records), src.dataset)
        return loaded
    path = resolve_path(src.path, cfg.root_path())
    logger.info("%s: reading %s", key, path)
    records, places = read_located(
        path,
        src.format,
        encoding=src.encoding,
        delimiter=src.delimiter,
        quoting=src.quoting,
        header=src.header,
        columns=src.header_columns(),
        separator=src.separator,
        label_position=src.label_position,
        label_sep=src.label_sep,
        on_error=src.on_error,
    )
    renames = src.renames()
    for i, rec in enumerate(records):  # in place: places are keyed by the record's identity
        missing = [c for c in renames if c not in rec]
        if missing:
            raise DataError(
                f"{places[i]}: no field {missing[0]!r} (named in {key}.columns); "
                f"fields: {sorted(rec)}"
            )
        values = {new: rec.pop(old) for old, new in renames.items()}
        rec.update(values)
    return Loaded(records, places, None)


def label_field(recipe: Recipe) -> str | None:
    """The field to build a vocabulary on (None for generative tasks)."""
    return TASKS.get(recipe.task, "task").label_field(recipe.data)


def _read_all(recipe: Recipe, given: dict | None) -> dict[str, Loaded]:
    """Each split's :class:`Loaded`: passed in from Python, else the recipe's source."""
    cfg, objects = recipe.data, given_splits(given)
    if "train" not in objects and cfg.train is None:
        raise ConfigError(
            "data.train",
            "required key is missing",
            "give data.train: {path: ...} or {dataset: ...}, or pass the training examples "
            "from Python (datasets={'train': ...})",
        )
    read = {}
    for name in SPLITS:
        if name in objects:
            read[name] = read_given(objects[name], name)
        elif (src := getattr(cfg, name)) is not None:
            read[name] = read_split(cfg, src, name)
    return read


def load_raw_splits(recipe: Recipe, given: dict | None = None) -> RawSplits:
    """Read train/dev/test (``given``: splits passed in from Python, which replace the recipe's)
    and check their labels (:mod:`tunesmith.data.checks`); carve missing splits from train
    (seeded, stratified); apply limits; refuse empty splits."""
    cfg = recipe.data
    read = _read_all(recipe, given)
    places = {id(r): p for ld in read.values() for r, p in zip(ld.records, ld.places, strict=True)}
    raw = {name: ld.records for name, ld in read.items()}
    prints = {name: ld.fingerprint for name, ld in read.items()}
    check_labels(recipe, raw, places)
    check_records(recipe, raw, places)
    if cfg.split:
        fractions = dict(cfg.split)
        fractions["train"] = 1.0 - sum(fractions.values())
        key = TASKS.get(recipe.task, "task").stratify_field(cfg)
        raw.update(stratified_split(raw["train"], fractions, seed=recipe.seed, label_key=key))
        base = prints["train"]
        prints.update(
            {n: _derived(base, recipe.seed, sorted(fractions.items()), n) for n in fractions}
        )
    for name, n in cfg.limit.items():
        if name not in raw:
            raise DataError(f"data.limit.{name}: there is no {name} split")
        if n < len(raw[name]):
            raw[name] = raw[name][:n]
            prints[name] = _derived(prints[name], "limit", n)
    if not raw["train"]:
        raise DataError("data.train: no training examples were read")
    sources = {n: s.location for n in SPLITS if (s := getattr(cfg, n)) is not None}
    check_not_empty(raw, {**sources, **{n: f"datasets[{n}]" for n in given_splits(given)}})
    return RawSplits(raw, places, {n: f for n, f in prints.items() if f is not None})


def check_labels(recipe: Recipe, raw: dict[str, list[dict]], places: dict[int, Place]) -> None:
    """The checks of :mod:`tunesmith.data.checks` on each file as read (before any split)."""
    key = label_field(recipe)
    if key is None:
        return
    cfg, per_token = recipe.data, TASKS.get(recipe.task, "task").per_token
    for name, records in raw.items():
        counts = check_file_labels(name, records, places, key, per_token, cfg.labels)
        if name == "train" and cfg.labels is None and not cfg.allow_rare_labels:
            check_rare_labels(records, places, key, per_token, counts)


def check_records(recipe: Recipe, raw: dict[str, list[dict]], places: dict[int, Place]) -> None:
    """The task kind's own record checks (causal LM: chat formats), ``file:line`` named."""
    check = TASKS.get(recipe.task, "task").check_records
    for name, records in raw.items() if check else ():
        check(recipe.data, records, lambda rec, i, name=name: where(places, rec, name, i))


def build_vocab(recipe: Recipe, raw: dict[str, list[dict]], saved: list[str] | None = None):
    """The label vocabulary (None for generative tasks): ``saved`` (a finished run's
    ``labels.json``), else ``data.labels``, else the sorted training labels; named by
    ``data.label_names``. Every split's labels must be in it (``file:line`` when not)."""
    key = label_field(recipe)
    if key is None:
        log_label_counts(raw, Counter())
        return None
    cfg = recipe.data
    if saved is not None:
        labels = list(saved)
    elif cfg.labels is not None:
        labels = list(cfg.labels)
    else:
        labels = LabelVocab.from_records(raw["train"], key).labels
    vocab = LabelVocab(labels, names=cfg.label_names)
    per_token = TASKS.get(recipe.task, "task").per_token
    places = getattr(raw, "places", {})
    check_in_vocab(raw, places, key, per_token, vocab.labels)
    counts = Counter(
        label
        for i, rec in enumerate(raw["train"])
        for label in record_labels(rec, key, per_token, where(places, rec, "train", i))
    )
    log_label_counts(raw, Counter({vocab.name(label): n for label, n in counts.items()}))
    return vocab


def encode_split(
    recipe: Recipe,
    records: list[dict],
    tokenizer,
    vocab,
    where: str,
    fingerprint: str | None = None,
) -> list[dict]:
    """Token ids of one split, by the recipe's task kind (its ``encode`` in the task table);
    with a data ``fingerprint`` (a dataset source, a Dataset passed in) through ``datasets.map``
    and the tokenisation cache (:mod:`tunesmith.data.tokcache`)."""
    kind = TASKS.get(recipe.task, "task")

    def encode(recs: list[dict]) -> list[dict]:
        return kind.encode(recipe.data, recs, tokenizer, vocab, where)

    if fingerprint is None:
        return encode(records)
    labels = vocab.labels if vocab is not None else None
    key = cache_key(fingerprint, tokenizer, task=recipe.task, data=recipe.data, labels=labels)
    return encode_cached(records, encode, key, where)


def build_datasets(
    recipe: Recipe, tokenizer, saved_labels: list[str] | None = None, given: dict | None = None
) -> Datasets:
    """Encoded splits of a single-task recipe; ``given`` (split -> Dataset | list of dicts, or a
    DatasetDict) replaces the recipe's sources for the splits it has."""
    raw = load_raw_splits(recipe, given)
    vocab = build_vocab(recipe, raw, saved_labels)
    encoded = {
        name: encode_split(
            recipe, records, tokenizer, vocab, f"data.{name}", raw.fingerprints.get(name)
        )
        for name, records in raw.items()
    }
    if recipe.data.packing:  # training rows only: dev/test keep one example per row
        encoded["train"] = pack_examples(encoded["train"], recipe.data.max_length)
    return Datasets(encoded["train"], encoded.get("dev"), encoded.get("test"), vocab, raw)


@dataclass
class TaskDatasets:
    """A multi-task recipe's data: each task's :class:`Datasets` (their own dev/test splits and
    label vocabularies), and the concatenated train examples (each tagged with its ``task``) that
    the mixture sampler indexes via ``offsets``."""

    tasks: dict[str, Datasets]
    train: list[dict]
    offsets: dict[str, int]


def build_task_datasets(recipe: Recipe, tokenizer: Any) -> TaskDatasets:
    tasks = {
        t.name: (
            build_text_datasets(recipe.task_recipe(i), tokenizer, recipe.task, t)
            if recipe.text_to_text
            else build_datasets(recipe.task_recipe(i), tokenizer)
        )
        for i, t in enumerate(recipe.tasks)
    }
    train, offsets = concat_tasks({name: ds.train for name, ds in tasks.items()})
    return TaskDatasets(tasks, train, offsets)


def text_format(recipe: Recipe, text: TextConfig, name: str, labels: list[str]) -> TextFormat:
    """The :class:`~tunesmith.data.textformat.TextFormat` of one text-to-text task."""
    cfg = recipe.data
    if text.fields:
        fields = tuple((f[0], f[1]) for f in text.fields)
    elif cfg.text_pair_key:
        fields = (("sentence1", cfg.text_key), ("sentence2", cfg.text_pair_key))
    else:
        fields = (("sentence", cfg.text_key),)
    prefix = name if text.prefix is None else text.prefix
    words = verbaliser(labels, text.words)
    return TextFormat(prefix, fields, label_key=cfg.label_key, words=words)


def text_pairs_config(cfg: DataConfig) -> DataConfig:
    """``cfg`` reading ``source`` -> ``target`` pairs: the prompt/response (causal LM) and
    source/target (seq2seq) fields, the whole response trained, no seq2seq prefix (the text
    format already wrote the task's prefix into the source)."""
    return dataclasses.replace(
        cfg,
        chat_format="alpaca",
        prompt_key="source",
        response_key="target",
        lm_text_key=None,
        mask_prompt=True,
        source_key="source",
        target_key="target",
        prefix="",
    )


def build_text_datasets(
    recipe: Recipe,
    tokenizer: Any,
    parent: str,
    task: TaskConfig,
    saved_labels: list[str] | None = None,
) -> Datasets:
    """One text-to-text task (T5 style): ``recipe`` is its :meth:`Recipe.task_recipe` view,
    ``parent`` the generative task (causal_lm | seq2seq), ``task`` its :class:`TaskConfig`.
    Records are read and split as for classification, written as ``prefix name: value`` ->
    label word pairs and encoded for the generative model."""
    name, text = task.name, task.text
    raw = load_raw_splits(recipe)
    vocab = build_vocab(recipe, raw, saved_labels)
    fmt = text_format(recipe, text, name, vocab.labels)
    cfg = recipe.data
    pair_config = text_pairs_config(cfg)
    encoded, text_eval = {}, {}
    for split, records in raw.items():
        for i, rec in enumerate(records):  # an unknown label fails here, its place named
            vocab.encode(rec.get(cfg.label_key), where=f"tasks.{name}.data.{split} record {i}")
        pairs = fmt.to_pairs(records)
        encoded[split] = TASKS.get(parent, "task").encode(
            pair_config, pairs, tokenizer, None, f"tasks.{name}.data.{split}"
        )
        text_eval[split] = ([p["source"] for p in pairs], [p["target"] for p in pairs])
    words = [fmt.target(label) for label in vocab.labels]
    return Datasets(
        encoded["train"],
        encoded.get("dev"),
        encoded.get("test"),
        vocab,
        raw,
        text_eval=text_eval,
        label_words=words,
    )


def check_data(recipe: Recipe) -> list[str]:
    """Read every data file of ``recipe`` fully (each task's, for several tasks) and run the
    checks ``train`` runs before loading a model: decoding with the given ``encoding`` (a
    failure names ``file:line`` and the byte offset), malformed lines, labels, label names and
    empty splits. Returns one summary line per task; ``tunesmith validate`` prints them."""
    views = [recipe.task_recipe(i) for i in range(len(recipe.tasks))] or [recipe]
    names = [t.name for t in recipe.tasks] or [""]
    lines = []
    for name, view in zip(names, views, strict=True):
        raw = load_raw_splits(view)
        vocab = build_vocab(view, raw)
        sizes = ", ".join(f"{split} {len(records):,}" for split, records in raw.items())
        labels = f"; {len(vocab)} labels" if vocab is not None else ""
        lines.append(f"data{f' ({name})' if name else ''}: {sizes} examples{labels}")
    return lines

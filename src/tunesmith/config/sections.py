"""The sections of a recipe that say what is trained on and with what (``data:``, ``head:``,
``objectives:``, ``distill:``, ``student:``, ``tasks:``, ``mixing:``): typed dataclasses with help
text under every field. How it is trained (``transfer:``, ``optim:``, ``train:``) is in
:mod:`tunesmith.config.training`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tunesmith import paths
from tunesmith.config.checks import check_choice
from tunesmith.configschema import fld
from tunesmith.errors import ConfigError
from tunesmith.registry import FORMATS


@dataclass
class SplitSource:
    """Where one split's examples come from and how to read them: a file or folder read by
    tunesmith's readers (``path``), or a 🤗 dataset (``dataset``)."""

    path: str | None = fld(
        None,
        "file or folder; a relative path is looked up beside the recipe file, then under "
        "data.root / $TUNESMITH_DATA; `embedded:bbc_news` is the demo corpus",
    )
    dataset: str | None = fld(
        None,
        "instead of path: a 🤗 dataset, read with the `datasets` library: a local data file "
        "(parquet, arrow, csv, json, jsonl), a folder of them or a save_to_disk folder (relative "
        "paths as for path), else a hub name (needs the hub: not with HF_HUB_OFFLINE)",
    )
    config: str | None = fld(None, "dataset: the dataset's configuration (subset), e.g. sst2")
    split: str | None = fld(
        None,
        "dataset: which split to read (default: this split's name; dev also finds "
        "validation; a dataset with one split, e.g. one data file, gives that split)",
    )
    revision: str | None = fld(None, "dataset: hub revision (branch, tag or commit)")
    format: str | None = fld(
        None, "reader (see `tunesmith list`); inferred from the extension when null"
    )
    encoding: str = fld("utf-8", "text encoding, e.g. latin-1")
    delimiter: str | None = fld(None, "CSV/TSV column delimiter override")
    quoting: bool = fld(True, "CSV/TSV: honour quotes (false = csv.QUOTE_NONE, as GLUE needs)")
    header: bool | None = fld(
        None, "first row is a header (default: yes for CSV/TSV, no otherwise)"
    )
    columns: list[str] | dict[str, str] | None = fld(
        None,
        "a list: CSV/TSV column names when header is false; a mapping: rename fields as read, "
        "{tunesmith field: field in the data}, e.g. {text: sentence, label: label}",
    )
    separator: str | None = fld(None, "label_text: label/text separator (default whitespace)")
    label_position: Literal["first", "last"] = fld("first", "label_text: label before or after")
    label_sep: str | None = fld(None, "label_text: keep the label part before this, e.g. ':'")
    on_error: Literal["raise", "skip"] = fld("raise", "malformed lines: stop, or skip and warn")

    @classmethod
    def from_string(cls, path: str) -> SplitSource:
        """``train: some/file.jsonl`` is short for ``train: {path: some/file.jsonl}``."""
        return cls(path=path)

    @property
    def location(self) -> str:
        """The path or the dataset name (for messages)."""
        return self.path if self.path is not None else self.dataset

    def validate(self, path: str) -> None:
        if (self.path is None) == (self.dataset is None):
            raise ConfigError(
                path,
                "give either path (a file read by tunesmith) or dataset (a 🤗 dataset)",
                "e.g. {path: train.jsonl} or {dataset: train.parquet}",
            )
        if self.dataset is None:
            for key in ("config", "split", "revision"):
                if getattr(self, key) is not None:
                    raise ConfigError(f"{path}.{key}", "only for dataset sources", "set dataset:")
        elif self.format is not None:
            raise ConfigError(
                f"{path}.format", "not for dataset sources (datasets infers it)", "remove it"
            )
        if self.format is not None:  # the names the data formats registered (registry.FORMATS)
            check_choice(f"{path}.format", self.format, FORMATS.names())
        if isinstance(self.columns, dict) and not all(
            isinstance(v, str) for v in self.columns.values()
        ):
            raise ConfigError(f"{path}.columns", "map each field to a column name (a string)")

    def renames(self) -> dict[str, str]:
        """{field in the data: tunesmith field} from a ``columns`` mapping (empty for a list)."""
        return {v: k for k, v in self.columns.items()} if isinstance(self.columns, dict) else {}

    def header_columns(self) -> list[str] | None:
        """The CSV/TSV column names (a ``columns`` list), else None."""
        return self.columns if isinstance(self.columns, list) else None


@dataclass
class DataConfig:
    root: str | None = fld(None, "data root; default $TUNESMITH_DATA or ../shared/data")
    train: SplitSource | None = fld(
        None, "training examples (may be left out when datasets are passed in from Python)"
    )
    dev: SplitSource | None = fld(None, "dev examples (carved from train by `split` when null)")
    test: SplitSource | None = fld(None, "test examples (carved from train by `split` when null)")
    split: dict[str, float] = fld(
        {},
        "fractions carved from train when dev/test are missing, "
        "e.g. {dev: 0.1, test: 0.2}; stratified by label, seeded",
    )
    text_key: str = fld("text", "field holding the input text (classification)")
    text_pair_key: str | None = fld(None, "second text field for pair tasks (RTE, MRPC)")
    label_key: str = fld("label", "field holding the label")
    labels: list[str | int] | None = fld(
        None,
        "the label set, in class-id order (default: the sorted training labels); any other "
        "label in any split is then an error naming file:line",
    )
    label_names: dict[str, str] | None = fld(
        None,
        "display name per raw label, e.g. {'0': very negative, '4': very positive}; used by "
        "predict, report.md and the saved model's id2label (unnamed labels show as themselves)",
    )
    allow_rare_labels: bool = fld(
        False,
        "accept classes seen only once or twice in a training file of >= 20 examples "
        "(otherwise an error: usually a malformed line)",
    )
    tokens_key: str = fld("tokens", "token classification: field with the word list")
    tags_key: str = fld("tags", "token classification: field with the tag list")
    chat_format: Literal["auto", "messages", "prompt_completion", "sharegpt", "alpaca", "plain"] = (
        fld(
            "auto",
            "causal LM record format; auto detects messages / conversations (sharegpt) / "
            "prompt+completion / alpaca from a split's first record",
        )
    )
    template: Literal["chat", "alpaca", "plain", "raw"] = fld(
        "chat", "causal LM prompt format (raw: the prompt text as it is)"
    )
    prompt_key: str | None = fld(None, "causal LM: prompt field (default alpaca instruction+input)")
    response_key: str = fld("output", "causal LM: response field")
    lm_text_key: str | None = fld(None, "causal LM: plain-text field (no prompt/response)")
    system: str | None = fld(None, "causal LM: system prompt for the chat template")
    mask_prompt: bool = fld(True, "causal LM: loss only on the response tokens")
    packing: bool = fld(
        False,
        "causal LM: pack training examples into max_length rows (best-fit decreasing), "
        "attention kept within each example; fewer, fuller batches",
    )
    source_key: str = fld("source", "seq2seq: input field")
    target_key: str = fld("target", "seq2seq: output field")
    prefix: str = fld("", "seq2seq: task prefix prepended to the input (T5 style)")
    max_length: int = fld(128, "maximum tokens per example (inputs)")
    max_target_length: int = fld(128, "seq2seq: maximum target tokens")
    limit: dict[str, int] = fld({}, "cap examples per split after splitting, e.g. {train: 500}")

    def validate(self, path: str) -> None:
        # data.train may be missing here: datasets passed in from Python replace it; without
        # them the data pipeline refuses (pipeline.load_raw_splits), so `validate` does too
        bad = set(self.split) - {"dev", "test"}
        if bad:
            raise ConfigError(
                f"{path}.split", f"unknown split {sorted(bad)}", "use dev and/or test"
            )
        if sum(self.split.values()) >= 1.0 or any(v <= 0 for v in self.split.values()):
            raise ConfigError(f"{path}.split", "fractions must be > 0 and sum to < 1")
        for name in self.split:
            if getattr(self, name) is not None:
                raise ConfigError(
                    f"{path}.split.{name}",
                    f"data.{name} is given explicitly",
                    f"remove data.{name} or split.{name}",
                )
        if self.max_length < 8:
            raise ConfigError(f"{path}.max_length", "must be >= 8")
        if self.max_target_length < 1:
            raise ConfigError(f"{path}.max_target_length", "must be >= 1")
        for split, n in self.limit.items():
            if n < 1:
                raise ConfigError(f"{path}.limit.{split}", f"must be >= 1, got {n}")
        self.validate_labels(path)

    def validate_labels(self, path: str) -> None:
        """``labels`` and ``label_names`` keys become strings (as labels in data files are);
        duplicate labels, or names of labels outside a declared set, are errors."""
        if self.labels is not None:
            self.labels = [str(x) for x in self.labels]
            twice = sorted({x for x in self.labels if self.labels.count(x) > 1})
            if twice or not self.labels:
                what = f"lists {twice} twice" if twice else "is empty"
                raise ConfigError(f"{path}.labels", what, "list each label once")
        if self.label_names is not None:
            self.label_names = {str(k): v for k, v in self.label_names.items()}
            unknown = sorted(set(self.label_names) - set(self.labels or self.label_names))
            if unknown:
                raise ConfigError(
                    f"{path}.label_names",
                    f"names {unknown}, which are not in {path}.labels {self.labels}",
                )

    def root_path(self) -> Path:
        return Path(self.root).expanduser().resolve() if self.root else paths.data_root()


@dataclass
class HeadConfig:
    """The task head of a single-task sequence classifier (``task: sequence_classification``)."""

    pooling: Literal["auto", "cls", "mean", "pooler"] = fld(
        "auto",
        "what the head reads: pooler (BERT's tanh over [CLS], transformers' default), cls (the "
        "first token state) or mean (masked mean of the token states); auto = the checkpoint's "
        "own pooling (mean for sentence-transformers models) when the pooler stays frozen "
        "(linear probe, adapters), else pooler",
    )


@dataclass
class ObjectiveConfig:
    """One extra loss term added to the task loss (see ``tunesmith list``)."""

    name: str = fld(help="registered objective term, e.g. l2_sp")
    weight: float = fld(1.0, "multiplier of the term")
    params: dict[str, Any] = fld({}, "term-specific options")


@dataclass
class FromTeacherConfig:
    layers: Literal["every_other", "keep_ends", "evenly"] | list[int] = fld(
        "every_other",
        "teacher blocks copied into the student: every_other (DistilBERT), keep_ends (first and "
        "last blocks, drop a middle run: decoders heal best), evenly (n spread out), or a list",
    )
    n: int | None = fld(None, "blocks kept by keep_ends / evenly (default: half, rounded up)")
    report_choices: bool = fld(
        False, "also log / record the loss before training of every preset at the same n"
    )

    def validate(self, path: str) -> None:
        if self.n is not None and self.n < 1:
            raise ConfigError(f"{path}.n", f"must be >= 1, got {self.n}")


@dataclass
class StudentConfig:
    from_teacher: FromTeacherConfig | None = fld(
        None, "build the student from the teacher's embeddings, chosen blocks and head"
    )


@dataclass
class TeacherSpec:
    """One of several teachers (``distill.teachers``)."""

    model: str = fld(help="a tunesmith run dir, a local folder, an embedded name or hub id")
    weight: float = fld(1.0, "its share of the mixture (weights are normalised to sum to 1)")


@dataclass
class DistillConfig:
    """Knowledge distillation: which teacher(s), and whether their outputs are cached on disk."""

    teacher: str | None = fld(
        None, "teacher: a tunesmith run dir, a local folder, an embedded name or hub id"
    )
    teachers: list[TeacherSpec] | None = fld(
        None,
        "several teachers with one tokenizer / label set: [{model, weight}, ...] (instead of "
        "teacher); their weighted mixture teaches",
    )
    mode: Literal["mixture", "per_example"] = fld(
        "mixture",
        "several teachers: mixture of their distributions, or per_example (the teacher with the "
        "lowest loss on each example's labels teaches it)",
    )
    cache: bool = fld(False, "compute the teacher's train outputs once and reuse them from disk")
    cache_dir: str | None = fld(
        None, "teacher cache root (default: <TUNESMITH_CACHE>/teacher_outputs)"
    )
    top_k: int = fld(
        32, "causal LM cache: keep the teacher's top-k log-probs per token (plus a tail bucket)"
    )

    def validate(self, path: str) -> None:
        if self.top_k < 1:
            raise ConfigError(f"{path}.top_k", "must be >= 1")
        # a saved recipe repeats teachers[0] as teacher (set below): that is not a second one
        both = self.teachers and self.teacher not in (None, self.teachers[0].model)
        if both or (self.teacher is None and not self.teachers):
            raise ConfigError(
                path, "give exactly one of teacher and teachers", "teacher: x, or teachers: [...]"
            )
        if self.teachers:
            for i, t in enumerate(self.teachers):
                if not t.weight > 0:
                    raise ConfigError(
                        f"{path}.teachers[{i}].weight", f"must be > 0, got {t.weight}"
                    )
            self.teacher = self.teachers[0].model  # tokenizer, fingerprint, paths: the first one

    @property
    def teacher_specs(self) -> list[tuple[str, float]]:
        """[(model, weight), ...]: the one teacher with weight 1, or every listed teacher."""
        if self.teachers:
            return [(t.model, t.weight) for t in self.teachers]
        return [(self.teacher, 1.0)]


@dataclass
class TextConfig:
    """How a classification task is written as text for a text-to-text model (T5 section 2.4):
    ``source = "<prefix> <name>: <record[key]> ..."``, ``target = words[label]``."""

    prefix: str | None = fld(None, "task prefix starting every input (default: the task name)")
    fields: list[list[str]] | None = fld(
        None,
        "[[name, record key], ...] written after the prefix, e.g. [[sentence, text]] "
        "(default: [[sentence, data.text_key]] plus [[sentence2, data.text_pair_key]])",
    )
    words: dict[str, str] = fld({}, "label -> target word, e.g. {'0': negative, '1': positive}")

    def validate(self, path: str) -> None:
        for i, f in enumerate(self.fields or []):
            if len(f) != 2 or not all(isinstance(x, str) for x in f) or not f[1]:
                raise ConfigError(
                    f"{path}.fields[{i}]",
                    "each field is [name, record key]",
                    "e.g. [sentence, text]",
                )


@dataclass(kw_only=True)
class TaskConfig:
    """One task of a multi-task recipe: its data and its head (``task: multi_head``) or its text
    format (text-to-text: ``task: causal_lm`` / ``seq2seq``)."""

    name: str = fld(help="task name (prefixes its metrics, e.g. sst2/accuracy)")
    head: str | None = fld(
        None, "multi_head: the task's head on the shared encoder (a classification task kind)"
    )
    text: TextConfig | None = fld(
        None, "text-to-text (task: causal_lm | seq2seq): prefix, fields and label words"
    )
    data: DataConfig = fld(help="the task's datasets (same keys as the top-level data section)")
    weight: float | None = fld(None, "mixing weight (mixing.strategy: explicit)")
    pooling: Literal["pooler", "cls", "mean"] | None = fld(
        None, "sequence head input (default: the pooler when present)"
    )
    metric: str | None = fld(None, "metric this task adds to the mean (default by head)")


@dataclass
class MixingConfig:
    """How often each task's batches are drawn (Raffel et al. 2020, T5 section 3.5.2)."""

    strategy: Literal["proportional", "temperature", "equal", "explicit"] = (
        fld(  # MIXING_STRATEGIES
            "proportional",
            "rate of task m: min(e_m, K) / sum_n min(e_n, K); temperature: "
            "proportional to min(e_m, K)^(1/T); equal; explicit task weights",
        )
    )
    cap: int | None = fld(None, "K, the examples-proportional limit (null = no cap)")
    temperature: float | None = fld(None, "T for strategy temperature (default 2, as in T5)")

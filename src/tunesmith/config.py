"""Recipe dataclasses: the whole of a run, typed, with help text under every field.

A recipe is YAML; :func:`load_recipe` parses it, applies ``key.sub=value`` overrides, builds these
dataclasses (unknown keys, wrong types and impossible combinations fail with the key path and a hint)
and checks that every data file exists, all before any model loads.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from tunesmith import paths
from tunesmith.configschema import apply_overrides, build, fld, to_dict
from tunesmith.errors import ConfigError
from tunesmith.paths import resolve_path
from tunesmith.registry import ADAPTERS, FORMATS, OBJECTIVES, TASKS

MULTI_HEAD = "multi_head"
"""``task: multi_head``: several tasks, one head each on a shared encoder (not a task kind)."""

HeadType = Literal["sequence_classification", "token_classification"]


@dataclass
class SplitSource:
    """Where one split's examples come from and how to read them."""

    path: str = fld(
        help="file or folder; relative paths resolve against data.root; "
        "`embedded:bbc_news` is the demo corpus"
    )
    format: str | None = fld(
        None, "reader (see `tunesmith list`); inferred from the extension when null"
    )
    encoding: str = fld("utf-8", "text encoding, e.g. latin-1")
    delimiter: str | None = fld(None, "CSV/TSV column delimiter override")
    quoting: bool = fld(True, "CSV/TSV: honour quotes (false = csv.QUOTE_NONE, as GLUE needs)")
    header: bool | None = fld(
        None, "first row is a header (default: yes for CSV/TSV, no otherwise)"
    )
    columns: list[str] | None = fld(None, "CSV/TSV column names when header is false")
    separator: str | None = fld(None, "label_text: label/text separator (default whitespace)")
    label_position: Literal["first", "last"] = fld("first", "label_text: label before or after")
    label_sep: str | None = fld(None, "label_text: keep the label part before this, e.g. ':'")
    on_error: Literal["raise", "skip"] = fld("raise", "malformed lines: stop, or skip and warn")

    @classmethod
    def from_string(cls, path: str) -> SplitSource:
        """``train: some/file.jsonl`` is short for ``train: {path: some/file.jsonl}``."""
        return cls(path=path)

    def validate(self, path: str) -> None:
        if self.format is not None:  # the names the data formats registered (registry.FORMATS)
            _check_choice(f"{path}.format", self.format, FORMATS.names())


@dataclass
class DataConfig:
    root: str | None = fld(None, "data root; default $TUNESMITH_DATA or ../shared/data")
    train: SplitSource | None = fld(None, "training examples")
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
    labels: list[str] | None = fld(None, "explicit label vocabulary (default: sorted train labels)")
    tokens_key: str = fld("tokens", "token classification: field with the word list")
    tags_key: str = fld("tags", "token classification: field with the tag list")
    template: Literal["chat", "alpaca", "plain"] = fld("chat", "causal LM prompt format")
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
        if self.train is None:
            raise ConfigError(
                f"{path}.train",
                "required key is missing",
                "give data.train: {path: ..., format: ...}",
            )
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

    def root_path(self) -> Path:
        return Path(self.root).expanduser().resolve() if self.root else paths.data_root()


@dataclass
class GradualUnfreezeConfig:
    every: int = fld(1, "unfreeze one more layer group every this many `unit`s (ULMFiT)")
    unit: Literal["steps", "epochs"] = fld("epochs", "what `every` counts")

    def validate(self, path: str) -> None:
        if self.every < 1:
            raise ConfigError(f"{path}.every", "must be >= 1")


@dataclass
class TransferConfig:
    freeze_embeddings: bool = fld(False, "freeze the token/position embeddings")
    freeze_layers: int = fld(0, "freeze the first N transformer blocks (bottom up)")
    freeze_patterns: list[str] = fld([], "freeze parameters whose name matches (glob)")
    unfreeze_patterns: list[str] = fld([], "keep these trainable whatever else is frozen (glob)")
    linear_probe: bool = fld(False, "train the task head only")
    gradual_unfreeze: GradualUnfreezeConfig | None = fld(None, "ULMFiT gradual unfreezing")
    layerwise_lr_decay: float | None = fld(
        None, "discriminative LRs: block i gets lr*decay^(L+1-i)"
    )

    def validate(self, path: str) -> None:
        if self.freeze_layers < 0:
            raise ConfigError(f"{path}.freeze_layers", "must be >= 0")
        if self.linear_probe and self.gradual_unfreeze:
            raise ConfigError(
                f"{path}.gradual_unfreeze",
                "cannot be combined with linear_probe",
                "a linear probe never unfreezes the backbone",
            )
        d = self.layerwise_lr_decay
        if d is not None and not 0 < d <= 1:
            raise ConfigError(f"{path}.layerwise_lr_decay", f"must be in (0, 1], got {d}")


@dataclass
class OptimConfig:
    lr: float = fld(5e-5, "peak learning rate (AdamW)")
    weight_decay: float = fld(0.01, "decoupled weight decay; never applied to biases and norms")
    betas: list[float] = fld([0.9, 0.999], "AdamW betas")
    eps: float = fld(1e-8, "AdamW epsilon")
    schedule: Literal["linear", "cosine", "constant"] = fld("linear", "LR schedule after warmup")
    warmup_ratio: float = fld(0.06, "warmup as a fraction of the optimiser steps")
    warmup_steps: int | None = fld(None, "warmup in steps (overrides warmup_ratio)")
    min_lr_ratio: float = fld(0.0, "cosine: final LR as a fraction of the peak")
    max_grad_norm: float | None = fld(1.0, "clip the global gradient norm (null = off)")
    grad_accum: int = fld(1, "micro-batches per optimiser step")

    def validate(self, path: str) -> None:
        if self.lr <= 0:
            raise ConfigError(f"{path}.lr", f"must be > 0, got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"{path}.betas", "must be two numbers in [0, 1)")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"{path}.warmup_ratio", "must be in [0, 1)")
        if self.grad_accum < 1:
            raise ConfigError(f"{path}.grad_accum", "must be >= 1")


@dataclass
class TrainConfig:
    batch_size: int = fld(32, "examples per micro-batch (per process)")
    eval_batch_size: int = fld(64, "examples per evaluation batch")
    epochs: float = fld(3, "passes over the training data (may be fractional)")
    max_steps: int | None = fld(None, "stop after this many optimiser steps (overrides epochs)")
    eval_every: int | None = fld(None, "evaluate on dev every N optimiser steps (null = per epoch)")
    eval_at_start: bool = fld(False, "also evaluate dev before the first step (logged at step 0)")
    save_every: int | None = fld(None, "checkpoint every N steps (null = at each evaluation)")
    log_every: int = fld(10, "log training metrics every N optimiser steps")
    metric: str | None = fld(
        None,
        "dev metric for best checkpoint/early stopping "
        "(default: accuracy, entity_f1 or loss by task)",
    )
    early_stopping_patience: int | None = fld(None, "stop after N evaluations without improvement")
    keep_checkpoints: int = fld(1, "resumable checkpoints to keep (besides best/)")
    precision: Literal["fp32", "bf16"] = fld("fp32", "bf16 autocast (GPUs; slow on most CPUs)")
    length_grouping: bool = fld(True, "batch similar lengths together to cut padding")
    tensorboard: bool = fld(True, "also write TensorBoard scalars (when installed)")
    progress: bool = fld(True, "tqdm progress bar")
    num_workers: int = fld(0, "DataLoader workers")
    generate_max_new_tokens: int = fld(64, "causal LM/seq2seq: tokens generated by predict")

    def validate(self, path: str) -> None:
        for name in ("batch_size", "eval_batch_size", "log_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{path}.{name}", "must be >= 1")
        if self.epochs <= 0 and not self.max_steps:
            raise ConfigError(f"{path}.epochs", "must be > 0 (or set max_steps)")


@dataclass
class ObjectiveConfig:
    """One extra loss term added to the task loss (see ``tunesmith list``)."""

    name: str = fld(help="registered objective term, e.g. l2_sp")
    weight: float = fld(1.0, "multiplier of the term")
    params: dict[str, Any] = fld({}, "term-specific options")


@dataclass
class FromTeacherConfig:
    layers: Literal["every_other"] | list[int] = fld(
        "every_other", "teacher blocks copied into the student (DistilBERT: every other one)"
    )


@dataclass
class StudentConfig:
    from_teacher: FromTeacherConfig | None = fld(
        None, "build the student from the teacher's embeddings, chosen blocks and head"
    )


@dataclass
class DistillConfig:
    """Knowledge distillation: which teacher, and whether its outputs are cached on disk."""

    teacher: str = fld(
        help="teacher: a tunesmith run dir, a local folder, an embedded name or hub id"
    )
    cache: bool = fld(False, "compute the teacher's train outputs once and reuse them from disk")
    cache_dir: str | None = fld(
        None, "teacher cache root (default: <TUNESMITH_CACHE>/teacher_outputs)"
    )
    top_k: int = fld(32, "causal LM cache: keep the teacher's top-k log-probs per token")

    def validate(self, path: str) -> None:
        if self.top_k < 1:
            raise ConfigError(f"{path}.top_k", "must be >= 1")


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
    head: HeadType | None = fld(None, "multi_head: the task's head on the shared encoder")
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


@dataclass(kw_only=True)
class Recipe:
    model: str | None = fld(
        None,
        "embedded name (minilm, smollm2), local folder or hub id "
        "(may be left out when student.from_teacher builds the model)",
    )
    task: str = fld(help="task kind (see `tunesmith list`), or multi_head")
    data: DataConfig | None = fld(None, "datasets and formatting (single-task recipes)")
    tasks: list[TaskConfig] = fld([], "multi-task recipes (task: multi_head): one entry per task")
    mixing: MixingConfig = fld(MixingConfig(), "multi-task sampling rates")
    output_dir: str = fld("runs/run", "run directory (checkpoints, metrics, report)")
    seed: int = fld(42, "seed for data order, splits, head init and dropout")
    from_scratch: bool = fld(False, "random init of the same architecture (baseline)")
    transfer: TransferConfig = fld(TransferConfig(), "freezing, unfreezing, discriminative LRs")
    optim: OptimConfig = fld(OptimConfig(), "optimiser and schedule")
    train: TrainConfig = fld(TrainConfig(), "loop settings")
    objectives: list[ObjectiveConfig] = fld([], "extra loss terms added to the task loss")
    task_weight: float = fld(1.0, "multiplier of the task loss (Hinton KD: 1 - alpha)")
    adapter: dict[str, Any] | str | None = fld(
        None,
        "parameter-efficient adapter, e.g. {type: lora, r: 8} or houlsby (see `tunesmith "
        "list`); tunesmith keys inside it: name (default 'default'), train_head (default: true "
        "for classification)",
    )
    distill: DistillConfig | None = fld(None, "teacher for distillation terms")
    student: StudentConfig | None = fld(None, "how the student model is built (distillation)")

    def validate(self, path: str) -> None:
        _check_choice("task", self.task, [*TASKS.names(), MULTI_HEAD])
        kind = TASKS.get(self.task) if self.task in TASKS else None
        if self.task == MULTI_HEAD or self.text_to_text:
            self.validate_tasks()
        elif self.data is None:
            raise ConfigError("data", "required key is missing", "give data: {train: ...}")
        elif self.tasks:
            raise ConfigError(
                "tasks",
                f"only for task: multi_head or text-to-text (causal_lm / seq2seq), not {self.task}",
                "set task: multi_head, or move the data to the data section",
            )
        packed = [t.name for t in self.tasks if t.data.packing]
        packable = [e.name for e in TASKS if e.obj.packable]
        if (self.data and self.data.packing and self.task not in packable) or packed:
            raise ConfigError(
                "data.packing" if not packed else f"tasks[{packed[0]}].data.packing",
                f"sequence packing is for single-task {' / '.join(packable)} fine-tuning",
            )
        if kind is not None and not kind.classification and self.data and self.data.labels:
            raise ConfigError("data.labels", f"a {self.task} task has no label vocabulary")
        from_teacher = self.student is not None and self.student.from_teacher is not None
        if self.model is None and not from_teacher:
            raise ConfigError(
                "model",
                "required key is missing",
                "name a model, or build one with student.from_teacher",
            )
        if self.model is not None and from_teacher:
            raise ConfigError(
                "model",
                "cannot be combined with student.from_teacher",
                "the student is built from distill.teacher; remove `model`",
            )
        # terms declare it themselves (ObjectiveTerm.needs_teacher); unknown names fail later,
        # with their key path, when the terms are built
        needs_teacher = [
            o.name
            for o in self.objectives
            if o.name in OBJECTIVES and OBJECTIVES.get(o.name).needs_teacher
        ]
        if self.distill is None and (needs_teacher or from_teacher):
            what = f"objective {needs_teacher[0]!r}" if needs_teacher else "student.from_teacher"
            raise ConfigError(
                "distill.teacher",
                f"{what} needs a teacher",
                "add distill: {teacher: <run dir | folder | model name>}",
            )
        if self.task_weight < 0:
            raise ConfigError("task_weight", "must be >= 0")
        if self.adapter is not None:
            self.adapter_settings()  # validates the method's keys with their key paths
            if self.transfer.linear_probe:
                raise ConfigError(
                    "transfer.linear_probe",
                    "cannot be combined with an adapter",
                    "a linear probe freezes the adapter too",
                )

    def adapter_settings(self) -> tuple[str, bool, Any]:
        """(adapter name, train the task head?, validated method config) of ``adapter:``."""
        spec = {"type": self.adapter} if isinstance(self.adapter, str) else dict(self.adapter)
        name = spec.pop("name", "default")
        classification = self.task in TASKS and TASKS.get(self.task).classification
        train_head = spec.pop("train_head", classification)
        if not isinstance(name, str) or not isinstance(train_head, bool):
            raise ConfigError("adapter", "name must be a string and train_head true or false")
        return name, train_head, adapter_config_from_dict(spec, key="adapter")

    def validate_tasks(self) -> None:
        if not self.tasks:
            raise ConfigError("tasks", "a multi_head recipe needs at least one task")
        if self.data is not None:
            raise ConfigError(
                "data", "a multi-task recipe gives data per task", "move it under tasks[].data"
            )
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ConfigError("tasks", f"task names must be unique, got {names}")
        text = self.text_to_text
        for i, t in enumerate(self.tasks):
            if text and t.head is not None:
                raise ConfigError(
                    f"tasks[{i}].head",
                    f"a text-to-text ({self.task}) task has no head",
                    "give text: {prefix, fields, words}, or use task: multi_head",
                )
            if not text and t.head is None:
                raise ConfigError(f"tasks[{i}].head", "required key is missing")
            if not text and t.text is not None:
                raise ConfigError(
                    f"tasks[{i}].text", "only for text-to-text recipes (task: causal_lm | seq2seq)"
                )
        unsupported = ("distill", "student") if text else ("adapter", "distill", "student")
        for what in unsupported:
            if getattr(self, what) is not None:
                raise ConfigError(what, f"is not supported with multi-task {self.task} yet")
        m = self.mixing
        weights = {t.name: t.weight for t in self.tasks} if m.strategy == "explicit" else None
        names = [t.name for t in self.tasks]
        check_mixing(names, m.strategy, cap=m.cap, temperature=m.temperature, weights=weights)

    @property
    def text_to_text(self) -> bool:
        """Several tasks through one generative model (T5 style), not heads on an encoder."""
        return bool(self.tasks) and self.task in TASKS and TASKS.get(self.task).generative

    def task_recipe(self, i: int) -> Recipe:
        """A single-task view of ``tasks[i]`` (its data and head), for the data pipeline; a
        text-to-text task reads as the classification task it is (labels, stratified splits)."""
        t = self.tasks[i]
        task = "sequence_classification" if self.text_to_text else t.head
        return dataclasses.replace(self, task=task, data=t.data, tasks=[])

    @property
    def model_source(self) -> str:
        """Where the student's weights and tokenizer come from."""
        return self.model if self.model is not None else self.distill.teacher


def _check_choice(path: str, value: str, choices: list[str]) -> None:
    """A ConfigError at ``path`` unless ``value`` is one of ``choices`` (with a did-you-mean)."""
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"choose one of {choices}"
        raise ConfigError(path, f"invalid value {value!r}", hint)


MIXING_STRATEGIES = ("proportional", "temperature", "equal", "explicit")


def check_mixing(
    names: list[str],
    strategy: str,
    *,
    cap: int | None = None,
    temperature: float | None = None,
    weights: dict[str, float] | None = None,
) -> None:
    """Check a mixture's settings (:func:`tunesmith.data.mixing.mixing_rates` takes the same
    arguments and calls this): ConfigError with the key path (``mixing.strategy``, ``mixing.cap``,
    ``mixing.temperature``, ``tasks[].weight``) before any data is read."""
    if strategy not in MIXING_STRATEGIES:
        raise ConfigError(
            "mixing.strategy", f"unknown strategy {strategy!r}", f"one of {MIXING_STRATEGIES}"
        )
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ConfigError("mixing.cap", f"must be a positive integer or null, got {cap!r}")
    if weights is not None and strategy != "explicit":
        raise ConfigError(
            "tasks[].weight", f"weights are only used by strategy 'explicit', not {strategy!r}"
        )
    if strategy != "temperature" and temperature is not None:
        raise ConfigError(
            "mixing.temperature",
            f"only used by strategy 'temperature', not {strategy!r}",
            "set mixing.strategy: temperature, or remove the temperature",
        )
    if strategy in ("equal", "explicit") and cap is not None:
        raise ConfigError("mixing.cap", f"only used by proportional/temperature, not {strategy!r}")
    if strategy == "explicit":
        _check_weights(list(names), weights)
    if temperature is not None and not temperature > 0:  # also rejects nan
        raise ConfigError("mixing.temperature", f"must be > 0, got {temperature}")


def _check_weights(names: list[str], weights: dict[str, float] | None) -> None:
    if weights is None:
        raise ConfigError("tasks[].weight", "strategy 'explicit' needs a weight for every task")
    missing = [n for n in names if n not in weights]
    extra = [n for n in weights if n not in names]
    if missing or extra:
        raise ConfigError(
            "tasks[].weight",
            f"weights must name exactly the tasks {names}",
            f"missing {missing}, unknown {extra}" if extra else f"missing {missing}",
        )
    bad = [n for n in names if not (weights[n] >= 0 and math.isfinite(weights[n]))]
    if bad:
        raise ConfigError(
            f"tasks[{bad[0]}].weight", f"must be a finite number >= 0, got {weights[bad[0]]}"
        )
    if float(sum(weights[n] for n in names)) <= 0:
        raise ConfigError("tasks[].weight", "at least one weight must be > 0")


def adapter_config_from_dict(data: Any, key: str = "adapter") -> Any:
    """Build and validate the config of a recipe's ``adapter:`` section.

    ``data`` is a mapping with ``type`` (an :data:`tunesmith.registry.ADAPTERS` name) and that method's fields, or
    just the type name (``adapter: lora``). Unknown keys, wrong types and impossible values fail
    with the key path (``adapter.reduction_factor``) and a hint, before any model loads.
    """
    if isinstance(data, str):
        data = {"type": data}
    if not isinstance(data, dict):
        raise ConfigError(key, f"expected a mapping like {{type: houlsby}}, got {data!r}")
    if "type" not in data:
        raise ConfigError(
            f"{key}.type", "required key is missing", f"choose one of {ADAPTERS.names()}"
        )
    cls = ADAPTERS.get(data["type"], f"{key}.type")
    return build(cls, data, key)


def check_files(recipe: Recipe) -> None:
    """Every data file the recipe names must exist (fails before any model loads)."""
    if recipe.tasks:
        for i in range(len(recipe.tasks)):
            check_files(recipe.task_recipe(i))
        return
    root = recipe.data.root_path()
    for split in ("train", "dev", "test"):
        src = getattr(recipe.data, split)
        if src is None:
            continue
        resolved = resolve_path(src.path, root)
        if not resolved.exists():
            hint = (
                "set TUNESMITH_DATA or data.root to the folder holding the datasets"
                if not Path(src.path).is_absolute()
                else "check the path"
            )
            raise ConfigError(f"data.{split}.path", f"file not found: {resolved}", hint)


def parse_recipe(data: dict, overrides: list[str] | None = None) -> Recipe:
    data = apply_overrides(dict(data), overrides or [])
    return build(Recipe, data)


def read_yaml_mapping(path: Path) -> dict:
    """A recipe file's top-level mapping; missing files and bad YAML name the file (and line)."""
    if not path.is_file():
        raise ConfigError("", f"recipe not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError("", f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError("", f"{path}: a recipe must be a YAML mapping")
    return data


def load_recipe(
    path: str | Path, overrides: list[str] | None = None, check_paths: bool = True
) -> Recipe:
    """Read a YAML recipe, apply overrides, validate types/keys/combinations and data files."""
    path = Path(path)
    data = read_yaml_mapping(path)
    try:
        recipe = parse_recipe(data, overrides)
    except ConfigError as exc:
        raise ConfigError("", f"{path}: {exc}") from None
    if check_paths:
        check_files(recipe)
    return recipe


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(to_dict(recipe), sort_keys=False, allow_unicode=True)

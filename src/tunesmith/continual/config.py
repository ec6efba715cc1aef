"""Task-sequence recipes: shared recipe keys, a ``stages:`` list and a ``continual:`` section.

A sequence recipe is an ordinary recipe (model, task, optim, train, adapter, objectives, ...)
whose ``data`` moves into the stages; each stage names its task and overrides any key::

    model: minilm
    task: sequence_classification
    output_dir: runs/continual/ewc
    train: {batch_size: 32, epochs: 2}
    continual: {method: ewc, ewc_lambda: 1000, fisher: {kind: empirical, max_examples: 512}}
    stages:
      - name: ag_news
        data: {train: ag_news/train.jsonl, split: {dev: 0.1, test: 0.2}}
      - name: sst2
        data: {train: {path: sst2_sentences/train.txt, format: label_text}, ...}

Each stage becomes a full :class:`~tunesmith.config.Recipe` (the shared keys deep-merged with
the stage's), validated with the usual key paths (prefixed ``stages[i].``) before any model
loads.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tunesmith.config import Recipe, check_files, fld, parse_recipe, read_yaml_mapping
from tunesmith.configschema import apply_overrides, build, deep_merge
from tunesmith.continual.state import check_task_name
from tunesmith.errors import ConfigError

__all__ = [
    "METHODS",
    "ContinualConfig",
    "FisherConfig",
    "ReplayConfig",
    "TaskSequence",
    "Stage",
    "load_sequence",
    "parse_sequence",
]

Method = Literal["naive", "ewc", "online_ewc", "l2_anchor", "lwf", "replay", "ewc_replay", "joint"]
METHODS: tuple[str, ...] = Method.__args__  # type: ignore[attr-defined]
FISHER_METHODS = {"ewc", "online_ewc", "ewc_replay"}
REPLAY_METHODS = {"replay", "ewc_replay"}
# keys a stage may not override: the sequence decides them
_FIXED_KEYS = ("model", "task", "output_dir", "from_scratch")


@dataclass
class FisherConfig:
    kind: Literal["empirical", "sampled"] = fld(
        "empirical", "empirical: true labels; sampled: labels drawn from the model (true Fisher)"
    )
    n_samples: int = fld(1, "sampled: labels drawn per example")
    max_examples: int = fld(512, "training examples of the finished task used (seeded subset)")

    def validate(self, path: str) -> None:
        if self.n_samples < 1 or self.max_examples < 1:
            raise ConfigError(path, "n_samples and max_examples must be >= 1")


@dataclass
class ReplayConfig:
    capacity: int = fld(1000, "reservoir size (examples over all earlier tasks)")
    ratio: float = fld(0.25, "replayed examples per new training example")

    def validate(self, path: str) -> None:
        if self.capacity < 1:
            raise ConfigError(f"{path}.capacity", "must be >= 1")
        if self.ratio <= 0:
            raise ConfigError(f"{path}.ratio", "must be > 0")


@dataclass
class ContinualConfig:
    method: Method = fld("naive", "how earlier tasks are protected (see docs/continual.md)")
    heads: Literal["separate", "shared"] = fld(
        "separate",
        "classification: one label projection per task (swapped in to evaluate each task), or "
        "one head over the union of the tasks' labels",
    )
    label_prefix: bool = fld(True, "shared head: name labels '<task>:<label>' (keeps sets apart)")
    restrict_eval_labels: bool = fld(
        True, "shared head: score each task among its own labels only (task-incremental)"
    )
    ewc_lambda: float = fld(1000.0, "EWC / online EWC lambda (the term's weight)")
    online_gamma: float = fld(1.0, "online EWC: F* = gamma * F*_old + F_new")
    l2_lambda: float = fld(0.01, "L2 anchor lambda")
    lwf_lambda: float = fld(1.0, "LwF weight of the distillation term")
    lwf_temperature: float = fld(2.0, "LwF softmax temperature")
    fisher: FisherConfig = fld(FisherConfig(), "diagonal Fisher estimation (EWC methods)")
    replay: ReplayConfig = fld(ReplayConfig(), "experience replay (replay methods)")
    seed: int | None = fld(None, "seed of Fisher subsets, replay and fresh heads (default: seed)")
    eval_split: Literal["test", "dev"] = fld("test", "split each task is scored on for R")
    metric: str | None = fld(
        None, "score in R (default: accuracy; perplexity for causal_lm, lower is better)"
    )
    evaluate_initial: bool = fld(True, "also score the initial model (for FWT)")
    keep_state: bool = fld(
        False,
        "keep every stage's state file and resumable checkpoints (default: only the latest "
        "state; a finished stage's checkpoints are deleted, its best/ kept)",
    )

    def validate(self, path: str) -> None:
        if not 0.0 <= self.online_gamma <= 1.0:
            raise ConfigError(f"{path}.online_gamma", "must be in [0, 1]")
        for key in ("ewc_lambda", "l2_lambda", "lwf_lambda"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{path}.{key}", "must be >= 0")
        if self.lwf_temperature <= 0:
            raise ConfigError(f"{path}.lwf_temperature", "must be > 0")


@dataclass
class Stage:
    """One task of the sequence: its name and its full recipe."""

    name: str
    recipe: Recipe


@dataclass
class TaskSequence:
    stages: list[Stage]
    continual: ContinualConfig
    output_dir: Path


def check_sequence(stages: list[Stage], cfg: ContinualConfig) -> None:
    task = stages[0].recipe.task
    if task not in ("sequence_classification", "causal_lm"):
        raise ConfigError(
            "task",
            f"task sequences support sequence_classification and causal_lm, not {task!r}",
        )
    if cfg.heads == "separate" and task != "sequence_classification":
        raise ConfigError(
            "continual.heads", f"a {task} model has no label head to keep per task", "use shared"
        )
    if stages[0].recipe.adapter is not None and cfg.heads == "separate" and task != "causal_lm":
        raise ConfigError(
            "adapter",
            "task sequences with adapters need one shared head (continual.heads: shared) or a "
            "causal LM: a fresh per-task head cannot be put on an adapter-only checkpoint yet",
            "set continual.heads: shared; each stage then goes on training the same adapter",
        )
    if len(stages) < 2 and cfg.method != "joint":
        raise ConfigError("stages", "a task sequence needs at least two stages")


def parse_sequence(data: dict, overrides: list[str] | None = None) -> TaskSequence:
    """A parsed sequence recipe (see the module docstring) -> validated :class:`TaskSequence`."""
    data = apply_overrides(copy.deepcopy(data), overrides or [])
    raw_stages = data.pop("stages", None)
    cfg = build(ContinualConfig, data.pop("continual", None) or {}, "continual")
    if not isinstance(raw_stages, list) or not raw_stages:
        raise ConfigError("stages", "required: a list of {name, data, ...} entries, one per task")
    stages, names = [], set()
    for i, entry in enumerate(raw_stages):
        where = f"stages[{i}]"
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(where, "each stage is a mapping with a name", "e.g. {name: sst2}")
        entry = dict(entry)
        name = check_task_name(entry.pop("name"), f"{where}.name")
        if name in names:
            raise ConfigError(f"{where}.name", f"duplicate stage name {name!r}")
        names.add(name)
        for key in _FIXED_KEYS:
            if key in entry:
                raise ConfigError(f"{where}.{key}", "is set once for the whole sequence")
        try:
            recipe = parse_recipe(deep_merge(data, entry))
        except ConfigError as exc:
            raise ConfigError(where, str(exc)) from None
        stages.append(Stage(name, recipe))
    check_sequence(stages, cfg)
    return TaskSequence(stages, cfg, Path(data.get("output_dir") or "runs/continual"))


def load_sequence(
    path: str | Path, overrides: list[str] | None = None, check_paths: bool = True
) -> TaskSequence:
    """Read a sequence recipe YAML, apply ``key.sub=value`` overrides, validate every stage."""
    path = Path(path)
    data = read_yaml_mapping(path)
    try:
        seq = parse_sequence(data, overrides)
        if check_paths:
            for i, stage in enumerate(seq.stages):
                try:
                    check_files(stage.recipe)
                except ConfigError as exc:
                    raise ConfigError(f"stages[{i}]", str(exc)) from None
    except ConfigError as exc:
        raise ConfigError("", f"{path}: {exc}") from None
    return seq

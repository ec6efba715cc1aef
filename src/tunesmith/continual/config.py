"""Task-sequence recipes: shared recipe keys, a ``stages:`` list and a ``continual:`` section.

A sequence recipe is an ordinary recipe (model, task, optim, train, adapter, objectives, ...)
whose ``data`` moves into the stages; each stage names its task and overrides any key::

    model: minilm
    task: sequence_classification
    output_dir: runs/continual/ewc
    train: {batch_size: 32, epochs: 2}
    continual: {method: ewc, ewc: {weight: 0.5, fisher: {kind: empirical, max_examples: 512}}}
    stages:
      - name: ag_news
        data: {train: ag_news/train.jsonl, split: {dev: 0.1, test: 0.2}}
      - name: sst2
        data: {train: {path: sst2_sentences/train.txt, format: label_text}, ...}

The ``continual:`` section names the method (or a preset: ``online-ewc``, ``ewc+replay``) and
holds one section per method with that method's settings (:meth:`ContinualConfig.parse`).
Each stage becomes a full :class:`~tunesmith.config.Recipe` (the shared keys deep-merged with
the stage's), validated with the usual key paths (prefixed ``stages[i].``) before any model
loads.
"""

from __future__ import annotations

import copy
import difflib
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import yaml

from tunesmith.config import (
    Recipe,
    check_files,
    check_model_sources,
    fld,
    parse_recipe,
    read_yaml_mapping,
    resolve_recipe_paths,
)
from tunesmith.configschema import apply_overrides, build, deep_merge, to_dict
from tunesmith.errors import ConfigError
from tunesmith.objectives.continual import METHODS, ContinualMethod, check_task_name, method_class

__all__ = [
    "LEGACY_KEYS",
    "ContinualConfig",
    "TaskSequence",
    "Stage",
    "load_sequence",
    "parse_sequence",
]

logger = logging.getLogger(__name__)

# keys a stage may not override: the sequence decides them
_FIXED_KEYS = ("model", "task", "output_dir", "from_scratch")

# The flat keys of the recipe before one section per method (still read, with a warning): the
# old key -> the (section, key) pairs it sets.
LEGACY_KEYS: dict[str, tuple[tuple[str, str], ...]] = {
    "ewc_lambda": (("ewc", "weight"), ("online_ewc", "weight")),
    "online_gamma": (("online_ewc", "gamma"),),
    "l2_lambda": (("l2_anchor", "weight"),),
    "lwf_lambda": (("lwf", "weight"),),
    "lwf_temperature": (("lwf", "temperature"),),
    "fisher": (("ewc", "fisher"), ("online_ewc", "fisher")),
}


@dataclass
class ContinualConfig:
    """The recipe's ``continual:`` section: the method, how tasks are headed and scored, and one
    section per method with its settings (``ewc: {weight: 0.5}``; see :meth:`parse`)."""

    method: str = fld(
        "naive",
        "how earlier tasks are protected: a continual method or preset (docs/continual.md)",
    )
    heads: Literal["separate", "shared"] = fld(
        "separate",
        "classification: one label projection per task (swapped in to evaluate each task), or "
        "one head over the union of the tasks' labels",
    )
    label_prefix: bool = fld(True, "shared head: name labels '<task>:<label>' (keeps sets apart)")
    restrict_eval_labels: bool = fld(
        True, "shared head: score each task among its own labels only (task-incremental)"
    )
    seed: int | None = fld(None, "seed of Fisher subsets, replay and fresh heads (default: seed)")
    eval_split: Literal["test", "dev"] = fld("test", "split each task is scored on for R")
    metric: str | None = fld(
        None,
        "score in R (default: accuracy; perplexity for causal_lm, lower is better). causal_lm "
        "with accuracy or macro_f1: each task's test examples are classified by the likelihood "
        "of its label words (rank classification)",
    )
    label_words: dict[str, list[str]] = fld(
        {},
        "causal_lm scored by accuracy: a stage name -> its label words (default: the distinct "
        "responses of the stage's training split)",
    )
    probe: dict[str, Any] | None = fld(
        None,
        "causal_lm: a general-capability probe, a data: section of held-out text (its test "
        "split, else its train split) whose perplexity is measured on the initial model and "
        "after every stage (matrix.json probe, matrix.md)",
    )
    evaluate_initial: bool = fld(True, "also score the initial model (for FWT)")
    keep_state: bool = fld(
        False,
        "keep every stage's state file and resumable checkpoints (default: only the latest "
        "state; a finished stage's checkpoints are deleted, its best/ kept)",
    )
    params: dict[str, Any] = fld(
        {}, "the settings of the method's parts, by section (filled by parse)", init=False
    )

    def validate(self, path: str) -> None:
        cls = method_class(self.method, f"{path}.method")
        self.method = cls.name  # a preset's method
        self.params = {p.name: self.params.get(p.name) or p.Params() for p in cls.parts()}

    @classmethod
    def parse(cls, data: dict | None, path: str = "continual", warn: bool = True):
        """A ``continual:`` mapping -> validated config. Keys: the fields above, and a section
        per method (``ewc:``, ``replay:``, ...) built into that method's ``Params``; the old
        flat keys (:data:`LEGACY_KEYS`) are mapped onto the sections (with a warning)."""
        if data is not None and not isinstance(data, dict):
            raise ConfigError(path, f"expected a mapping, got {type(data).__name__} {data!r}")
        data = _upgrade(dict(data or {}), path, warn)
        generic = {f.name for f in fields(cls) if f.init}
        unknown = [k for k in data if k not in generic and k not in METHODS]
        if unknown:
            valid = sorted(generic) + METHODS.names()
            close = difflib.get_close_matches(str(unknown[0]), valid, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
            raise ConfigError(f"{path}.{unknown[0]}", "unknown key", hint)
        cfg = build(cls, {k: v for k, v in data.items() if k in generic}, path)
        for name, section in data.items():
            if name not in generic:  # every given section is checked, the used ones kept
                params = build(METHODS.get(name).Params, section, f"{path}.{name}")
                if name in cfg.params:
                    cfg.params[name] = params
        return cfg

    def create_method(self) -> ContinualMethod:
        """The method with its settings, for the sequence runner."""
        return method_class(self.method).create(self.params)

    def resolved(self) -> dict[str, Any]:
        """Every setting as plain data, in the recipe's shape (``parse`` reads it back)."""
        out = {f.name: to_dict(getattr(self, f.name)) for f in fields(self) if f.init}
        return out | {name: to_dict(p) for name, p in self.params.items() if fields(p)}


def _upgrade(data: dict, path: str, warn: bool) -> dict:
    """Map the flat keys of :data:`LEGACY_KEYS` onto their method sections."""
    out = {k: v for k, v in data.items() if k not in LEGACY_KEYS}
    for old, targets in LEGACY_KEYS.items():
        if old not in data:
            continue
        new = " and ".join(f"{path}.{section}.{key}" for section, key in targets)
        if warn:
            logger.warning("%s.%s is deprecated: use %s", path, old, new)
        for section, key in targets:
            current = out.get(section)
            if current is None:
                current = {}
            if not isinstance(current, dict):
                continue  # the section's own error comes from build
            if key in current:
                raise ConfigError(
                    f"{path}.{old}", f"set twice, also as {path}.{section}.{key}", f"keep {new}"
                )
            out[section] = {**current, key: data[old]}
    return out


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
    method = method_class(cfg.method)
    adapter = stages[0].recipe.adapter
    if method.needs_adapter and adapter is None:
        raise ConfigError(
            "adapter",
            f"continual.method {method.name} trains adapters: the recipe needs an adapter: section",
            "e.g. adapter: {type: lora, r: 8}",
        )
    if method.joint and adapter is not None and cfg.heads == "separate" and task != "causal_lm":
        raise ConfigError(
            "adapter",
            "joint training with separate heads (a multi-head model) and an adapter is not "
            "supported yet",
            "set continual.heads: shared for the joint upper bound with an adapter",
        )
    if len(stages) < 2 and not method.joint:
        raise ConfigError("stages", "a task sequence needs at least two stages")
    _check_scoring(stages, cfg, task)


LM_METRICS = ("perplexity", "loss", "accuracy", "macro_f1")
"""What a causal_lm sequence can score in R: the task's own perplexity / loss, or label-word
accuracy / macro-F1 (rank classification over each task's label words)."""


def _check_scoring(stages: list[Stage], cfg: ContinualConfig, task: str) -> None:
    names = [s.name for s in stages]
    if task == "causal_lm" and cfg.metric is not None and cfg.metric not in LM_METRICS:
        raise ConfigError(
            "continual.metric",
            f"a causal_lm sequence scores one of {', '.join(LM_METRICS)}, not {cfg.metric!r}",
        )
    for name, words in cfg.label_words.items():
        where = f"continual.label_words.{name}"
        if name not in names:
            raise ConfigError(where, "no stage of that name", f"stages: {', '.join(names)}")
        if not isinstance(words, list) or not words or len(set(words)) != len(words):
            raise ConfigError(where, "expected a list of distinct label words")
        if any(not isinstance(w, str) or not w.strip() for w in words):
            raise ConfigError(where, "label words are non-empty strings")
    if cfg.label_words and (task != "causal_lm" or cfg.metric not in ("accuracy", "macro_f1")):
        raise ConfigError(
            "continual.label_words",
            "only a causal_lm sequence scored by label words reads them",
            "set continual.metric: accuracy",
        )
    if cfg.probe is not None and task != "causal_lm":
        raise ConfigError(
            "continual.probe", f"the perplexity probe needs a causal_lm sequence, not {task}"
        )
    probe_recipe(cfg, stages[0].recipe)


def probe_recipe(cfg: ContinualConfig, first: Recipe) -> Recipe | None:
    """The probe's recipe: the first stage's with ``continual.probe`` as its ``data:`` section
    (the first stage's ``data.root`` unless the probe names its own); None without a probe."""
    if cfg.probe is None:
        return None
    if not isinstance(cfg.probe, dict):
        raise ConfigError("continual.probe", "expected a data: mapping", "e.g. {train: x.json}")
    data = to_dict(first)
    data["data"] = {"root": first.data.root, **cfg.probe} if first.data else dict(cfg.probe)
    data["objectives"] = []
    try:
        return parse_recipe(data)
    except ConfigError as exc:
        raise ConfigError("continual.probe", str(exc)) from None


def parse_sequence(data: dict, overrides: list[str] | None = None) -> TaskSequence:
    """A parsed sequence recipe (see the module docstring) -> validated :class:`TaskSequence`."""
    data = apply_overrides(copy.deepcopy(data), overrides or [])
    raw_stages = data.pop("stages", None)
    cfg = ContinualConfig.parse(data.pop("continual", None))
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
        for stage in seq.stages:  # the one path rule: beside the recipe, then the data root
            resolve_recipe_paths(stage.recipe, path.parent)
        probe = probe_recipe(seq.continual, seq.stages[0].recipe)
        if probe is not None:  # kept resolved: the probe reads what the recipe named
            resolve_recipe_paths(probe, path.parent)
            seq.continual.probe = to_dict(probe.data)
            if check_paths:
                try:
                    check_files(probe)
                except ConfigError as exc:
                    raise ConfigError("continual.probe", str(exc)) from None
        if check_paths:
            check_model_sources(seq.stages[0].recipe)  # the stages share model and teacher
            for i, stage in enumerate(seq.stages):
                try:
                    check_files(stage.recipe)
                except ConfigError as exc:
                    raise ConfigError(f"stages[{i}]", str(exc)) from None
    except ConfigError as exc:
        raise ConfigError("", f"{path}: {exc}") from None
    return seq


def _raw_fisher(continual: Any) -> Any:
    """A saved ``continual:`` section from before ``fisher.normalize`` existed estimated raw
    Fishers (its state holds them): read its Fisher settings as ``normalize: none``."""
    if not isinstance(continual, dict):
        return continual
    out = dict(continual)
    for key, section in continual.items():
        if key == "fisher" and isinstance(section, dict):  # the flat key
            out[key] = {"normalize": "none", **section}
        elif isinstance(section, dict) and isinstance(section.get("fisher"), dict):
            out[key] = {**section, "fisher": {"normalize": "none", **section["fisher"]}}
    return out


def same_settings(saved: str, text: str) -> bool:
    """``sequence.yaml`` as saved vs. as it would be written now. A file from before the
    per-method sections (flat ``ewc_lambda`` keys) counts as the same when it resolves to the
    same settings (its Fishers as ``normalize: none``, what it estimated); the runner then
    rewrites it in today's form."""
    if saved == text:
        return True
    old, new = yaml.safe_load(saved), yaml.safe_load(text)
    if not isinstance(old, dict) or old.get("stages") != new["stages"]:
        return False
    try:
        before = ContinualConfig.parse(_raw_fisher(old.get("continual")), warn=False).resolved()
    except ConfigError:
        return False
    return before == new["continual"]

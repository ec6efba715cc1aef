"""The recipe: the whole of a run, typed, with help text under every field.

A recipe is YAML; :func:`load_recipe` parses it, applies ``key.sub=value`` overrides, builds these
dataclasses (unknown keys, wrong types and impossible combinations fail with the key path and a hint)
and checks that every data file exists, all before any model loads.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config.checks import adapter_config_from_dict, check_choice, check_mixing
from tunesmith.config.files import check_files, check_model_sources, resolve_recipe_paths
from tunesmith.config.sections import (
    DataConfig,
    DistillConfig,
    HeadConfig,
    MixingConfig,
    ObjectiveConfig,
    StudentConfig,
    TaskConfig,
)
from tunesmith.config.sources import ModelConfig
from tunesmith.config.training import OptimConfig, TrainConfig, TransferConfig
from tunesmith.configschema import apply_overrides, build, fld, to_dict
from tunesmith.errors import ConfigError
from tunesmith.registry import OBJECTIVES, TASKS

MULTI_HEAD = "multi_head"
"""``task: multi_head``: several tasks, one head each on a shared encoder (not a task kind)."""


@dataclass(kw_only=True)
class Recipe:
    model: str | ModelConfig | None = fld(
        None,
        "embedded name (minilm, smollm2, gemma3), local folder or hub id, or a mapping {name, "
        "revision, dtype, attn_implementation, trust_remote_code, quantization} "
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
    head: HeadConfig = fld(HeadConfig(), "sequence classification head: its pooling")
    optim: OptimConfig = fld(OptimConfig(), "optimiser and schedule")
    train: TrainConfig = fld(TrainConfig(), "loop settings")
    objectives: list[ObjectiveConfig] = fld([], "extra loss terms added to the task loss")
    task_weight: float = fld(1.0, "multiplier of the task loss (Hinton KD: 1 - alpha)")
    adapter: dict[str, Any] | str | None = fld(
        None,
        "parameter-efficient adapter, e.g. {type: lora, r: 8} or houlsby (see `tunesmith "
        "list`); tunesmith keys inside it: name (default 'default'), train_head (default: true "
        "for classification), per_task (task: multi_head only: one adapter of this kind per "
        "task, each named after its task, on one frozen base)",
    )
    distill: DistillConfig | None = fld(None, "teacher for distillation terms")
    student: StudentConfig | None = fld(None, "how the student model is built (distillation)")

    def validate(self, path: str) -> None:
        check_choice("task", self.task, [*TASKS.names(), MULTI_HEAD])
        if isinstance(self.model, str) and not self.model.strip():
            raise ConfigError(
                "model", "is empty", "give an embedded model name, a hub id or a folder"
            )
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
        if self.train.loss_chunk_tokens is not None and self.task != "causal_lm":
            raise ConfigError(
                "train.loss_chunk_tokens",
                f"chunks the causal_lm loss; a {self.task} task has none to chunk",
                "remove the key",
            )
        if self.task_weight < 0:
            raise ConfigError("task_weight", "must be >= 0")
        if self.head.pooling != "auto" and self.task != "sequence_classification":
            raise ConfigError(
                "head.pooling",
                f"applies to task: sequence_classification, not {self.task}",
                "multi_head recipes set tasks[].pooling" if self.task == MULTI_HEAD else None,
            )
        if self.model_options.quantization and self.adapter is None:
            raise ConfigError(
                "model.quantization",
                "a quantized base cannot be trained itself",
                "add an adapter (QLoRA: adapter: {type: lora, r: 16})",
            )
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
        per_task = spec.pop("per_task", False)
        if not isinstance(per_task, bool):
            raise ConfigError("adapter.per_task", f"must be true or false, got {per_task!r}")
        if per_task and self.task != MULTI_HEAD:
            raise ConfigError(
                "adapter.per_task",
                f"one adapter per task is for task: multi_head recipes, not {self.task}",
                "remove per_task, or list the tasks under tasks: with task: multi_head",
            )
        if per_task and (spec.pop("train_head", True) is not True or "name" in spec):
            raise ConfigError(
                "adapter",
                "with per_task: true every task's new head trains and its adapter is named "
                "after the task",
                "remove adapter.train_head and adapter.name",
            )
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
            if not text:  # a head predicts labels: a task kind with a label vocabulary
                heads = [e.name for e in TASKS if e.obj.classification]
                check_choice(f"tasks[{i}].head", t.head, heads)
            if not text and t.text is not None:
                raise ConfigError(
                    f"tasks[{i}].text", "only for text-to-text recipes (task: causal_lm | seq2seq)"
                )
        unsupported = ("distill", "student") if text else ("adapter", "distill", "student")
        for what in unsupported:
            if what == "adapter" and self.per_task_adapters:
                continue  # one adapter + head per task (adapters/pertask.py)
            if getattr(self, what) is not None:
                raise ConfigError(
                    what,
                    f"is not supported with multi-task {self.task} yet",
                    "give adapter: {..., per_task: true} for one adapter per task"
                    if what == "adapter"
                    else None,
                )
        m = self.mixing
        weights = {t.name: t.weight for t in self.tasks} if m.strategy == "explicit" else None
        check_mixing(names, m.strategy, cap=m.cap, temperature=m.temperature, weights=weights)

    @property
    def per_task_adapters(self) -> bool:
        """``adapter: {..., per_task: true}``: one adapter (and head) per task of a mixture."""
        return isinstance(self.adapter, dict) and self.adapter.get("per_task") is True

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
        """Where the student's weights and tokenizer come from (the name, for a mapping)."""
        if isinstance(self.model, ModelConfig):
            return self.model.name
        return self.model if self.model is not None else self.distill.teacher

    @property
    def model_options(self) -> ModelConfig:
        """``model:`` as a :class:`ModelConfig` (defaults for the string form)."""
        if isinstance(self.model, ModelConfig):
            return self.model
        return ModelConfig(name=self.model_source)


def parse_recipe(data: dict, overrides: list[str] | None = None) -> Recipe:
    data = apply_overrides(copy.deepcopy(data), overrides or [])  # the caller's dict unchanged
    if isinstance(data, dict) and "model_kwargs" in data:  # transformers' habit: say where it went
        raise ConfigError(
            "model_kwargs",
            "unknown key",
            "loading options go under model: {name, revision, dtype, attn_implementation, "
            "trust_remote_code, quantization}; load_in_4bit is model.quantization: 4bit",
        )
    return build(Recipe, data)


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last
    silently, so ``lr`` set twice would train with whichever came second)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the constructor below reports it
            if key in first:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first given on line {first[key]})",
                    key_node.start_mark,
                )
            first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml_mapping(path: Path) -> dict:
    """A recipe file's top-level mapping; missing files, bad YAML and keys given twice name the
    file and line."""
    if not path.is_file():
        raise ConfigError("", f"recipe not found: {path}")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "", f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())  # one line
        raise ConfigError("", f"{where}: invalid YAML ({problem})") from None
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
    resolve_recipe_paths(recipe, path.parent)
    if check_paths:
        check_files(recipe)
        check_model_sources(recipe)
    return recipe


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(to_dict(recipe), sort_keys=False, allow_unicode=True)

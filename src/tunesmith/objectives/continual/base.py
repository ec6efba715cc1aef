"""The continual-method interface and its registry: one module per method registers itself here.

A continual method says what a task sequence adds to an ordinary run, and nothing else:

* ``Params`` - its settings, a dataclass with help text per field, read from the recipe's
  ``continual.<name>:`` section (validated with key paths by :func:`tunesmith.configschema.build`);
* :meth:`ContinualMethod.terms` - the objective terms of stage k >= 1 (recipe ``objectives:``
  entries; the terms read what earlier stages left in the stage's state file);
* :meth:`ContinualMethod.after_stage` - work right after stage i finished (e.g. offer its
  training data to a replay buffer);
* :meth:`ContinualMethod.update_state` - what the method puts in the
  :class:`~tunesmith.objectives.continual.state.ContinualState` handed to the next stage
  (anchors, Fishers, replay examples);
* :meth:`ContinualMethod.train_file` - another training file for stage k (data-side replay);
* :meth:`ContinualMethod.stage_adapter` - stage k's ``adapter:`` section (O-LoRA: one more LoRA);
* ``needs_adapter`` / ``routed`` - the recipe must have an adapter; every stage starts from the
  initial model and each task is scored with its own stage's model (adapter per task).

The sequence runner (:mod:`tunesmith.continual`) calls these through a :class:`SequenceView`, so
a method never imports the runner. A method built from others (``ewc_replay`` = ``ewc`` +
``replay``) is a :class:`CombinedMethod`; each part reads its own section. Paper names are
presets: other names for a method (``online-ewc``, ``ewc+replay``).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from tunesmith.errors import ConfigError
from tunesmith.objectives.continual.state import ContinualState
from tunesmith.registry import Registry

__all__ = [
    "METHODS",
    "PRESETS",
    "CombinedMethod",
    "ContinualMethod",
    "SequenceView",
    "method_class",
    "preset",
    "register_method",
]


class SequenceView(Protocol):
    """What a method's hooks see of the running sequence (the runner's context implements it)."""

    out: Path  # the sequence directory
    task_type: str  # the recipe's task (sequence_classification, causal_lm)
    shared: bool  # one head for all tasks (or none: causal LM); else one label head per task
    seed: int  # the sequence's seed

    @property
    def names(self) -> list[str]: ...  # the tasks, in stage order

    @property
    def classification(self) -> bool: ...

    def train_records(self, i: int) -> list[dict]:
        """Task i's frozen training records (raw, as materialised)."""
        ...

    def encoded(self, i: int, records: list[dict], where: str) -> list[dict]:
        """Task i's ``records`` encoded with its recipe and label vocabulary."""
        ...

    def collator(self) -> Callable[[list], dict[str, torch.Tensor]]: ...

    def trainable(self, model: nn.Module, i: int) -> dict[str, nn.Parameter]:
        """The parameters stage i trains (its recipe's freezing), without separate label heads."""
        ...

    def state_path(self, k: int) -> Path:
        """The state file handed to stage k."""
        ...

    def write_jsonl(self, path: Path, records: list[dict]) -> None: ...


@dataclasses.dataclass
class NoParams:
    """A method without settings."""


class ContinualMethod:
    """Base class: a method with no terms and no hooks (plain sequential fine-tuning)."""

    name: ClassVar[str]
    Params: ClassVar[type] = NoParams
    joint: ClassVar[bool] = False  # train every task in one stage instead (the upper bound)
    # the recipe must have an ``adapter:`` (O-LoRA, adapter per task)
    needs_adapter: ClassVar[bool] = False
    # task-id routing: every stage starts from the initial model, and task j is scored with the
    # model of its own stage j (its adapter and head): nothing trained later can touch it
    routed: ClassVar[bool] = False

    def __init__(self, params: Any = None):
        self.params = params if params is not None else self.Params()

    @classmethod
    def parts(cls) -> tuple[type[ContinualMethod], ...]:
        """The methods whose ``continual.<name>`` sections this one reads (itself)."""
        return (cls,)

    @classmethod
    def create(cls, sections: dict[str, Any]) -> ContinualMethod:
        """An instance with its parameters from ``sections`` (section name -> built Params)."""
        return cls(sections.get(cls.name))

    def terms(self, seq: SequenceView, k: int) -> list[dict[str, Any]]:
        """Recipe ``objectives:`` entries the method adds to stage ``k`` (k >= 1)."""
        return []

    def after_stage(self, seq: SequenceView, i: int) -> None:
        """Called once stage ``i`` is trained and scored, when a stage follows it."""

    def update_state(
        self,
        state: ContinualState,
        previous: ContinualState,
        seq: SequenceView,
        model: nn.Module,
        i: int,
    ) -> None:
        """Fill ``state`` (handed to stage i+1) from stage i's ``model`` and the ``previous``
        state (the one stage i was given; empty at i = 0)."""

    def train_file(self, seq: SequenceView, k: int) -> str | None:
        """Stage k's training file relative to ``<out>/data`` (None: the task's own)."""
        return None

    def stage_adapter(self, seq: SequenceView, k: int, adapter: Any) -> Any:
        """Stage k's ``adapter:`` section, given the recipe's (a name or a mapping). When it
        differs from stage k-1's, the runner writes stage k's start: stage k-1's adapter copied
        into this one (same keys), the new parameters as initialised (O-LoRA adds a block)."""
        return adapter


class CombinedMethod(ContinualMethod):
    """Several methods at once (``parts``), each with its own section and hooks, in order."""

    members: ClassVar[tuple[type[ContinualMethod], ...]] = ()

    def __init__(self, methods: Sequence[ContinualMethod]):
        super().__init__(NoParams())
        self.methods = list(methods)

    @classmethod
    def parts(cls) -> tuple[type[ContinualMethod], ...]:
        return tuple(p for m in cls.members for p in m.parts())

    @classmethod
    def create(cls, sections: dict[str, Any]) -> ContinualMethod:
        return cls([m.create(sections) for m in cls.members])

    def terms(self, seq: SequenceView, k: int) -> list[dict[str, Any]]:
        return [t for m in self.methods for t in m.terms(seq, k)]

    def after_stage(self, seq: SequenceView, i: int) -> None:
        for m in self.methods:
            m.after_stage(seq, i)

    def update_state(self, state, previous, seq, model, i) -> None:
        for m in self.methods:
            m.update_state(state, previous, seq, model, i)

    def stage_adapter(self, seq: SequenceView, k: int, adapter: Any) -> Any:
        for m in self.methods:
            adapter = m.stage_adapter(seq, k, adapter)
        return adapter

    def train_file(self, seq: SequenceView, k: int) -> str | None:
        files = [f for m in self.methods if (f := m.train_file(seq, k)) is not None]
        if len(files) > 1:
            raise ValueError(f"{self.name}: more than one part replaces the training file")
        return files[0] if files else None


METHODS = Registry("continual method")
"""Recipe ``continual.method`` name -> :class:`ContinualMethod` subclass."""

PRESETS: dict[str, str] = {}
"""Paper names -> method names (``online-ewc`` -> ``online_ewc``)."""


def register_method(cls: type[ContinualMethod], help: str) -> type[ContinualMethod]:
    """Register a method under ``cls.name`` (one call at the end of its module)."""
    METHODS.register(cls.name, cls, help)
    return cls


def preset(name: str, method: str) -> None:
    """Accept ``name`` (a paper's spelling) for ``method`` in recipes."""
    if name in PRESETS or name in METHODS:
        raise ValueError(f"continual method or preset {name!r} is already registered")
    PRESETS[name] = method


def method_class(name: str, key: str = "continual.method") -> type[ContinualMethod]:
    """The method registered as ``name`` or under the preset ``name``."""
    if name in PRESETS:
        name = PRESETS[name]
    if name not in METHODS:
        choices = METHODS.names() + sorted(PRESETS)
        close = difflib.get_close_matches(str(name), choices, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"choose one of {choices}"
        raise ConfigError(key, f"unknown continual method {name!r}", hint)
    return METHODS.get(name, key)

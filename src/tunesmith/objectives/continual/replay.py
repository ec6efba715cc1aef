"""Experience replay (Chaudhry et al. 2019): the method, and the term for separate heads.

Method ``replay`` (``continual: {method: replay, replay: {capacity, ratio}}``): after each stage
the task's training records are offered to a reservoir buffer
(:class:`~tunesmith.objectives.continual.buffer.ReservoirBuffer`, ``<out>/replay/after-<i>.json``).

* Shared head or causal LM: replay is a data matter. Stage k trains on its task's records
  followed by ``round(ratio * n_k)`` replayed ones (``<out>/data/replay/<k>-<task>-train.jsonl``);
  replayed records keep their own task's label.
* Separate heads: old examples cannot go through the new task's head. Term ``replay`` draws
  ``round(ratio * batch)`` buffered examples (encoded once per stage, ``replay/encoded-<k>.jsonl``)
  each step and adds the cross-entropy of each through its own task's stored, frozen head.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from tunesmith.configschema import fld
from tunesmith.data.collate import Collator
from tunesmith.errors import ConfigError
from tunesmith.heads import logits_per_head
from tunesmith.objectives.base import register
from tunesmith.objectives.continual.base import ContinualMethod, SequenceView, register_method
from tunesmith.objectives.continual.buffer import ReservoirBuffer
from tunesmith.objectives.continual.term import STATE_HELP, ContinualTerm, device_of
from tunesmith.tasks import model_inputs, task_loss

__all__ = ["ReplayMethod", "ReplayTerm", "buffer_path", "memory_loss", "write_encoded_buffer"]


class ReplayTerm(ContinualTerm):
    name = "replay"

    @dataclasses.dataclass
    class Params:
        state: str | None = fld(None, STATE_HELP)
        ratio: float = fld(0.25, "replayed examples per new example in each batch")
        seed: int = fld(0, "seed of the replay draws")

    def __init__(self, weight: float = 1.0, params: Any = None):
        super().__init__(weight, params)
        if self.params.ratio <= 0:
            raise ConfigError(f"objectives.{self.name}.params.ratio", "must be > 0")
        self.generator = torch.Generator().manual_seed(self.params.seed)
        self.examples: list[dict] = []
        self.heads: list[dict[str, torch.Tensor]] = []

    def setup(self, model: nn.Module) -> None:
        state = self.continual_state()
        self.task = state.task
        if not state.replay_file:
            return
        lines = Path(state.replay_file).read_text().splitlines()
        self.examples = [json.loads(line) for line in lines if line.strip()]
        pad = model.config.pad_token_id
        self.collator = Collator(pad_token_id=pad if pad is not None else 0)
        if state.heads != "separate":  # one shared head / a causal LM: the model's own loss
            return
        tasks = [t for t in state.seen if t in state.head_weights]
        index = {t: i for i, t in enumerate(tasks)}
        self.heads = [state.head_weights[t] for t in tasks]
        unknown = {ex["task"] for ex in self.examples} - set(index)
        if unknown:
            raise ConfigError(
                f"objectives.{self.name}", f"replay examples of tasks without a head: {unknown}"
            )
        for ex in self.examples:
            ex["head"] = index[ex["task"]]

    def draw(self, k: int) -> list[dict]:
        """``k`` buffered examples, drawn with replacement (the term's seeded generator)."""
        idx = torch.randint(len(self.examples), (k,), generator=self.generator).tolist()
        return [self.examples[i] for i in idx]

    def loss(self, model, batch, outputs) -> torch.Tensor:
        if not self.examples:
            return torch.zeros((), device=device_of(model))
        k = max(1, round(self.params.ratio * batch["input_ids"].shape[0]))
        return memory_loss(model, self.task, self.heads, self.draw(k), self.collator)


def memory_loss(
    model: nn.Module,
    task: str,
    heads: list[dict[str, torch.Tensor]],
    chosen: list[dict],
    collator: Collator,
) -> torch.Tensor:
    """The mean loss of the buffered examples ``chosen``: through each one's own stored head
    (``ex["head"]`` indexes ``heads``) with separate heads, else the model's own task loss."""
    device = device_of(model)
    keys = ("input_ids", "attention_mask", "token_type_ids", "labels")
    replay = collator([{key: ex[key] for key in keys if key in ex} for ex in chosen])
    replay = {key: v.to(device) for key, v in replay.items()}
    if not heads:
        logits = model(**model_inputs(task, replay)).logits
        return task_loss(task, logits, replay["labels"])
    per_head = logits_per_head(model, heads, model_inputs(task, replay))
    index = torch.tensor([ex["head"] for ex in chosen], device=device)
    total = torch.zeros((), device=device)
    for h, logits in enumerate(per_head):
        rows = index == h
        if rows.any():
            total = total + F.cross_entropy(
                logits[rows].float(), replay["labels"][rows], reduction="sum"
            )
    return total / len(chosen)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])


def buffer_path(seq: SequenceView, i: int) -> Path:
    """The reservoir after stage i."""
    return seq.out / "replay" / f"after-{i}.json"


def write_encoded_buffer(seq: SequenceView, i: int) -> str:
    """The reservoir after stage i, each record encoded with its own task's recipe and tagged
    with its task, as ``<out>/replay/encoded-<i+1>.jsonl`` (the file the terms read)."""
    k = i + 1
    buffer = ReservoirBuffer.load(buffer_path(seq, i))
    lines = []
    for j, name in enumerate(seq.names[:k]):
        records = [r for r in buffer.items if r["task"] == name]
        if records:
            encoded = seq.encoded(j, records, f"replay buffer ({name})")
            lines += [{**ex, "task": name} for ex in encoded]
    path = seq.out / "replay" / f"encoded-{k}.jsonl"
    seq.write_jsonl(path, lines)
    return str(path)


def _separate(seq: SequenceView) -> bool:
    return seq.classification and not seq.shared


class ReplayMethod(ContinualMethod):
    """Replay between stages: a reservoir over every earlier task's training records."""

    name = "replay"

    @dataclasses.dataclass
    class Params:
        capacity: int = fld(1000, "reservoir size (examples over all earlier tasks)")
        ratio: float = fld(0.25, "replayed examples per new training example")

        def validate(self, path: str) -> None:
            if self.capacity < 1:
                raise ConfigError(f"{path}.capacity", "must be >= 1")
            if self.ratio <= 0:
                raise ConfigError(f"{path}.ratio", "must be > 0")

    def terms(self, seq: SequenceView, k: int) -> list[dict[str, Any]]:
        if not _separate(seq):
            return []  # replay is in the training file
        params = {"state": str(seq.state_path(k)), "ratio": self.params.ratio, "seed": seq.seed + k}
        return [{"name": "replay", "weight": 1.0, "params": params}]

    def after_stage(self, seq: SequenceView, i: int) -> None:
        """The reservoir after stage i: the one after stage i-1 plus task i's training records."""
        path = buffer_path(seq, i)
        if path.is_file():
            return
        prev = buffer_path(seq, i - 1)
        if i > 0 and prev.is_file():
            buffer = ReservoirBuffer.load(prev)
        else:
            buffer = ReservoirBuffer(self.params.capacity, seed=seq.seed)
        buffer.add(seq.train_records(i))
        buffer.save(path)

    def update_state(self, state, previous, seq, model, i) -> None:
        """Separate heads: the buffer after stage i, encoded per task, as JSONL for the term."""
        if _separate(seq):
            state.replay_file = write_encoded_buffer(seq, i)

    def train_file(self, seq: SequenceView, k: int) -> str | None:
        """Shared head / causal LM: task k's training records plus replayed ones."""
        if _separate(seq) or k == 0:
            return None
        buffer = ReservoirBuffer.load(buffer_path(seq, k - 1))
        records = buffer.mix(seq.train_records(k), self.params.ratio, seq.seed + k)
        rel = f"replay/{k}-{seq.names[k]}-train.jsonl"
        seq.write_jsonl(seq.out / "data" / rel, records)
        return rel


register(ReplayTerm, "experience replay through each old task's own head (separate heads)")
register_method(ReplayMethod, "experience replay from a reservoir buffer (Chaudhry et al. 2019)")

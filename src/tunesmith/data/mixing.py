"""Mixing rates of a multi-task mixture and a resumable sampler of homogeneous batches.

Raffel et al. 2020, *Exploring the Limits of Transfer Learning with a Unified Text-to-Text
Transformer* (T5), §3.5.2 "Multi-task learning", compares three ways to set the probability
``r_m`` that a training example comes from task ``m`` (``e_m`` = examples of task m):

* **examples-proportional** with an artificial limit ``K`` ("cap")::

      r_m = min(e_m, K) / sum_n min(e_n, K)

* **temperature-scaled**: the proportional rates raised to ``1/T`` and renormalised::

      r_m = min(e_m, K)^(1/T) / sum_n min(e_n, K)^(1/T)

  ``T = 1`` is examples-proportional, ``T -> inf`` tends to equal mixing; T5 used ``T = 2``
  (with ``K = 2^21``) among its best settings;
* **equal**: ``r_m = 1 / M``, which T5 found much worse (small tasks overfit, large ones underfit).

``explicit`` takes user weights ``w_m`` and normalises them: ``r_m = w_m / sum_n w_n``.

:class:`MixtureSampler` turns rates into optimiser steps. Each micro-batch comes from one task
(so a per-task head sees a whole batch), drawn with probability ``r_m``; inside a task, examples are
drawn without replacement from a seeded permutation and reshuffled when the task is exhausted.
Everything is a pure function of ``(seed, global step)``: a resumed run recomputes the plan from
its step and skips nothing and repeats nothing, like a single-task run's epoch plan
(:meth:`tunesmith.train.modes.single.SingleTask.plan`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tunesmith.config import MIXING_STRATEGIES as STRATEGIES
from tunesmith.config import check_mixing
from tunesmith.errors import ConfigError

__all__ = [
    "DEFAULT_TEMPERATURE",
    "STRATEGIES",
    "MicroBatch",
    "MixtureSampler",
    "check_mixing",
    "concat_tasks",
    "describe_rates",
    "mixing_rates",
    "mixture_steps_per_epoch",
    "observed_rates",
]

DEFAULT_TEMPERATURE = 2.0  # T5 §3.5.2: T = 2 was among the best mixtures

_BLOCK = 4096  # task draws generated per seeded block (any size gives the same stream per block)
_TASK_STREAM = 0x6D69  # salt: task choices and per-task permutations use distinct seed sequences


def mixing_rates(
    sizes: Mapping[str, int],
    strategy: str = "proportional",
    *,
    cap: int | None = None,
    temperature: float | None = None,
    weights: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Probability of drawing each task, T5 §3.5.2 (formulas in the module docstring).

    Args:
        sizes: training examples per task, ``{task: e_m}`` (the order is kept in the result).
        strategy: ``proportional`` | ``temperature`` | ``equal`` | ``explicit``.
        cap: ``K``, the examples-proportional limit; each size counts as ``min(e_m, K)``
            (proportional and temperature only; ``None`` = no limit).
        temperature: ``T`` for ``temperature`` (``1`` = proportional, ``math.inf`` = equal);
            ``None`` means T5's ``T = 2``. Other strategies take no temperature.
        weights: ``{task: w_m >= 0}`` for ``explicit``, one per task.

    Returns ``{task: r_m}`` with ``sum r_m = 1``. Errors name the recipe key (``mixing.cap``, ...).
    """
    _check_sizes(sizes)
    check_mixing(list(sizes), strategy, cap=cap, temperature=temperature, weights=weights)
    names = list(sizes)
    if strategy == "equal":
        return dict.fromkeys(names, 1.0 / len(names))
    if strategy == "explicit":
        return _explicit(names, weights)  # type: ignore[arg-type]  (checked above)
    if strategy == "proportional":
        temperature = 1.0
    elif temperature is None:
        temperature = DEFAULT_TEMPERATURE
    if math.isinf(temperature):
        return dict.fromkeys(names, 1.0 / len(names))
    capped = np.array([min(sizes[n], cap) if cap else sizes[n] for n in names], dtype=np.float64)
    # n^(1/T) in log space, shifted by the max: no overflow for huge sizes or small T.
    logits = np.log(capped) / temperature
    unnorm = np.exp(logits - logits.max())
    rates = unnorm / unnorm.sum()
    return {n: float(r) for n, r in zip(names, rates, strict=True)}


def _check_sizes(sizes: Mapping[str, int]) -> None:
    if not sizes:
        raise ConfigError("tasks", "a mixture needs at least one task")
    for name, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise ConfigError(
                f"tasks[{name}].data.train", f"needs at least one training example, got {n!r}"
            )


def _explicit(names: list[str], weights: Mapping[str, float]) -> dict[str, float]:
    total = float(sum(weights[n] for n in names))
    return {n: float(weights[n]) / total for n in names}


def mixture_steps_per_epoch(
    sizes: Mapping[str, int],
    batch_size: int,
    *,
    cap: int | None = None,
    world: int = 1,
    grad_accum: int = 1,
) -> int:
    """Optimiser steps in one "epoch" of a mixture: one pass over ``sum_m min(e_m, K)`` examples.

    A mixture has no natural epoch; this one makes ``train.epochs`` mean what it means for a single
    task when the rates are examples-proportional (each task seen about once per epoch, capped
    tasks less). ``= max(1, ceil(sum_m min(e_m, K) / (batch_size * world * grad_accum)))``.
    """
    _check_sizes(sizes)
    total = sum(min(n, cap) if cap else n for n in sizes.values())
    return max(1, math.ceil(total / (batch_size * world * grad_accum)))


@dataclass(frozen=True)
class MicroBatch:
    """One homogeneous micro-batch: ``indices`` into task ``task``'s training examples."""

    task: str
    indices: tuple[int, ...]


class MixtureSampler:
    """Steps of homogeneous micro-batches, drawn by the mixing rates; a pure function of the step.

    Global micro-batch slot ``s = step * world * grad_accum + micro * world + rank`` draws its task
    from ``rates`` with a uniform number from a seeded block of the stream (block ``s // 4096``
    seeded by ``(seed, 0x6D69, block)``), so the draw of a slot never depends on how many steps were
    planned. Task ``m`` serves its ``j``-th micro-batch from positions ``[j*B, (j+1)*B)`` of the
    endless concatenation of permutations ``perm(seed, m, pass 0), perm(seed, m, pass 1), ...``
    (without replacement inside a pass; reshuffled for the next pass; a permutation depends on the
    task's *name*, not on the other tasks). Ranks take disjoint slots, so no example is served to two
    processes in the same pass.

    ``plan(step, n)`` equals ``plan(0, step + n)[step:]`` (tested), which is what makes resuming a
    killed run "recompute and skip", with no sampler state in the checkpoint.
    """

    def __init__(
        self,
        sizes: Mapping[str, int],
        rates: Mapping[str, float],
        batch_size: int,
        *,
        seed: int = 0,
        world: int = 1,
        grad_accum: int = 1,
    ):
        _check_sizes(sizes)
        if list(rates) != list(sizes):
            raise ValueError(f"rates must name the tasks of sizes in order: {list(sizes)}")
        r = np.array([rates[n] for n in sizes], dtype=np.float64)
        if (r < 0).any() or not np.isclose(r.sum(), 1.0) or not r.any():
            raise ValueError(f"rates must be >= 0 and sum to 1, got {dict(rates)}")
        for name, value in (
            ("batch_size", batch_size),
            ("world", world),
            ("grad_accum", grad_accum),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.tasks = list(sizes)
        self.sizes = dict(sizes)
        self.rates = dict(rates)
        self.batch_size, self.seed = batch_size, seed
        self.world, self.grad_accum = world, grad_accum
        self._cdf = np.cumsum(r)
        self._last = int(np.flatnonzero(r)[-1])  # rounding never lands on a zero-rate task
        self._choices = np.zeros(0, dtype=np.int64)  # task of each slot, grown block by block
        self._perms: dict[tuple[int, int], np.ndarray] = {}

    @property
    def slots_per_step(self) -> int:
        return self.world * self.grad_accum

    def _tasks_of_slots(self, end: int) -> np.ndarray:
        """Task index of every slot in ``[0, end)`` (cached)."""
        have = len(self._choices)
        if end > have:
            blocks = range(have // _BLOCK, math.ceil(end / _BLOCK))
            new = [self._block(b) for b in blocks]
            self._choices = np.concatenate([self._choices[: blocks.start * _BLOCK], *new])
        return self._choices[:end]

    def _block(self, b: int) -> np.ndarray:
        u = np.random.default_rng([self.seed, _TASK_STREAM, b]).random(_BLOCK)
        return np.minimum(np.searchsorted(self._cdf, u, side="right"), self._last)

    def _perm(self, task: int, n_pass: int) -> np.ndarray:
        key = (task, n_pass)
        if key not in self._perms:
            if len(self._perms) > 64:  # a long run visits many passes; keep memory flat
                self._perms.clear()
            name_id = zlib.crc32(self.tasks[task].encode())
            rng = np.random.default_rng([self.seed, name_id, n_pass])
            self._perms[key] = rng.permutation(self.sizes[self.tasks[task]])
        return self._perms[key]

    def _examples(self, task: int, j: int) -> tuple[int, ...]:
        """Indices of task ``task``'s ``j``-th micro-batch (0-based, over the whole run)."""
        n, b = self.sizes[self.tasks[task]], self.batch_size
        out = []
        for q in range(j * b, (j + 1) * b):
            out.append(int(self._perm(task, q // n)[q % n]))
        return tuple(out)

    def global_plan(self, start_step: int, n_steps: int) -> list[list[MicroBatch]]:
        """Steps ``[start_step, start_step + n_steps)``, each with the micro-batches of all ranks
        (``world * grad_accum`` of them, slot order ``micro * world + rank``)."""
        if start_step < 0 or n_steps < 0:
            raise ValueError(f"start_step and n_steps must be >= 0, got {start_step}, {n_steps}")
        per = self.slots_per_step
        lo, hi = start_step * per, (start_step + n_steps) * per
        choices = self._tasks_of_slots(hi)
        # how many micro-batches each task served before slot `lo`, then count on from there
        served = np.bincount(choices[:lo], minlength=len(self.tasks)).tolist()
        steps: list[list[MicroBatch]] = []
        for s in range(lo, hi):
            t = int(choices[s])
            if (s - lo) % per == 0:
                steps.append([])
            steps[-1].append(MicroBatch(self.tasks[t], self._examples(t, served[t])))
            served[t] += 1
        return steps

    def plan(self, start_step: int, n_steps: int, rank: int = 0) -> list[list[MicroBatch]]:
        """This process's steps ``[start_step, start_step + n_steps)``: ``grad_accum``
        homogeneous micro-batches per step."""
        if not 0 <= rank < self.world:
            raise ValueError(f"rank must be in [0, {self.world}), got {rank}")
        return [step[rank :: self.world] for step in self.global_plan(start_step, n_steps)]

    def index_plan(
        self, start_step: int, n_steps: int, offsets: Mapping[str, int], rank: int = 0
    ) -> list[list[list[int]]]:
        """:meth:`plan` as indices into the concatenated training list of :func:`concat_tasks`:
        steps -> micro-batches -> example indices, the type ``epoch_plan`` returns."""
        return [
            [[offsets[mb.task] + i for i in mb.indices] for mb in step]
            for step in self.plan(start_step, n_steps, rank)
        ]


def concat_tasks(train: Mapping[str, Sequence[dict]]) -> tuple[list[dict], dict[str, int]]:
    """One training list for the loop: every task's examples in order, each tagged ``"task"``.

    Returns ``(examples, offsets)``; task ``m``'s example ``i`` is ``examples[offsets[m] + i]``.
    The collator ignores the ``task`` key; the loop reads it from a micro-batch's first example
    (micro-batches are homogeneous) to pick the head.
    """
    examples: list[dict] = []
    offsets: dict[str, int] = {}
    for name, items in train.items():
        offsets[name] = len(examples)
        examples.extend({**ex, "task": name} for ex in items)
    return examples, offsets


def observed_rates(steps: Sequence[Sequence[MicroBatch]], tasks: Sequence[str]) -> dict[str, float]:
    """Fraction of the micro-batches in ``steps`` drawn from each task (compare with the rates)."""
    counts = dict.fromkeys(tasks, 0)
    for step in steps:
        for mb in step:
            counts[mb.task] += 1
    total = max(sum(counts.values()), 1)
    return {t: c / total for t, c in counts.items()}


def describe_rates(
    sizes: Mapping[str, int],
    rates: Mapping[str, float],
    *,
    strategy: str = "",
    cap: int | None = None,
    temperature: float | None = None,
    examples_total: int | None = None,
) -> str:
    """A table of the effective mixing rates, printed at the start of a run.

    One row per task: examples ``e_m``, capped size ``min(e_m, K)``, rate ``r_m`` and, when
    ``examples_total`` (= steps * batch_size * world * grad_accum) is given, the examples the run
    will draw from the task and how many passes over it that makes.
    """
    head = f"mixing rates ({strategy or 'given'}"
    if cap is not None:
        head += f", cap K={cap:,}"
    if strategy == "temperature":
        head += f", T={DEFAULT_TEMPERATURE if temperature is None else temperature:g}"
    rows = [["task", "examples", "capped", "rate"]]
    if examples_total is not None:
        rows[0] += ["drawn", "passes"]
    for name, n in sizes.items():
        row = [name, f"{n:,}", f"{min(n, cap) if cap else n:,}", f"{rates[name]:.4f}"]
        if examples_total is not None:
            drawn = rates[name] * examples_total
            row += [f"{drawn:,.0f}", f"{drawn / n:.2f}"]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    return head + "):\n  " + "\n  ".join(lines)

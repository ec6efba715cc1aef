"""Experience replay: a reservoir of past examples mixed into each new stage's training data.

The buffer is a uniform sample of every example offered to it so far, whatever the task, in a
fixed amount of memory: Vitter's Algorithm R (Vitter 1985, "Random sampling with a
reservoir"), as used for episodic memories by Chaudhry et al. (2019, "On Tiny Episodic
Memories in Continual Learning"). After ``n`` offers each one is in the buffer with
probability ``capacity / n``.

Items are opaque (raw records or encoded examples); a replayed record keeps its own task's
label (and ``task`` field), so with a shared head it trains that head's rows for its task, and
with separate heads the ``replay`` objective term routes it through its task's head.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tunesmith.atomic import atomic_write_json

__all__ = ["ReservoirBuffer"]


class ReservoirBuffer:
    """Algorithm R over everything :meth:`add` was given, seeded and resumable."""

    def __init__(self, capacity: int, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"replay capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.seed = seed
        self.seen = 0  # items offered so far, over all stages
        self.items: list[Any] = []
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, examples: Iterable[Any]) -> None:
        """Offer one stage's examples (Algorithm R): the n-th offer (1-based) replaces a random
        slot with probability capacity / n once the buffer is full."""
        for item in examples:
            if len(self.items) < self.capacity:
                self.items.append(item)
            else:
                j = self._rng.randint(0, self.seen)  # uniform over 0..seen inclusive: n choices
                if j < self.capacity:
                    self.items[j] = item
            self.seen += 1

    def draw(self, n: int, seed: int) -> list[Any]:
        """``n`` buffered items: whole seeded shuffles of the buffer, so each item is used
        ``floor(n / len)`` or one more times (no item twice before every item once)."""
        if n <= 0 or not self.items:
            return []
        rng = random.Random(seed)
        out: list[Any] = []
        while len(out) < n:
            order = list(self.items)
            rng.shuffle(order)
            out.extend(order[: n - len(out)])
        return out

    def mix(self, train_examples: Sequence[Any], ratio: float, seed: int) -> list[Any]:
        """The new stage's training list: ``train_examples`` followed by
        ``round(ratio * len(train_examples))`` replayed items (``ratio`` = replayed examples
        per new example; the loop shuffles the list every epoch)."""
        if ratio < 0:
            raise ValueError(f"replay ratio must be >= 0, got {ratio}")
        return list(train_examples) + self.draw(round(ratio * len(train_examples)), seed)

    # -- persistence --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        version, internal, gauss = self._rng.getstate()
        return {
            "capacity": self.capacity,
            "seed": self.seed,
            "seen": self.seen,
            "items": self.items,
            "rng": [version, list(internal), gauss],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.capacity, self.seed, self.seen = state["capacity"], state["seed"], state["seen"]
        self.items = list(state["items"])
        version, internal, gauss = state["rng"]
        self._rng.setstate((version, tuple(internal), gauss))

    def save(self, path: str | Path) -> Path:
        """Write as JSON (items must be JSON-serialisable), atomically."""
        path = Path(path)
        atomic_write_json(path, self.state_dict(), indent=None)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReservoirBuffer:
        state = json.loads(Path(path).read_text())
        buffer = cls(state["capacity"], state["seed"])
        buffer.load_state_dict(state)
        return buffer

"""Reservoir replay: Algorithm R keeps each offered item with probability capacity / n."""

import random

import pytest

from tunesmith.objectives.continual.buffer import ReservoirBuffer


def test_each_item_is_kept_with_probability_capacity_over_n():
    n, capacity, trials = 40, 8, 4000
    seeds = random.Random(123)
    counts = [0] * n
    for _ in range(trials):
        buffer = ReservoirBuffer(capacity, seed=seeds.randrange(2**31))
        buffer.add(range(n // 2))  # two stages: the reservoir spans both
        buffer.add(range(n // 2, n))
        assert len(buffer) == capacity and buffer.seen == n
        for item in buffer.items:
            counts[item] += 1
    p = capacity / n
    se = (p * (1 - p) / trials) ** 0.5
    for item, c in enumerate(counts):
        assert abs(c / trials - p) < 4.5 * se, (item, c / trials)
    # early and late items alike (no bias to the first stage)
    first, second = sum(counts[: n // 2]), sum(counts[n // 2 :])
    assert abs(first - second) / (trials * capacity) < 0.05


def test_below_capacity_everything_is_kept_in_order():
    buffer = ReservoirBuffer(10, seed=0)
    buffer.add(["a", "b", "c"])
    assert buffer.items == ["a", "b", "c"]


def test_mix_appends_ratio_times_the_new_examples_and_keeps_their_labels():
    buffer = ReservoirBuffer(4, seed=0)
    old = [{"text": f"old {i}", "label": "A:x", "task": "A"} for i in range(10)]
    buffer.add(old)
    new = [{"text": f"new {i}", "label": "B:y", "task": "B"} for i in range(20)]
    mixed = buffer.mix(new, ratio=0.5, seed=1)
    assert mixed[:20] == new and len(mixed) == 30
    replayed = mixed[20:]
    assert all(r in buffer.items for r in replayed)
    assert all(r["label"] == "A:x" and r["task"] == "A" for r in replayed)
    # 10 draws from 4 items: whole shuffles first, so each item 2 or 3 times
    counts = [replayed.count(item) for item in buffer.items]
    assert sorted(counts) == [2, 2, 3, 3]
    assert buffer.mix(new, 0.5, seed=1) == mixed  # seeded
    assert buffer.mix(new, 0.0, seed=1) == new
    with pytest.raises(ValueError):
        buffer.mix(new, -1.0, seed=1)


def test_save_and_load_continue_identically(tmp_path):
    a = ReservoirBuffer(5, seed=7)
    a.add(range(30))
    b = ReservoirBuffer.load(a.save(tmp_path / "buffer.json"))
    assert b.items == a.items and b.seen == a.seen
    a.add(range(30, 90))
    b.add(range(30, 90))
    assert a.items == b.items

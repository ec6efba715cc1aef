"""Mixing rates against the T5 §3.5.2 formulas, and the sampler's rates, caps, resume, batches."""

import math

import pytest

from tunesmith.data.mixing import (
    MixtureSampler,
    concat_tasks,
    describe_rates,
    mixing_rates,
    mixture_steps_per_epoch,
    observed_rates,
)
from tunesmith.errors import ConfigError

SIZES = {"a": 100, "b": 400, "c": 10_000}


def approx(d):
    return pytest.approx(d, rel=1e-12, abs=1e-12)


def test_proportional_is_size_share():
    assert mixing_rates(SIZES, "proportional") == approx(
        {"a": 100 / 10_500, "b": 400 / 10_500, "c": 10_000 / 10_500}
    )


def test_proportional_cap_limits_each_size_to_k():
    # r_m = min(e_m, K) / sum_n min(e_n, K), K = 300 -> 100, 300, 300
    assert mixing_rates(SIZES, "proportional", cap=300) == approx(
        {"a": 100 / 700, "b": 300 / 700, "c": 300 / 700}
    )
    # a cap above every size changes nothing
    assert mixing_rates(SIZES, "proportional", cap=10**6) == approx(mixing_rates(SIZES))


def test_temperature_two_is_square_root_of_sizes():
    # T = 2: r_m ∝ e_m^(1/2) -> 10, 20, 100
    assert mixing_rates(SIZES, "temperature", temperature=2.0) == approx(
        {"a": 10 / 130, "b": 20 / 130, "c": 100 / 130}
    )
    assert mixing_rates(SIZES, "temperature") == mixing_rates(SIZES, "temperature", temperature=2)


def test_temperature_two_with_cap():
    root = math.sqrt(300)
    total = 10 + 2 * root
    assert mixing_rates(SIZES, "temperature", cap=300, temperature=2.0) == approx(
        {"a": 10 / total, "b": root / total, "c": root / total}
    )


def test_t5_setting_k_2_21_t_2():
    """T5's mixture setting (K = 2^21, T = 2) on GLUE-sized tasks plus one huge task."""
    sizes = {"sst2": 67_349, "trec": 5_452, "rte": 2_490, "c4": 10**9}
    k = 2**21
    weights = {n: math.sqrt(min(e, k)) for n, e in sizes.items()}
    total = sum(weights.values())
    got = mixing_rates(sizes, "temperature", cap=k, temperature=2.0)
    assert got == approx({n: w / total for n, w in weights.items()})
    assert got["c4"] == pytest.approx(math.sqrt(k) / total)  # the cap binds only on c4


def test_temperature_limits():
    assert mixing_rates(SIZES, "temperature", temperature=1.0) == approx(mixing_rates(SIZES))
    equal = {n: 1 / 3 for n in SIZES}
    assert mixing_rates(SIZES, "temperature", temperature=math.inf) == approx(equal)
    far = mixing_rates(SIZES, "temperature", temperature=1e6)
    assert far == pytest.approx(equal, abs=1e-4)


def test_huge_sizes_and_small_temperature_do_not_overflow():
    rates = mixing_rates({"x": 10**15, "y": 10}, "temperature", temperature=0.01)
    assert rates["x"] == pytest.approx(1.0) and rates["y"] >= 0 and math.isfinite(rates["y"])


def test_equal_and_explicit():
    assert mixing_rates(SIZES, "equal") == approx({n: 1 / 3 for n in SIZES})
    got = mixing_rates(SIZES, "explicit", weights={"a": 2, "b": 1, "c": 1})
    assert got == approx({"a": 0.5, "b": 0.25, "c": 0.25})
    assert list(got) == list(SIZES)  # task order kept


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"strategy": "proportionl"}, "mixing.strategy"),
        ({"strategy": "proportional", "temperature": 2.0}, "mixing.temperature"),
        ({"strategy": "temperature", "temperature": 0.0}, "mixing.temperature"),
        ({"strategy": "temperature", "temperature": -1.0}, "mixing.temperature"),
        ({"strategy": "equal", "cap": 10}, "mixing.cap"),
        ({"strategy": "proportional", "cap": 0}, "mixing.cap"),
        ({"strategy": "explicit"}, "tasks[].weight"),
        ({"strategy": "explicit", "weights": {"a": 1, "b": 1}}, "tasks[].weight"),
        ({"strategy": "explicit", "weights": {"a": 0, "b": 0, "c": 0}}, "tasks[].weight"),
        ({"strategy": "explicit", "weights": {"a": -1, "b": 1, "c": 1}}, "tasks[a].weight"),
        ({"strategy": "proportional", "weights": {"a": 1, "b": 1, "c": 1}}, "tasks[].weight"),
    ],
)
def test_bad_settings_name_the_key(kwargs, key):
    with pytest.raises(ConfigError) as err:
        mixing_rates(SIZES, **kwargs)
    assert err.value.key == key


def test_empty_task_is_an_error():
    with pytest.raises(ConfigError, match=r"tasks\[b\]"):
        mixing_rates({"a": 5, "b": 0})


# --- sampler ---------------------------------------------------------------------------------


def make_sampler(sizes=SIZES, rates=None, **kw):
    rates = rates or mixing_rates(sizes, "temperature", cap=1_000)
    kw = {"seed": 7, "batch_size": 4} | kw
    return MixtureSampler(sizes, rates, **kw)


def test_empirical_frequencies_match_rates():
    rates = mixing_rates(SIZES, "temperature", cap=1_000)
    plan = make_sampler(rates=rates).global_plan(0, 20_000)
    seen = observed_rates(plan, list(SIZES))
    for task, r in rates.items():  # sd = sqrt(r(1-r)/20000) <= 0.0036
        assert seen[task] == pytest.approx(r, abs=0.015)


def test_cap_is_respected_by_the_sampler():
    """The capped task is drawn at K / sum min(e, K), far below its uncapped share."""
    rates = mixing_rates(SIZES, "proportional", cap=300)
    seen = observed_rates(make_sampler(rates=rates).global_plan(0, 20_000), list(SIZES))
    assert seen["c"] == pytest.approx(300 / 700, abs=0.015)
    assert seen["c"] < mixing_rates(SIZES)["c"] - 0.3


def test_zero_weight_task_is_never_drawn():
    rates = mixing_rates(SIZES, "explicit", weights={"a": 1, "b": 0, "c": 1})
    seen = observed_rates(make_sampler(rates=rates).global_plan(0, 5_000), list(SIZES))
    assert seen["b"] == 0.0


@pytest.mark.parametrize("world, accum", [(1, 1), (2, 3)])
def test_resume_gives_the_same_sequence(world, accum):
    full = make_sampler(world=world, grad_accum=accum).global_plan(0, 300)
    for k in (1, 57, 299):
        fresh = make_sampler(world=world, grad_accum=accum)  # a restarted process: no cache
        assert fresh.global_plan(k, 300 - k) == full[k:]
    for rank in range(world):
        tail = make_sampler(world=world, grad_accum=accum).plan(123, 50, rank=rank)
        assert tail == [step[rank::world] for step in full[123:173]]


def test_plans_are_seeded():
    assert make_sampler().global_plan(0, 50) == make_sampler().global_plan(0, 50)
    assert make_sampler().global_plan(0, 50) != make_sampler(seed=8).global_plan(0, 50)


def test_batches_are_homogeneous_and_sized():
    sampler = make_sampler(world=2, grad_accum=2)
    steps = sampler.global_plan(0, 200)
    assert all(len(step) == 4 for step in steps)
    train = {n: [{"input_ids": [1], "n": i} for i in range(e)] for n, e in SIZES.items()}
    examples, offsets = concat_tasks(train)
    assert offsets == {"a": 0, "b": 100, "c": 500}
    for rank in range(2):
        for step in sampler.index_plan(0, 200, offsets, rank=rank):
            assert len(step) == 2  # grad_accum micro-batches per process
            for idx in step:
                assert len(idx) == 4
                assert len({examples[i]["task"] for i in idx}) == 1


def test_examples_without_replacement_then_reshuffled():
    sizes = {"small": 10, "big": 1_000}
    sampler = make_sampler(sizes, rates={"small": 0.5, "big": 0.5}, batch_size=3)
    stream = [
        i
        for step in sampler.global_plan(0, 400)
        for mb in step
        if mb.task == "small"
        for i in mb.indices
    ]
    passes = [stream[k : k + 10] for k in range(0, len(stream) - 10, 10)]
    assert len(passes) > 5
    assert all(sorted(p) == list(range(10)) for p in passes)  # each pass is a permutation
    assert len({tuple(p) for p in passes}) > 1  # reshuffled between passes


def test_ranks_take_disjoint_examples():
    sampler = make_sampler({"x": 64}, rates={"x": 1.0}, world=2, batch_size=4)
    r0 = [i for step in sampler.plan(0, 8, rank=0) for mb in step for i in mb.indices]
    r1 = [i for step in sampler.plan(0, 8, rank=1) for mb in step for i in mb.indices]
    assert sorted(r0 + r1) == list(range(64))


def test_bad_sampler_arguments():
    with pytest.raises(ValueError, match="sum to 1"):
        MixtureSampler({"a": 1, "b": 1}, {"a": 0.5, "b": 0.6}, 2)
    with pytest.raises(ValueError, match="in order"):
        MixtureSampler({"a": 1, "b": 1}, {"b": 0.5, "a": 0.5}, 2)
    with pytest.raises(ValueError, match="rank"):
        make_sampler().plan(0, 1, rank=1)


def test_steps_per_epoch_and_description():
    # one pass over sum min(e, K) = 100 + 300 + 300 examples, 8 * 2 * 2 per step -> ceil(700/32)
    assert mixture_steps_per_epoch(SIZES, 8, cap=300, world=2, grad_accum=2) == 22
    assert mixture_steps_per_epoch({"a": 1}, 32) == 1
    rates = mixing_rates(SIZES, "temperature", cap=300)
    text = describe_rates(
        SIZES, rates, strategy="temperature", cap=300, temperature=None, examples_total=7000
    )
    assert "T=2" in text and "cap K=300" in text
    assert f"{rates['a']:.4f}" in text and "10,000" in text

"""train.loss_chunk_tokens through the loop: the same loss curve (train and dev) as unchunked."""

import json

import pytest

from tunesmith.config import parse_recipe
from tunesmith.distill.chunked import chunked_forward
from tunesmith.errors import ConfigError
from tunesmith.train import evaluation, step
from tunesmith.train.loop import train

from .conftest import make_recipe

LM = "causal_lm"


def curve(run_dir):
    """(step, split, loss) of every logged record, in order."""
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["split"], r["loss"]) for r in lines if "loss" in r]


def assert_same_curve(a, b):
    assert [x[:2] for x in a] == [x[:2] for x in b] and len(a) >= 6
    for (_, _, x), (_, _, y) in zip(a, b, strict=True):
        assert x == pytest.approx(y, rel=1e-5, abs=1e-5)


def run_twice(tmp_path, monkeypatch, model_dir, tiny_data, **over):
    """Train the recipe unchunked and with 7-token chunks; their (chunked, plain) curves."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(args[3])
        return chunked_forward(*args, **kwargs)

    monkeypatch.setattr(step, "chunked_forward", counted)
    evals = []
    nll = evaluation._chunked_nll
    monkeypatch.setattr(evaluation, "_chunked_nll", lambda *a: evals.append(a[-1]) or nll(*a))
    base = {"train.max_steps": 6, "train.log_every": 1, "train.eval_every": 3, **over}
    for name, chunk in (("plain", "null"), ("chunked", 7)):
        recipe = make_recipe(
            model_dir, LM, tiny_data, tmp_path / name, **base, **{"train.loss_chunk_tokens": chunk}
        )
        train(recipe)
        assert len(calls) == (0 if chunk == "null" else 6)  # every step chunked
    assert set(calls) == {7} and set(evals) == {7}  # dev loss chunked too
    return curve(tmp_path / "chunked"), curve(tmp_path / "plain")


@pytest.mark.parametrize("adapter", [None, "{type: lora, r: 4, targets: [q_proj, lm_head]}"])
def test_causal_lm_run_has_the_same_loss_curve(
    tiny_models, tiny_data, tmp_path, monkeypatch, adapter
):
    over = {"adapter": adapter} if adapter else {}
    chunked, plain = run_twice(tmp_path, monkeypatch, tiny_models["llama", LM], tiny_data, **over)
    assert_same_curve(chunked, plain)


@pytest.mark.parametrize(
    ("objectives", "cache"),
    [
        ("[{name: lm_kd, params: {beta: 0.5}}, {name: hidden_mse, weight: 0.1}]", False),
        ("[{name: lm_kd, params: {temperature: 2.0}}]", True),  # cached top-k teacher outputs
    ],
)
def test_lm_distillation_run_has_the_same_loss_curve(
    tiny_models, tiny_data, tmp_path, monkeypatch, objectives, cache
):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    teacher = tiny_models["llama", LM]
    over = {
        "model": "null",
        "distill": f"{{teacher: {teacher}, cache: {str(cache).lower()}, top_k: 8}}",
        "student": "{from_teacher: {layers: [1]}}",
        "objectives": objectives,
        "task_weight": 0.5,
    }
    chunked, plain = run_twice(tmp_path, monkeypatch, teacher, tiny_data, **over)
    assert_same_curve(chunked, plain)


def test_loss_chunk_tokens_is_checked():
    base = {"model": "x", "task": LM, "data": {"train": "t.json"}}
    with pytest.raises(ConfigError, match="train.loss_chunk_tokens: must be >= 1, got 0"):
        parse_recipe(base, ["train.loss_chunk_tokens=0"])
    cls = {**base, "task": "sequence_classification"}
    with pytest.raises(ConfigError, match="loss_chunk_tokens: chunks the causal_lm loss"):
        parse_recipe(cls, ["train.loss_chunk_tokens=512"])
    assert parse_recipe(base, ["train.loss_chunk_tokens=512"]).train.loss_chunk_tokens == 512


def test_text_to_text_causal_run_trains_chunked(tiny_models, tiny_data, tmp_path):
    from .test_loop_text_to_text import text_recipe

    model = tiny_models["llama", LM]
    over = {"train.max_steps": 6, "train.log_every": 1}
    train(text_recipe(model, tiny_data, tmp_path / "plain", **over))
    chunked = {**over, "train.loss_chunk_tokens": 5}
    train(text_recipe(model, tiny_data, tmp_path / "chunked", **chunked))
    assert_same_curve(curve(tmp_path / "chunked"), curve(tmp_path / "plain"))

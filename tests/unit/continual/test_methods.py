"""The continual-method registry: every registered method, its settings, presets, old recipe keys.

The matrices are built from ``METHODS``, so a new method module joins them without editing a list.
"""

import ast
import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import tunesmith.continual as continual_pkg
import tunesmith.objectives as objectives_pkg
from tunesmith.continual import ContinualConfig, parse_sequence, run_sequence
from tunesmith.continual.stages import run_sequence as stages_run_sequence
from tunesmith.errors import ConfigError
from tunesmith.objectives.continual import (
    METHODS,
    PRESETS,
    CombinedMethod,
    ContinualMethod,
    register_method,
)
from tunesmith.objectives.continual.state import ContinualState

from .conftest import sequence_dict

NAMES = METHODS.names()

# the recipe's flat keys before one section per method, with values other than the defaults
OLD = {
    "ewc_lambda": 7.0,
    "online_gamma": 0.5,
    "l2_lambda": 0.3,
    "lwf_lambda": 2.0,
    "lwf_temperature": 3.0,
    "fisher": {"kind": "sampled", "n_samples": 2, "max_examples": 64},
    "replay": {"capacity": 10, "ratio": 0.5},
}
NEW = {
    "ewc": {"weight": 7.0, "fisher": {"kind": "sampled", "n_samples": 2, "max_examples": 64}},
    "online_ewc": {
        "weight": 7.0,
        "gamma": 0.5,
        "fisher": {"kind": "sampled", "n_samples": 2, "max_examples": 64},
    },
    "l2_anchor": {"weight": 0.3},
    "lwf": {"weight": 2.0, "temperature": 3.0},
    "replay": {"capacity": 10, "ratio": 0.5},
}


@pytest.mark.parametrize("name", NAMES)
def test_every_method_documents_and_validates_its_settings(name):
    cls = METHODS.get(name)
    assert issubclass(cls, ContinualMethod) and cls.name == name
    for part in cls.parts():
        for f in dataclasses.fields(part.Params):
            assert f.metadata.get("help"), f"{part.name}.{f.name} has no help text"
        with pytest.raises(ConfigError, match=rf"continual\.{part.name}\.no_such_key"):
            ContinualConfig.parse({"method": name, part.name: {"no_such_key": 1}})
    cfg = ContinualConfig.parse({"method": name})
    assert cfg.method == name
    assert set(cfg.params) == {p.name for p in cls.parts()}
    assert ContinualConfig.parse(cfg.resolved()).resolved() == cfg.resolved()  # round trip
    assert type(cfg.create_method()) is cls


@pytest.mark.parametrize("preset", ["ewc", "online-ewc", "lwf", "ewc+replay"])
def test_paper_presets(preset):
    cfg = ContinualConfig.parse({"method": preset})
    assert cfg.method == PRESETS.get(preset, preset) and cfg.method in METHODS
    with pytest.raises(ConfigError, match="did you mean 'online-ewc'"):
        ContinualConfig.parse({"method": "online-ewcc"})


def test_old_flat_keys_give_the_same_settings_as_the_sections(caplog):
    for name in NAMES:
        with caplog.at_level(logging.WARNING, logger="tunesmith.continual.config"):
            old = ContinualConfig.parse({"method": name, **OLD})
        new = ContinualConfig.parse({"method": name, **NEW})
        assert old.resolved() == new.resolved(), name
    messages = caplog.text
    assert "continual.ewc_lambda is deprecated: use continual.ewc.weight" in messages
    assert "continual.lwf_temperature is deprecated: use continual.lwf.temperature" in messages
    assert ContinualConfig.parse({"method": "online_ewc", **OLD}).params["online_ewc"].gamma == 0.5
    with pytest.raises(ConfigError, match=r"continual\.ewc_lambda.*also as continual\.ewc\.weight"):
        ContinualConfig.parse({"method": "ewc", "ewc_lambda": 1.0, "ewc": {"weight": 2.0}})
    with pytest.raises(ConfigError, match=r"continual\.online_ewc\.gamma"):
        ContinualConfig.parse({"method": "online_ewc", "online_gamma": 2.0})  # checked as before
    with pytest.raises(ConfigError, match=r"continual\.ewcc.*did you mean 'ewc'"):
        ContinualConfig.parse({"method": "ewc", "ewcc": {}})


def test_objectives_never_import_the_layers_above_them():
    """Loss-side code stays below the loop and the drivers (lazy imports included)."""
    root = Path(objectives_pkg.__file__).parent
    banned = ("tunesmith.continual", "tunesmith.train", "tunesmith.multitask")
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.startswith(banned)]
    assert found == []
    assert continual_pkg.run_sequence is stages_run_sequence  # a plain import, no lazy wrapper
    for first in ("tunesmith.objectives", "tunesmith.continual", "tunesmith.train.loop"):
        code = f"import {first}; import tunesmith.continual, tunesmith.objectives"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]


# -- every registered method through a two-stage sequence ---------------------------------------


@pytest.fixture(scope="module")
def naive_stage0(tiny_bert, two_tasks, tmp_path_factory):
    out = tmp_path_factory.mktemp("naive0")
    run_sequence(parse_sequence(sequence_dict(tiny_bert, two_tasks, out, "naive")), stop_after=1)
    return load_file(str(out / "stages" / "0-senti" / "best" / "model.safetensors"))


@pytest.mark.parametrize("name", NAMES)
def test_every_method_runs_a_sequence_from_the_same_first_stage(
    name, naive_stage0, tiny_bert, two_tasks, tmp_path
):
    data = sequence_dict(tiny_bert, two_tasks, tmp_path, name, replay={"capacity": 8})
    if METHODS.get(name).needs_adapter:  # O-LoRA, adapter per task: stage 0 trains a LoRA
        data["adapter"] = {"type": "lora", "r": 2}
    report = run_sequence(parse_sequence(data))
    joint = METHODS.get(name).joint
    assert report["method"] == name and len(report["matrix"]) == (1 if joint else 2)
    if joint or METHODS.get(name).needs_adapter:  # (bit-identity with an adapter: see
        return  # test_peft_methods.py)
    # stage 0 protects nothing: bit-identical whatever the method
    first = load_file(str(tmp_path / "stages" / "0-senti" / "best" / "model.safetensors"))
    assert set(first) == set(naive_stage0)
    assert all(first[k].equal(naive_stage0[k]) for k in first)
    # stage 1 carries the method's terms, and each one was logged while training
    stage1 = tmp_path / "stages" / "1-topic"
    terms = [o["name"] for o in yaml.safe_load((stage1 / "config.yaml").read_text())["objectives"]]
    logged = [json.loads(line) for line in (stage1 / "metrics.jsonl").read_text().splitlines()]
    for term in terms:
        assert any(term in m for m in logged if m.get("split") == "train"), term
    assert (tmp_path / "state" / "stage-1.safetensors").is_file() == bool(terms)


def _penalised(out, method):
    state = ContinualState.load(out / "state" / "stage-1.safetensors")
    fisher = state.fishers["senti"] if method == "ewc" else state.online_fisher
    values = torch.cat([f.flatten().double() for f in fisher.values()])
    return state, values


@pytest.mark.parametrize("method", ["ewc", "online_ewc"])
def test_stage_fisher_is_normalised_to_mean_one_unless_normalize_none(
    method, tiny_bert, two_tasks, tmp_path
):
    """Issue 18 item 1: the stored importance has mean 1 over the penalised (body) parameters by
    default; ``fisher.normalize: none`` keeps the raw Fisher (the numbers before the option)."""
    runs = {}
    for mode in ("mean", "none"):
        out = tmp_path / mode
        section = {"weight": 1.0, "fisher": {"max_examples": 16, "normalize": mode}}
        data = sequence_dict(tiny_bert, two_tasks, out, method, **{method: section})
        run_sequence(parse_sequence(data), stop_after=1)
        runs[mode] = _penalised(out, method)
    (state, mean), (_, raw) = runs["mean"], runs["none"]
    assert float(mean.mean()) == pytest.approx(1.0)
    assert float(raw.mean()) != pytest.approx(1.0)
    torch.testing.assert_close(mean, raw / raw.mean())  # same estimate, one scale
    assert not any(
        "classifier" in n for n in state.anchors["senti"]
    )  # separate heads: not penalised


# -- a new method is one module ----------------------------------------------------------------


@dataclasses.dataclass
class _AnchorParams:
    weight: float = dataclasses.field(default=5.0, metadata={"help": "the l2_anchor weight"})


class _AnchorToLast(ContinualMethod):
    """What a new method module holds: its settings, its terms, its work between stages."""

    name = "test_anchor_to_last"
    Params = _AnchorParams

    def terms(self, seq, k):
        state = str(seq.state_path(k))
        return [{"name": "l2_anchor", "weight": self.params.weight, "params": {"state": state}}]

    def update_state(self, state, previous, seq, model, i):
        params = seq.trainable(model, i)
        state.anchors = {seq.names[i]: {n: p.detach().cpu().clone() for n, p in params.items()}}


@pytest.fixture
def new_method():
    register_method(_AnchorToLast, "a test method")
    yield _AnchorToLast
    METHODS._entries.pop(_AnchorToLast.name)


def test_a_new_method_needs_only_its_registration(new_method, tiny_bert, two_tasks, tmp_path):
    name = new_method.name
    data = sequence_dict(tiny_bert, two_tasks, tmp_path, name, **{name: {"weight": 2.0}})
    report = run_sequence(parse_sequence(data))
    assert report["method"] == name and len(report["matrix"]) == 2
    cfg = yaml.safe_load((tmp_path / "stages" / "1-topic" / "config.yaml").read_text())
    assert cfg["objectives"] == [
        {
            "name": "l2_anchor",
            "weight": 2.0,
            "params": {"state": cfg["objectives"][0]["params"]["state"]},
        }
    ]
    assert yaml.safe_load((tmp_path / "sequence.yaml").read_text())["continual"][name] == {
        "weight": 2.0
    }


def test_combined_methods_read_each_part_s_section():
    cfg = ContinualConfig.parse({"method": "ewc+replay", **NEW})
    method = cfg.create_method()
    assert isinstance(method, CombinedMethod)
    assert [m.name for m in method.methods] == ["ewc", "replay"]
    assert method.methods[0].params.weight == 7.0 and method.methods[1].params.capacity == 10
    assert set(cfg.resolved()) >= {"ewc", "replay"} and "lwf" not in cfg.resolved()


# -- a sequence directory written before the per-method sections --------------------------------


def _old_sequence_yaml(text: str, **flat) -> str:
    """``sequence.yaml`` as the flat ContinualConfig wrote it (every method's key, in order)."""
    data = yaml.safe_load(text)
    new = data["continual"]
    old = {k: new[k] for k in ("method", "heads", "label_prefix", "restrict_eval_labels")}
    old |= {
        "ewc_lambda": 1000.0,
        "online_gamma": 1.0,
        "l2_lambda": 0.01,
        "lwf_lambda": 1.0,
        "lwf_temperature": 2.0,
        "fisher": {"kind": "empirical", "n_samples": 1, "max_examples": 512},
        "replay": {"capacity": 1000, "ratio": 0.25},
    }
    old |= flat
    old |= {k: new[k] for k in ("seed", "eval_split", "metric", "evaluate_initial", "keep_state")}
    return yaml.safe_dump({"continual": old, "stages": data["stages"]}, sort_keys=False)


def test_a_sequence_directory_from_before_resumes(tiny_bert, two_tasks, tmp_path):
    # a directory from before fisher.normalize holds raw Fishers: it resumes as normalize: none
    raw = {"weight": 100.0, "fisher": {"normalize": "none"}}
    data = sequence_dict(tiny_bert, two_tasks, tmp_path, "ewc", ewc=raw)
    seq = parse_sequence(data)
    run_sequence(seq, stop_after=1)
    saved = tmp_path / "sequence.yaml"
    today = saved.read_text()
    saved.write_text(_old_sequence_yaml(today, ewc_lambda=100.0))
    assert run_sequence(seq, stop_after=1)["completed_stages"] == 1  # same settings: accepted
    assert saved.read_text() == today  # and rewritten in today's form
    saved.write_text(_old_sequence_yaml(today, ewc_lambda=5.0))
    with pytest.raises(ConfigError, match="other settings"):
        run_sequence(seq, stop_after=1)
    # today's default (normalised Fisher) does not continue a raw-Fisher directory
    data["continual"]["ewc"] = {"weight": 100.0}
    saved.write_text(_old_sequence_yaml(today, ewc_lambda=100.0))
    with pytest.raises(ConfigError, match="other settings"):
        run_sequence(parse_sequence(data), stop_after=1)


def test_the_shipped_recipe_in_the_old_form_resolves_the_same():
    recipe = Path(__file__).parents[3] / "recipes" / "continual" / "agnews_sst2_trec_ewc.yaml"
    data = yaml.safe_load(recipe.read_text())
    old = {
        **{k: v for k, v in data["continual"].items() if k not in ("ewc", "replay")},
        "ewc_lambda": 0.5,  # the shipped recipe's weight (was 1000 on the raw Fisher)
        "fisher": {"kind": "empirical", "n_samples": 1, "max_examples": 512},
        "replay": {"capacity": 1000, "ratio": 0.25},
    }
    for name in NAMES:  # also after continual.method=<name>
        adapter = {"adapter": "lora"} if METHODS.get(name).needs_adapter else {}
        a = parse_sequence({**data, **adapter, "continual": {**data["continual"], "method": name}})
        b = parse_sequence({**data, **adapter, "continual": {**old, "method": name}})
        assert a.continual.resolved() == b.continual.resolved(), name

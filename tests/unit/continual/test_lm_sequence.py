"""Causal-LM task sequences scored by label words, with a perplexity probe (tiny Llama + LoRA)."""

import json
import random

import pytest

from tunesmith.adapters import load_model_or_adapter, mark_trainable
from tunesmith.continual import ContinualState, parse_sequence, run_sequence
from tunesmith.continual.labelwords import MAX_LABEL_WORDS
from tunesmith.errors import ConfigError
from tunesmith.models import load_tokenizer
from tunesmith.train.scoring import evaluate_text_to_text

FILL = "the a very it is this one was".split()
TASKS = {  # task -> label word -> words its prompts are made of (all in the tiny vocabulary)
    "senti": {"positive": "good happy love yes great".split(), "negative": "bad sad hate no low".split()},
    "topic": {
        "animal": "cat dog animal".split(),
        "people": "mother father boy man".split(),
        "water": "water land earth air".split(),
    },
    "ask": {"yes": "why how what who".split(), "no": "home house hand play".split()},
}  # fmt: skip


def _records(rng, name, n):
    words = TASKS[name]
    labels = list(words)
    out = []
    for i in range(n):
        label = labels[i % len(labels)]
        text = " ".join(rng.sample(FILL, 2) + rng.sample(words[label], 2))
        out.append({"instruction": f"sentence : {text}", "input": "", "output": label})
    return out


@pytest.fixture(scope="module")
def lm_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("lmdata")
    rng = random.Random(0)
    for name in TASKS:
        (root / f"{name}.json").write_text(json.dumps(_records(rng, name, 36)))
    general = [
        {"instruction": f"say {a} {b}", "input": "", "output": f"{b} {a} {b}"}
        for a, b in zip("hello hi good yes".split(), "world day people water".split(), strict=True)
    ]
    (root / "general.json").write_text(json.dumps(general * 3))
    return root


def lm_sequence(model, root, out, method="naive", tasks=("senti", "topic"), **continual):
    return {
        "model": str(model),
        "task": "causal_lm",
        "output_dir": str(out),
        "seed": 5,
        "adapter": {"type": "lora", "r": 4, "targets": ["q_proj", "v_proj"]},
        "data": {"root": str(root), "max_length": 24, "template": "plain"},
        "optim": {"lr": 5e-3, "warmup_steps": 0},
        "train": {"batch_size": 8, "max_steps": 3, "progress": False, "tensorboard": False},
        "continual": {
            "method": method,
            "heads": "shared",
            "metric": "accuracy",
            "probe": {"train": "general.json", "limit": {"train": 8}},
            **continual,
        },
        "stages": [
            {"name": t, "data": {"train": f"{t}.json", "split": {"dev": 0.2, "test": 0.25}}}
            for t in tasks
        ],
    }


def _seq(*args, **kw):
    return parse_sequence(lm_sequence(*args, **kw))


def test_label_word_matrix_probe_drift_and_resume(tiny_llama, lm_data, tmp_path, monkeypatch):
    out = tmp_path / "seq"
    seq = _seq(tiny_llama, lm_data, out, tasks=("senti", "topic", "ask"))
    report = run_sequence(seq)
    assert report["metric"] == "accuracy" and report["higher_is_better"] is True
    assert report["label_words"] == {
        "senti": ["negative", "positive"],
        "topic": ["animal", "people", "water"],
        "ask": ["no", "yes"],
    }
    R = report["matrix"]
    assert len(R) == 3 and all(0.0 <= x <= 1.0 for row in R for x in row)
    # each entry is label-word scoring of that stage's model on the task's frozen test split
    tok = load_tokenizer(str(tiny_llama))
    for k, stage in enumerate(("senti", "topic", "ask")):
        model = load_model_or_adapter(str(out / "stages" / f"{k}-{stage}" / "best"), "causal_lm")
        for j, task in enumerate(TASKS):
            test = [json.loads(x) for x in (out / "data" / task / "test.jsonl").open()]
            words = report["label_words"][task]
            gold = [r["output"] for r in test]
            direct = evaluate_text_to_text(model, tok, test, gold, words, template="plain")
            assert R[k][j] == pytest.approx(direct["accuracy"], abs=1e-9)
    probe = report["probe"]
    assert probe["metric"] == "perplexity" and probe["examples"] == 8
    assert len(probe["after_stage"]) == 3 and all(v > 1 for v in probe["after_stage"])
    drift = [round(v - probe["initial"], 6) for v in probe["after_stage"]]
    assert probe["drift"] == pytest.approx(drift, abs=1e-5)
    assert probe["final_drift"] == probe["drift"][-1]
    md = (out / "matrix.md").read_text()
    assert "General-capability probe" in md and "stage 2 (ask)" in md
    saved = json.loads((out / "rows" / "probe-1.json").read_text())["metrics"]
    assert saved["perplexity"] == pytest.approx(probe["after_stage"][1], abs=1e-5)

    # resume: nothing trains again; only the deleted rows are scored again, to the same values
    keep = {p.name: p.stat().st_mtime_ns for p in (out / "rows").iterdir()}
    (out / "rows" / "1.json").unlink()
    (out / "rows" / "probe-2.json").unlink()

    def no_training(*a, **k):
        raise AssertionError("a finished stage trained again")

    monkeypatch.setattr("tunesmith.continual.stages.train", no_training)
    again = run_sequence(_seq(tiny_llama, lm_data, out, tasks=("senti", "topic", "ask")))
    assert again["matrix"] == R
    assert again["probe"]["after_stage"] == pytest.approx(probe["after_stage"], abs=1e-5)
    for p in (out / "rows").iterdir():
        if p.name not in ("1.json", "probe-2.json"):
            assert p.stat().st_mtime_ns == keep[p.name], p.name


@pytest.mark.parametrize("method", ["naive", "ewc", "olora", "replay"])
def test_methods_run_label_word_sequences_with_lora(method, tiny_llama, lm_data, tmp_path):
    report = run_sequence(_seq(tiny_llama, lm_data, tmp_path / "s", method, keep_state=True))
    assert len(report["matrix"]) == 2 and report["method"] == method
    assert all(0.0 <= x <= 1.0 for row in report["matrix"] for x in row)
    assert len(report["probe"]["drift"]) == 2
    if method == "ewc":  # the Fisher covers exactly the LoRA parameters
        state = ContinualState.load(tmp_path / "s" / "state" / "stage-1.safetensors")
        best = tmp_path / "s" / "stages" / "0-senti" / "best"
        model = load_model_or_adapter(str(best), "causal_lm")
        mark_trainable(model, "default", train_head=False)
        lora = {n for n, p in model.named_parameters() if p.requires_grad}
        assert lora and set(state.fishers["senti"]) == lora == set(state.anchors["senti"])


def test_label_word_config_errors(tiny_llama, lm_data, tmp_path):
    def bad(match, **continual):
        data = lm_sequence(tiny_llama, lm_data, tmp_path / "x")
        data["continual"].update(continual)
        with pytest.raises(ConfigError, match=match):
            parse_sequence(data)

    bad("scores one of", metric="exact_match")
    bad("no stage of that name", label_words={"nope": ["a"]})
    bad("distinct label words", label_words={"senti": ["a", "a"]})
    bad("scored by label words", metric="perplexity", label_words={"senti": ["a"]})
    bad("continual.probe", probe={"train": "general.json", "nope": 1})
    classification = lm_sequence(tiny_llama, lm_data, tmp_path / "x")
    classification.update(task="sequence_classification", adapter=None)
    classification["continual"] = {"heads": "shared", "probe": {"train": "general.json"}}
    with pytest.raises(ConfigError, match="causal_lm sequence"):
        parse_sequence(classification)

    # known once the data is read, still before any training
    words = {"senti": ["positive"]}  # the test split also answers "negative"
    with pytest.raises(ConfigError, match="not one of its label words"):
        run_sequence(_seq(tiny_llama, lm_data, tmp_path / "a", label_words=words))
    rows = [
        {"instruction": f"say {i}", "output": f"answer {i}"} for i in range(4 * MAX_LABEL_WORDS)
    ]
    (lm_data / "open.json").write_text(json.dumps(rows))
    data = lm_sequence(tiny_llama, lm_data, tmp_path / "b")
    data["stages"][0]["data"]["train"] = "open.json"
    with pytest.raises(ConfigError, match="open-ended"):
        run_sequence(parse_sequence(data))
    chat = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]}
    ]
    (lm_data / "chat.json").write_text(json.dumps(chat * 8))
    data["stages"][0]["data"]["train"] = "chat.json"
    data["output_dir"] = str(tmp_path / "c")
    with pytest.raises(ConfigError, match="prompt/response records"):
        run_sequence(parse_sequence(data))

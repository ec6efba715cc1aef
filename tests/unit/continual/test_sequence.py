"""Two-stage task sequences on tiny data, end to end through the training loop."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

import tunesmith.continual.stages as stages_mod
from tunesmith.continual import ContinualState, load_sequence, parse_sequence, run_sequence
from tunesmith.errors import ConfigError

from .conftest import sequence_dict


def run(tiny_bert, two_tasks, out, method, overrides=(), **kw):
    data = sequence_dict(tiny_bert, two_tasks, out, method, **kw)
    return run_sequence(parse_sequence(data, list(overrides)))


def test_naive_sequence_gives_a_2x2_matrix_and_the_reports(tiny_bert, two_tasks, tmp_path):
    out = tmp_path / "naive"
    report = run(tiny_bert, two_tasks, out, "naive", ["train.epochs=8"])
    assert report["tasks"] == ["senti", "topic"]
    R = report["matrix"]
    assert len(R) == 2 and all(len(row) == 2 for row in R)
    assert all(0.0 <= x <= 1.0 for row in R for x in row)
    assert R[0][0] >= 0.9 and R[1][1] >= 0.6  # both toy tasks are learned (chance: 0.5, 0.33)
    assert R[1][0] >= 0.75  # task 0 scored through its own saved head on the new body
    assert report["acc"] == pytest.approx(sum(R[1]) / 2, abs=1e-6)
    assert report["bwt"] == pytest.approx(R[1][0] - R[0][0], abs=1e-6)
    assert len(report["initial"]) == 2 and report["fwt"] is not None
    assert json.loads((out / "matrix.json").read_text())["matrix"] == R
    assert (out / "matrix.png").is_file() and (out / "matrix.md").is_file()
    # separate heads: each task's own label projection is kept; stage 1 starts from stage 0
    heads = {
        name: load_file(str(out / "heads" / f"{name}.safetensors")) for name in ("senti", "topic")
    }
    assert heads["senti"]["classifier.weight"].shape[0] == 2
    assert heads["topic"]["classifier.weight"].shape[0] == 3
    config = (out / "stages" / "1-topic" / "config.yaml").read_text()
    assert str(out / "stages" / "0-senti") in config
    assert json.loads((out / "stages" / "1-topic" / "labels.json").read_text()) == [
        "animal",
        "family",
        "nature",
    ]


def test_ewc_sequence_resumes_and_skips_the_finished_stage(
    tiny_bert, two_tasks, tmp_path, monkeypatch
):
    out = tmp_path / "ewc"
    seq = parse_sequence(sequence_dict(tiny_bert, two_tasks, out, "ewc", ewc={"weight": 100.0}))
    trained = []
    real_train = stages_mod.train

    def counting_train(recipe, run_dir, resume=False, **kw):  # kw: callbacks
        trained.append((run_dir.name, resume))
        return real_train(recipe, run_dir, resume=resume, **kw)

    monkeypatch.setattr(stages_mod, "train", counting_train)
    partial = run_sequence(seq, stop_after=1)
    assert partial["completed_stages"] == 1 and trained == [("0-senti", False)]
    state = ContinualState.load(out / "state" / "stage-1.safetensors")
    assert state.seen == ["senti"] and set(state.fishers) == {"senti"}
    fisher = state.fishers["senti"]
    assert "classifier.weight" not in fisher  # separate heads: the head is not anchored
    assert "bert.embeddings.word_embeddings.weight" in fisher
    assert sum(float(f.sum()) for f in fisher.values()) > 0

    report = run_sequence(seq)  # the finished stage is skipped, the second one runs
    assert trained == [("0-senti", False), ("1-topic", False)]
    assert len(report["matrix"]) == 2 and report["method"] == "ewc"
    stage_cfg = (out / "stages" / "1-topic" / "config.yaml").read_text()
    assert "name: ewc" in stage_cfg and "stage-1.safetensors" in stage_cfg
    metrics = [json.loads(line) for line in (out / "stages" / "1-topic" / "metrics.jsonl").open()]
    assert any(m.get("ewc", 0) > 0 for m in metrics if m.get("split") == "train")

    again = run_sequence(seq)  # everything done: nothing trains, same matrix
    assert len(trained) == 2 and again["matrix"] == report["matrix"]
    changed = parse_sequence(sequence_dict(tiny_bert, two_tasks, out, "lwf"))
    with pytest.raises(ConfigError, match="other settings"):
        run_sequence(changed)


def test_shared_head_replay_and_lwf_and_joint(tiny_bert, two_tasks, tmp_path):
    replay = run(tiny_bert, two_tasks, tmp_path / "replay", "replay", heads="shared")
    mixed = (tmp_path / "replay" / "data" / "replay" / "1-topic-train.jsonl").read_text()
    assert '"label": "senti:' in mixed and '"label": "topic:' in mixed
    labels = json.loads((tmp_path / "replay" / "stages" / "1-topic" / "labels.json").read_text())
    assert labels[:2] == ["senti:neg", "senti:pos"] and len(labels) == 5
    assert len(replay["matrix"]) == 2

    lwf = run(tiny_bert, two_tasks, tmp_path / "lwf", "lwf")
    assert len(lwf["matrix"]) == 2
    joint = run(tiny_bert, two_tasks, tmp_path / "joint", "joint", heads="shared")
    assert len(joint["matrix"]) == 1 and joint["bwt"] is None and joint["acc"] is not None
    labels = json.loads((tmp_path / "joint" / "stages" / "0-joint" / "labels.json").read_text())
    assert len(labels) == 5  # one head over the union


def test_joint_with_separate_heads_trains_one_encoder_with_a_head_per_task(
    tiny_bert, two_tasks, tmp_path
):
    from tunesmith.data.collate import Collator
    from tunesmith.heads import MultiHeadModel
    from tunesmith.train.evaluation import evaluate

    joint = run(tiny_bert, two_tasks, tmp_path / "joint", "joint", ["train.epochs=2"])
    assert len(joint["matrix"]) == 1 and joint["bwt"] is None
    run_dir = tmp_path / "joint" / "stages" / "0-joint"
    labels = json.loads((run_dir / "labels.json").read_text())
    assert labels == {"senti": ["neg", "pos"], "topic": ["animal", "family", "nature"]}
    # the matrix row is each task's test accuracy through its own head
    from accelerate import Accelerator

    model = MultiHeadModel.from_pretrained(run_dir / "best").to(Accelerator().device).eval()

    from tunesmith.data import LabelVocab, encode_classification
    from tunesmith.models import load_tokenizer

    tok = load_tokenizer(str(run_dir / "best"))
    for j, name in enumerate(["senti", "topic"]):
        rows = [
            json.loads(x)
            for x in (tmp_path / "joint" / "data" / name / "test.jsonl").read_text().splitlines()
        ]
        vocab = LabelVocab(labels[name])
        ex = encode_classification(rows, tok, vocab, max_length=16)
        acc = evaluate(
            model.task_view(name),
            ex,
            Collator(tok.pad_token_id),
            "sequence_classification",
            vocab,
            Accelerator(),
            64,
        )["accuracy"]
        assert joint["matrix"][0][j] == pytest.approx(acc)


def test_separate_replay_uses_the_replay_term(tiny_bert, two_tasks, tmp_path):
    report = run(
        tiny_bert, two_tasks, tmp_path / "er", "ewc_replay", replay={"capacity": 8, "ratio": 0.5}
    )
    out = tmp_path / "er"
    cfg = (out / "stages" / "1-topic" / "config.yaml").read_text()
    assert "name: replay" in cfg and "name: ewc" in cfg
    encoded = [json.loads(x) for x in (out / "replay" / "encoded-1.jsonl").read_text().splitlines()]
    assert len(encoded) == 8 and {e["task"] for e in encoded} == {"senti"}
    assert len(report["matrix"]) == 2


def test_sequence_recipe_validation(tiny_bert, two_tasks, tmp_path):
    data = sequence_dict(tiny_bert, two_tasks, tmp_path, "ewc")
    bad = {**data, "continual": {"method": "ewcc"}}
    with pytest.raises(ConfigError, match="continual.method"):
        parse_sequence(bad)
    bad = {**data, "stages": [{**data["stages"][0], "model": "x"}, data["stages"][1]]}
    with pytest.raises(ConfigError, match=r"stages\[0\].model"):
        parse_sequence(bad)
    bad = {**data, "stages": [data["stages"][0], {**data["stages"][1], "optim": {"lrr": 1}}]}
    with pytest.raises(ConfigError, match=r"stages\[1\].*optim.lrr"):
        parse_sequence(bad)
    # separate heads + adapter: accepted since issue 16 (a fresh head per stage on the adapter)
    assert parse_sequence({**data, "adapter": "lora"}).stages[1].recipe.adapter == "lora"
    joint = {**data, "continual": {"method": "joint"}}
    with pytest.raises(ConfigError, match="heads: shared"):
        parse_sequence({**joint, "adapter": "lora"})  # joint multi-head + adapter: not yet
    shared = {**data, "continual": {"method": "ewc", "heads": "shared"}}
    assert parse_sequence({**shared, "adapter": "lora"}).stages[1].recipe.adapter == "lora"
    path = tmp_path / "seq.yaml"
    path.write_text(yaml.safe_dump(data))
    seq = load_sequence(path, ["continual.ewc.weight=5", "train.epochs=2"])
    assert seq.continual.params["ewc"].weight == 5.0 and seq.stages[1].recipe.train.epochs == 2
    assert [s.name for s in seq.stages] == ["senti", "topic"]


def test_a_stage_killed_mid_way_resumes_with_the_same_penalty_and_weights(
    tiny_bert, two_tasks, tmp_path, monkeypatch
):
    from tunesmith.train.loop import Interrupted

    over = ["train.epochs=2", "train.save_every=1"]
    kw = {"ewc": {"weight": 100.0}}
    straight = run(tiny_bert, two_tasks, tmp_path / "straight", "ewc", over, **kw)
    real_train = stages_mod.train
    calls = []

    def killed_in_stage_1(recipe, run_dir, resume=False, **kw):  # kw: callbacks
        calls.append((run_dir.name, resume))
        stop = 3 if run_dir.name == "1-topic" and not resume else None
        return real_train(recipe, run_dir, resume=resume, interrupt_at_step=stop, **kw)

    monkeypatch.setattr(stages_mod, "train", killed_in_stage_1)
    out = tmp_path / "killed"
    with pytest.raises(Interrupted):
        run(tiny_bert, two_tasks, out, "ewc", over, **kw)
    ckpt = out / "stages" / "1-topic" / "checkpoints" / "step-3"
    saved = load_file(str(ckpt / "objective_terms.safetensors"))
    assert any(k.startswith("0.fisher.") for k in saved) and "0.const" in saved
    resumed = run(tiny_bert, two_tasks, out, "ewc", over, **kw)
    assert calls == [("0-senti", False), ("1-topic", False), ("1-topic", True)]
    assert resumed["matrix"] == straight["matrix"]
    a = load_file(str(out / "stages" / "1-topic" / "best" / "model.safetensors"))
    b = load_file(str(tmp_path / "straight" / "stages" / "1-topic" / "best" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_causal_lm_sequence_scores_perplexity_with_lwf(tiny_llama, tmp_path):
    words = {"a": "good happy love yes great".split(), "b": "cat dog animal water land".split()}
    for name, ws in words.items():
        rows = [{"instruction": f"say {w}", "input": "", "output": f"{w} {w} yes"} for w in ws]
        (tmp_path / f"{name}.json").write_text(json.dumps(rows * 4))
    data = {
        "model": str(tiny_llama),
        "task": "causal_lm",
        "output_dir": str(tmp_path / "out"),
        "data": {"root": str(tmp_path), "max_length": 32, "split": {"dev": 0.2, "test": 0.2}},
        "optim": {"lr": 1e-3},
        "train": {"batch_size": 4, "epochs": 1, "progress": False, "tensorboard": False},
        "continual": {"method": "lwf", "heads": "shared"},
        "stages": [
            {"name": "a", "data": {"train": "a.json"}},
            {"name": "b", "data": {"train": "b.json"}},
        ],
    }
    report = run_sequence(parse_sequence(data))
    assert report["metric"] == "perplexity" and report["higher_is_better"] is False
    assert len(report["matrix"]) == 2 and all(x > 1 for row in report["matrix"] for x in row)
    assert report["forgetting"] == pytest.approx(-report["bwt"], abs=1e-6)  # two tasks
    metrics = (tmp_path / "out" / "stages" / "1-b" / "metrics.jsonl").read_text()
    assert '"lwf"' in metrics
    with pytest.raises(ConfigError, match="heads"):
        parse_sequence({**data, "continual": {"method": "lwf"}})  # separate needs a label head


@pytest.mark.parametrize("method", ["ewc", "lwf"])
def test_adapter_sequence_trains_one_adapter_and_leaves_the_base_untouched(
    method, tiny_bert, two_tasks, tmp_path
):
    """LoRA through a shared-head sequence: stage 1 goes on training stage 0's adapter (it starts
    from it), the EWC Fisher covers exactly the adapter + head, and the base never changes."""
    from tunesmith.adapters import adapter_parameters, head_parameters, load_model_or_adapter
    from tunesmith.models import load_model
    from tunesmith.objectives.continual import ContinualState

    data = sequence_dict(
        tiny_bert, two_tasks, tmp_path / "out", method, heads="shared", ewc={"weight": 100.0}
    )
    data["adapter"] = {"type": "lora", "r": 4, "targets": "all-linear"}
    data["continual"]["keep_state"] = True
    report = run_sequence(parse_sequence(data))
    assert len(report["matrix"]) == 2
    out = tmp_path / "out"
    stage0, stage1 = (
        load_model_or_adapter(str(out / "stages" / d), "sequence_classification")
        for d in ("0-senti", "1-topic")
    )
    base = load_model(str(tiny_bert), "sequence_classification", num_labels=5)
    lora0, lora1 = adapter_parameters(stage0, "default"), adapter_parameters(stage1, "default")
    assert lora0 and set(lora0) == set(lora1)
    assert any(not torch.equal(lora0[k], lora1[k]) for k in lora0)  # stage 1 trained it further
    base_names = {n for n, _ in base.named_parameters()} - set(head_parameters(base))
    params1 = dict(stage1.named_parameters())
    for n, p in base.named_parameters():
        if n in base_names:
            assert torch.equal(p, params1[n]), n  # the base is bit-identical after two stages
    if method == "ewc":
        state = ContinualState.load(out / "state" / "stage-1.safetensors")
        fisher = state.fishers["senti"]
        assert set(fisher) == set(lora0) | set(head_parameters(stage0))
    # stage 1 started from stage 0's adapter: its first logged loss is senti-trained, not fresh
    cfg = yaml.safe_load((out / "stages" / "1-topic" / "config.yaml").read_text())
    assert cfg["model"].endswith("0-senti")


def test_a_run_starts_from_an_adapter_run(tiny_bert, two_tasks, tmp_path):
    """model: <adapter run dir> loads its base + adapter + head and trains that adapter on."""
    from tunesmith.adapters import adapter_parameters, list_adapters, load_model_or_adapter
    from tunesmith.config import parse_recipe
    from tunesmith.errors import ConfigError
    from tunesmith.train.loop import train

    def recipe(model, out, adapter):
        return parse_recipe(
            {
                "model": str(model),
                "task": "sequence_classification",
                "output_dir": str(out),
                "seed": 1,
                "adapter": adapter,
                "data": {
                    "root": str(two_tasks),
                    "train": {"path": "senti.txt", "format": "label_text"},
                    "split": {"dev": 0.25},
                    "max_length": 16,
                },
                "optim": {"lr": 1e-3, "warmup_steps": 0},
                "train": {"batch_size": 8, "max_steps": 3, "progress": False, "tensorboard": False},
            }
        )

    lora = {"type": "lora", "r": 4, "targets": ["query", "value"]}
    train(recipe(tiny_bert, tmp_path / "a", lora))
    first = load_model_or_adapter(str(tmp_path / "a"), "sequence_classification")
    assert list_adapters(first) == ["default"]
    train(recipe(tmp_path / "a", tmp_path / "b", lora))
    second = load_model_or_adapter(str(tmp_path / "b"), "sequence_classification")
    a, b = adapter_parameters(first, "default"), adapter_parameters(second, "default")
    assert set(a) == set(b) and any(not torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="already has a lora adapter"):
        train(recipe(tmp_path / "a", tmp_path / "c", {"type": "ia3"}))


def test_finished_stages_drop_their_checkpoints(tiny_bert, two_tasks, tmp_path):
    run(tiny_bert, two_tasks, tmp_path / "a", "naive")
    for stage in ("0-senti", "1-topic"):
        assert not (tmp_path / "a" / "stages" / stage / "checkpoints").exists()
        assert (tmp_path / "a" / "stages" / stage / "best").is_dir()
    run(tiny_bert, two_tasks, tmp_path / "b", "naive", keep_state=True)
    assert (tmp_path / "b" / "stages" / "0-senti" / "checkpoints").is_dir()

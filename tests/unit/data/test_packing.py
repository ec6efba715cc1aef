"""Sequence packing: every token kept, rows within max_length, and no attention across examples
(the packed logits of each example equal its logits alone)."""

import pytest
import torch

from tunesmith.data.collate import Collator
from tunesmith.data.encode import IGNORE_INDEX
from tunesmith.data.packing import pack_examples, packing_efficiency
from tunesmith.tasks import model_inputs, task_loss


def lm_examples(lengths, vocab=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(3, vocab, (n,), generator=g).tolist()
        labels = [IGNORE_INDEX] * (n // 3) + ids[n // 3 :]
        out.append({"input_ids": ids, "attention_mask": [1] * n, "labels": labels})
    return out


def test_best_fit_decreasing_keeps_every_token_within_max_length():
    examples = lm_examples([7, 3, 9, 2, 5, 5, 8, 1, 10])
    rows = pack_examples(examples, 10)
    assert all(len(r["input_ids"]) <= 10 for r in rows)
    assert sum(len(r["input_ids"]) for r in rows) == sum(len(e["input_ids"]) for e in examples)
    assert len(rows) == 5  # 50 tokens in rows of 10: best fit finds the tight packing
    assert packing_efficiency(rows, 10) == 1.0
    for r in rows:  # positions restart at each example; its first label is masked
        starts = [i for i, p in enumerate(r["position_ids"]) if p == 0]
        assert all(r["labels"][s] == IGNORE_INDEX for s in starts)
        assert len(r["attention_mask"]) == len(r["input_ids"])
    again = pack_examples(examples, 10)
    assert again == rows  # deterministic
    with pytest.raises(ValueError, match="more than max_length"):
        pack_examples(lm_examples([11]), 10)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_packed_rows_do_not_attend_across_examples(arch, tmp_path):
    from tunesmith.models import load_model
    from tunesmith.testing import save_tiny_model

    model = load_model(
        str(save_tiny_model(tmp_path / arch, arch, "causal_lm", seed=1)), "causal_lm"
    )
    model.eval()
    examples = lm_examples([6, 9, 4, 12, 5], vocab=40)
    rows = pack_examples(examples, 16)
    assert len(rows) < len(examples)
    collate = Collator(pad_token_id=0)
    with torch.no_grad():
        packed = collate(rows)
        logits = model(**model_inputs("causal_lm", packed)).logits
        assert "attention_mask" not in model_inputs("causal_lm", packed)
        # locate each example in the packed rows and compare with its logits alone
        for ex in examples:
            alone = model(input_ids=torch.tensor([ex["input_ids"]])).logits[0]
            found = False
            for r, row in enumerate(rows):
                ids, n = row["input_ids"], len(ex["input_ids"])
                for s in (i for i, p in enumerate(row["position_ids"]) if p == 0):
                    if ids[s : s + n] == ex["input_ids"] and (
                        s + n == len(ids) or row["position_ids"][s + n] == 0
                    ):
                        torch.testing.assert_close(logits[r, s : s + n], alone, atol=1e-5, rtol=0)
                        found = True
            assert found
        # the packed loss is the token-weighted mean of the per-example losses (first tokens
        # of examples are never labelled here, so both count the same tokens)
        loss = task_loss("causal_lm", logits, packed["labels"])
        singles = collate(examples)
        ref = task_loss(
            "causal_lm", model(**model_inputs("causal_lm", singles)).logits, singles["labels"]
        )
        torch.testing.assert_close(loss, ref, atol=1e-5, rtol=1e-5)


def test_packing_is_refused_outside_causal_lm():
    from tunesmith.config import parse_recipe
    from tunesmith.errors import ConfigError

    base = {
        "model": "m",
        "task": "sequence_classification",
        "data": {"train": "x.jsonl", "packing": True},
    }
    with pytest.raises(ConfigError, match="data.packing"):
        parse_recipe(base)
    assert parse_recipe({**base, "task": "causal_lm"}).data.packing


def test_a_packed_run_trains_and_checks_isolation(tmp_path, monkeypatch):
    """A causal-LM run with data.packing: fewer, fuller rows; a model that would attend across
    examples is refused before training."""
    import json

    from tunesmith.config import parse_recipe
    from tunesmith.errors import ConfigError
    from tunesmith.testing import save_tiny_model
    from tunesmith.train.loop import train
    from tunesmith.train.modes import single

    model_dir = save_tiny_model(tmp_path / "llama", "llama", "causal_lm", seed=1)
    rows = [
        {"instruction": f"say {w}", "input": "", "output": f"{w} {w} yes"}
        for w in "good bad happy sad love hate yes no".split()
    ] * 4
    (tmp_path / "inst.json").write_text(json.dumps(rows))

    def recipe(out):
        return parse_recipe(
            {
                "model": str(model_dir),
                "task": "causal_lm",
                "output_dir": str(out),
                "data": {
                    "root": str(tmp_path),
                    "train": "inst.json",
                    "split": {"dev": 0.25},
                    "max_length": 64,
                    "packing": True,
                },
                "train": {"batch_size": 2, "max_steps": 3, "progress": False, "tensorboard": False},
            }
        )

    summary = train(recipe(tmp_path / "run"))
    assert summary["train_examples"] < 24  # 24 examples packed into fewer rows
    monkeypatch.setattr(single, "attends_within_examples", lambda model: False)
    with pytest.raises(ConfigError, match="data.packing"):
        train(recipe(tmp_path / "run2"))

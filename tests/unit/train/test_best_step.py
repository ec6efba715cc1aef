"""Issue 18.7: the final metrics of a run score the best checkpoint, and say which step it was."""

import json

from tunesmith.train.loop import train

from .conftest import make_recipe


def test_final_metrics_are_logged_at_the_best_step(tiny_models, tiny_data, tmp_path):
    over = {
        "train.max_steps": 12,
        "train.eval_every": 2,
        "train.metric": "accuracy",
        "optim.lr": 0.5,  # diverges after a few steps: the best checkpoint is an early one
        "optim.max_grad_norm": "null",
    }
    model = tiny_models["bert", "sequence_classification"]
    recipe = make_recipe(model, "sequence_classification", tiny_data, tmp_path / "run", **over)
    summary = train(recipe)
    best = summary["best_step"]
    assert best < summary["steps"]  # the case the issue saw (best 300 of 500)
    records = [
        json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().split("\n") if x
    ]
    final = next(r for r in records if r["split"] == "final_dev")
    dev_at_best = next(r for r in records if r["split"] == "dev" and r["step"] == best)
    assert final["step"] == best
    assert final["accuracy"] == dev_at_best["accuracy"]
    md = (tmp_path / "run" / "report.md").read_text()
    assert f"final_dev (best checkpoint, step {best})" in md

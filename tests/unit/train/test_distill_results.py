"""Issue 18.3: a distillation run reports how its student compares with the teacher."""

import json

import pytest

from tunesmith.predict import evaluate_run
from tunesmith.train.distill_results import kept_pct
from tunesmith.train.loop import train

from .conftest import make_recipe

CLS = "sequence_classification"


@pytest.mark.parametrize(
    ("student", "teacher", "metric", "want"),
    [
        (0.88, 0.90, "accuracy", 97.78),  # higher is better: student / teacher
        (0.90, 0.90, "macro_f1", 100.0),
        (12.5, 10.0, "perplexity", 80.0),  # lower is better: teacher / student
        (0.5, 0.0, "accuracy", None),  # nothing to compare with
    ],
)
def test_share_of_the_teacher_kept(student, teacher, metric, want):
    assert kept_pct(student, teacher, metric) == want


@pytest.mark.parametrize("cache", [True, False])
def test_distill_run_reports_teacher_student_size_and_speed(
    tiny_models, tiny_data, tmp_path, monkeypatch, capsys, cache
):
    monkeypatch.setenv("TUNESMITH_CACHE", str(tmp_path / "cache"))
    teacher = tmp_path / "teacher"
    train(make_recipe(tiny_models["bert", CLS], CLS, tiny_data, teacher, **{"train.epochs": 3}))
    over = {
        "model": "null",
        "distill": f"{{teacher: {teacher}, cache: {str(cache).lower()}}}",
        "student": "{from_teacher: {layers: [1]}}",
        "objectives": "[{name: kd, params: {temperature: 2.0}}]",
        "train.max_steps": 4,
    }
    summary = train(make_recipe(teacher, CLS, tiny_data, tmp_path / "s", **over))
    d = summary["distill"]
    # the teacher scored on the same dev/test data as `tunesmith eval` of the teacher run gives
    expected = evaluate_run(teacher)
    for split, scores in expected.items():
        assert d["teacher"][split] == pytest.approx(scores)
    assert d["student"] == {"dev": summary["dev"], "test": summary["test"]}
    for split in ("dev", "test"):
        t, s = d["teacher"][split]["accuracy"], d["student"][split]["accuracy"]
        assert d["kept_pct"][split] == pytest.approx(round(100 * s / t, 2))
    assert d["student_params"] == summary["total_params"] < d["teacher_params"]
    assert d["params_pct"] == pytest.approx(100 * d["student_params"] / d["teacher_params"], 0.01)
    assert d["speedup"] > 0 and d["student_s"] > 0 and d["teacher_s"] > 0
    assert d["timed_examples"] > 0 and d["timed_batches"] >= 1
    saved = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert saved["distill"]["speedup"] == d["speedup"]
    assert saved["distill"]["kept_pct"] == d["kept_pct"]
    out = capsys.readouterr().out
    assert "distill dev accuracy: teacher" in out and "x faster than the teacher" in out
    md = (tmp_path / "s" / "report.md").read_text()
    assert "## Distillation" in md and "| dev accuracy |" in md and "x faster |" in md
    assert "distill.teacher" not in md.split("## Config")[0]  # not repeated in the summary table


def test_runs_without_a_teacher_have_no_distill_entry(tiny_models, tiny_data, tmp_path):
    recipe = make_recipe(
        tiny_models["bert", CLS], CLS, tiny_data, tmp_path / "r", **{"train.max_steps": 2}
    )
    assert "distill" not in train(recipe)

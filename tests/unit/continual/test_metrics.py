"""Continual-learning metrics on hand-made accuracy matrices (every value computed by hand)."""

import json
import math

import numpy as np
import pytest

from tunesmith.continual.metrics import (
    average_accuracy,
    backward_transfer,
    forgetting,
    forward_transfer,
    matrix_report,
    summarize,
)

# R[i][j]: accuracy on task j after stage i
R = [
    [0.90, 0.30, 0.20],
    [0.70, 0.80, 0.25],
    [0.60, 0.50, 0.95],
]


def test_acc_is_the_mean_of_the_last_row():
    assert average_accuracy(R) == pytest.approx((0.60 + 0.50 + 0.95) / 3)


def test_bwt_against_the_diagonal():
    # ((0.60 - 0.90) + (0.50 - 0.80)) / 2
    assert backward_transfer(R) == pytest.approx(-0.30)


def test_forgetting_against_the_best_earlier_score():
    f = forgetting(R)
    assert f.per_task == pytest.approx([0.90 - 0.60, 0.80 - 0.50])
    assert f.mean == pytest.approx(0.30)


def test_forgetting_is_not_silently_zero_when_the_peak_is_off_the_diagonal():
    # task 0 improved after stage 1 (peak 0.95 after the diagonal), then dropped to 0.90;
    # task 1 scored best *before* it was trained (0.85 at stage 0) and ends at 0.70.
    R2 = np.array(
        [
            [0.80, 0.85, 0.1],
            [0.95, 0.75, 0.1],
            [0.90, 0.70, 0.9],
        ]
    )
    f = forgetting(R2)
    assert f.per_task == pytest.approx([0.05, 0.15])
    assert f.mean == pytest.approx(0.10)
    assert f.mean > 0
    # BWT against the diagonal reads task 0 as improved: the two metrics differ on purpose
    assert backward_transfer(R2) == pytest.approx(((0.90 - 0.80) + (0.70 - 0.75)) / 2)


def test_fwt_against_the_initial_model():
    b = [0.25, 0.40, 0.10]
    # ((R[0,1] - b1) + (R[1,2] - b2)) / 2 = ((0.30 - 0.40) + (0.25 - 0.10)) / 2
    assert forward_transfer(R, b) == pytest.approx(0.025)


def test_lower_is_better_flips_the_sign():
    P = [[10.0, 50.0], [14.0, 12.0]]  # perplexity: task 0 got worse by 4
    assert backward_transfer(P, higher_is_better=False) == pytest.approx(-4.0)
    assert forgetting(P, higher_is_better=False).per_task == pytest.approx([4.0])
    assert forward_transfer(P, [20.0, 60.0], higher_is_better=False) == pytest.approx(10.0)


def test_lists_numpy_and_edge_cases():
    assert average_accuracy(np.array(R)) == average_accuracy(R)
    assert math.isnan(backward_transfer([[0.5]]))
    assert forgetting([[0.5]]).per_task == []
    with pytest.raises(ValueError, match="one row per task"):
        backward_transfer([[0.5, 0.6]])
    with pytest.raises(ValueError, match="one entry per task"):
        forward_transfer(R, [0.1, 0.2])
    joint = summarize([[0.9, 0.8]])  # joint training: one row, only ACC
    assert joint["acc"] == pytest.approx(0.85)
    assert joint["bwt"] is None and joint["forgetting"] is None and joint["fwt"] is None


def test_matrix_report_writes_json_png_and_markdown(tmp_path):
    report = matrix_report(R, ["a", "b", "c"], tmp_path, initial=[0.25, 0.4, 0.1])
    saved = json.loads((tmp_path / "matrix.json").read_text())
    assert saved == report
    assert saved["matrix"] == R
    assert saved["acc"] == pytest.approx(0.683333, abs=1e-6)
    assert saved["bwt"] == pytest.approx(-0.3)
    assert saved["forgetting_per_task"] == pytest.approx([0.3, 0.3])
    assert saved["fwt"] == pytest.approx(0.025)
    assert (tmp_path / "matrix.png").stat().st_size > 1000
    md = (tmp_path / "matrix.md").read_text()
    assert "| after stage 2 (c) | 0.6000 | 0.5000 | 0.9500 |" in md
    assert "**BWT**: -0.3000" in md

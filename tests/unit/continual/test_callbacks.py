"""Callbacks in a task sequence: on_stage_end after each stage with its scores; a callback that
stops ends the sequence there and running it again continues (issue 15 item 4)."""

from tunesmith import Callback
from tunesmith.continual import parse_sequence, run_sequence

from .conftest import sequence_dict


class Stages(Callback):
    def __init__(self, stop=False):
        self.ended, self.steps, self.stop = [], 0, stop

    def on_step(self, step, metrics):
        self.steps += 1

    def on_stage_end(self, stage, report):
        self.ended.append((stage, report))
        return self.stop


def test_on_stage_end_gets_each_stage_and_can_stop_the_sequence(tiny_bert, two_tasks, tmp_path):
    seq = parse_sequence(sequence_dict(tiny_bert, two_tasks, tmp_path / "seq"))
    first = Stages(stop=True)
    report = run_sequence(seq, callbacks=[first])
    assert report["completed_stages"] == 1 and report["stopped"] is True
    ((name, info),) = first.ended
    assert name == "senti" and len(info["row"]) == 2 and info["run_dir"].endswith("0-senti")
    assert first.steps > 0  # the stage's training hooks were called too
    rest = Stages()
    report = run_sequence(seq, callbacks=[rest])
    assert [n for n, _ in rest.ended] == ["senti", "topic"]  # senti was done: only scored
    assert report["tasks"] == ["senti", "topic"] and len(report["matrix"]) == 2

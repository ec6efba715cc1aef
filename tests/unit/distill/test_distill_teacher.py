import pytest
import torch

from tunesmith.distill.teacher import (
    TeacherRunner,
    check_compatible,
    check_labels,
    load_teacher,
)
from tunesmith.errors import ModelError
from tunesmith.testing import save_tiny_model, tiny_tokenizer


def test_same_tokenizer_is_compatible(bert_tok):
    check_compatible(bert_tok, tiny_tokenizer(kind="bert"))


def test_vocabulary_mismatch_is_a_clear_error(bert_tok):
    with pytest.raises(ModelError, match="vocabulary sizes differ.*share one tokenizer"):
        check_compatible(bert_tok, tiny_tokenizer(["zebra"], kind="bert"))
    # same size, different ids: swap two words
    a, b = tiny_tokenizer(["zebra"], kind="bert"), tiny_tokenizer(["yak"], kind="bert")
    with pytest.raises(ModelError, match="different token -> id tables"):
        check_compatible(a, b)


def test_label_sets_must_match():
    check_labels({0: "neg", 1: "pos"}, {"0": "neg", "1": "pos"})
    with pytest.raises(ModelError, match=r"\['pos', 'neg'\] differ"):
        check_labels({0: "pos", 1: "neg"}, {0: "neg", 1: "pos"})
    # a teacher trained with data.label_names holds the names in its config: same label set
    check_labels({0: "negative", 1: "positive"}, {0: "0", 1: "1"}, {0: "negative", 1: "positive"})
    with pytest.raises(ModelError, match="differ"):
        check_labels(
            {0: "positive", 1: "negative"}, {0: "0", 1: "1"}, {0: "negative", 1: "positive"}
        )


def test_load_teacher_from_run_dir_folder_and_errors(tmp_path):
    run = tmp_path / "run"
    save_tiny_model(run / "best", "bert", "sequence_classification", num_labels=3)
    (run / "config.yaml").write_text("model: x\n")
    for spec in (run, run / "best"):
        teacher = load_teacher(spec, "sequence_classification")
        assert not teacher.training
        assert not any(p.requires_grad for p in teacher.parameters())
        assert teacher.config.num_labels == 3
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("model: x\n")
    with pytest.raises(ModelError, match="without a best/ model"):
        load_teacher(unfinished, "sequence_classification")


def test_runner_runs_the_teacher_once_per_batch(bert_teacher):
    runner = TeacherRunner(bert_teacher)
    calls = []
    bert_teacher.register_forward_hook(lambda *a: calls.append(1))
    batch = {"input_ids": torch.randint(7, 100, (2, 5)), "attention_mask": torch.ones(2, 5)}
    first = runner(batch)
    assert runner(dict(batch)) is first and len(calls) == 1
    runner({"input_ids": batch["input_ids"].clone(), "attention_mask": batch["attention_mask"]})
    assert len(calls) == 2
    runner.require(hidden_states=True, attentions=True)
    out = runner(batch)
    assert len(out.hidden_states) == 5 and len(out.attentions) == 4

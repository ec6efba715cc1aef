"""The task table: every registered kind is complete, and a new kind joins `tunesmith list`, recipe
validation, the data pipeline and checkpoint selection by registering itself — no list to edit."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

from tunesmith.cli import main
from tunesmith.config import parse_recipe
from tunesmith.data.pipeline import encode_split, label_field
from tunesmith.errors import ConfigError
from tunesmith.registry import TASKS
from tunesmith.tasks import TaskKind, model_inputs, task_kind, task_loss
from tunesmith.train.evaluation import default_metric

KINDS = [entry.obj for entry in TASKS]


def test_builtin_kinds_are_registered() -> None:
    assert TASKS.names() == [
        "causal_lm",
        "seq2seq",
        "sequence_classification",
        "token_classification",
    ]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_kind_is_complete(kind: TaskKind) -> None:
    assert isinstance(kind, TaskKind) and task_kind(kind.name) is kind
    assert kind.help and kind.model_hint
    assert hasattr(kind.auto_class, "_model_mapping")  # a transformers Auto class
    assert callable(kind.encode) and callable(kind.loss) and callable(kind.metrics)
    assert kind.label_shift in (0, 1) and (kind.per_token or kind.label_shift == 0)
    assert not (kind.generative and kind.classification)  # a vocabulary head or a label head
    assert (kind.prompt_ids is not None) == kind.generative  # predict can tokenise its inputs
    # the default metric is one the kind's own metrics report
    if kind.generative:
        scores = kind.metrics(None, None, None, 1.0)
    elif kind.per_token:
        scores = kind.metrics([[1, 0]], [[1, 0]], ["O", "B-X"], None)
    else:
        scores = kind.metrics([0, 1], [0, 1], None, None)
    assert kind.default_metric in scores


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_every_kind_loss_is_a_finite_mean(kind: TaskKind) -> None:
    torch.manual_seed(0)
    shape = (2, 5) if kind.per_token else (2,)
    logits = torch.randn(*shape, 7)
    labels = torch.randint(0, 7, shape)
    loss = task_loss(kind.name, logits, labels)
    assert loss.dim() == 0 and math.isfinite(float(loss))
    if kind.per_token:  # -100 positions do not count
        masked = labels.clone()
        masked[:, kind.label_shift] = -100
        kept = masked[:, kind.label_shift :] != -100
        shifted = logits[:, : logits.shape[1] - kind.label_shift]
        want = F.cross_entropy(shifted[kept], masked[:, kind.label_shift :][kept])
        assert torch.allclose(task_loss(kind.name, logits, masked), want, atol=1e-6)


def test_model_inputs_follow_the_table() -> None:
    batch = {k: torch.ones(1, 3, dtype=torch.long) for k in ("input_ids", "attention_mask")}
    batch["labels"] = torch.ones(1, 3, dtype=torch.long)
    for kind in KINDS:
        keys = set(model_inputs(kind.name, batch))
        assert keys == {"input_ids", "attention_mask"} | (
            {"labels"} if kind.encoder_decoder else set()
        )
    packed = {"input_ids": batch["input_ids"], "position_ids": batch["input_ids"]}
    assert set(model_inputs("causal_lm", packed)) == {"input_ids", "position_ids", "use_cache"}


def test_scored_positions() -> None:
    x = -100
    assert task_kind("sequence_classification").scored_positions(None, 4) == [0]
    assert task_kind("token_classification").scored_positions([x, 1, x, 2], 4) == [1, 3]
    # next-token: position t scores labels[t + 1]
    assert task_kind("causal_lm").scored_positions([x, x, 5, 6], 4) == [1, 2]
    assert task_kind("causal_lm").scored_positions(None, 4) == [0, 1, 2]


def test_unknown_task_names_the_key_and_the_choices() -> None:
    base = {"model": "minilm", "data": {"train": "x.txt"}}
    with pytest.raises(ConfigError) as err:
        parse_recipe(base | {"task": "regression"})
    message = str(err.value)
    assert message.startswith("task: invalid value 'regression'")
    assert all(name in message for name in [*TASKS.names(), "multi_head"])
    with pytest.raises(ConfigError, match="did you mean 'causal_lm'"):
        parse_recipe(base | {"task": "causal_llm"})


def _toy_encode(cfg, records, tokenizer, vocab, where):
    return [{"input_ids": [1, 2], "attention_mask": [1, 1], "labels": 0} for _ in records]


TOY = TaskKind(
    name="toy_kind",
    help="a kind registered by a test",
    auto_class=AutoModelForSequenceClassification,
    model_hint="any encoder",
    encode=_toy_encode,
    loss=lambda logits, labels: F.cross_entropy(logits.float(), labels),
    metrics=lambda preds, labels, id2label, mean_nll: {"toy_score": 1.0},
    default_metric="toy_score",
    label_key=lambda cfg: cfg.label_key,
)


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setattr(TASKS, "_entries", dict(TASKS._entries))  # restored after the test
    TASKS.register(TOY.name, TOY, TOY.help)
    return TOY


def test_a_new_kind_joins_without_editing_a_list(toy_registered, capsys) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "toy_kind" in out and "a kind registered by a test" in out
    recipe = parse_recipe({"model": "minilm", "task": "toy_kind", "data": {"train": "x.txt"}})
    assert recipe.task == "toy_kind" and not recipe.text_to_text
    assert label_field(recipe) == "label"
    assert encode_split(recipe, [{}, {}], None, None, "data.train")[1]["labels"] == 0
    assert default_metric("toy_kind") == "toy_score"
    assert task_loss("toy_kind", torch.zeros(1, 2), torch.tensor([0])) > 0
    with pytest.raises(ConfigError, match="toy_kind"):
        parse_recipe({"model": "minilm", "task": "nothing_like_it", "data": {"train": "x"}})

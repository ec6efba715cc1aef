"""Shared encoder + per-task heads: shapes, gradients, pooling, save/load, export to HF."""

import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

from tunesmith.errors import ModelError
from tunesmith.heads import HeadSpec, MultiHeadModel, export_task
from tunesmith.tasks import task_loss
from tunesmith.testing import NER_TAGS, SENT_LABELS, tiny_bert_backbone
from tunesmith.transfer import apply_freezing, layer_layout


def batch(tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


TEXTS = ["the cat was happy", "a very bad dog in the house"]


def test_forward_shapes_for_classification_and_ner(multihead, bert_tokenizer):
    b = batch(bert_tokenizer, TEXTS)
    seq = multihead(**b, task="sent").logits
    tok = multihead(**b, task="ner").logits
    assert seq.shape == (2, len(SENT_LABELS))
    assert tok.shape == (2, b["input_ids"].shape[1], len(NER_TAGS))
    assert multihead.task_kind("ner") == "token_classification"
    assert multihead.id2label("sent") == dict(enumerate(SENT_LABELS))
    out = multihead(**b, task="ner", output_hidden_states=True)  # objective terms may ask
    assert len(out.hidden_states) == 3  # embeddings + 2 blocks
    with pytest.raises(ModelError, match="heads for"):
        multihead(**b, task="qa")


def test_loss_reaches_only_the_task_head(multihead, bert_tokenizer):
    b = batch(bert_tokenizer, TEXTS)
    loss = task_loss(
        "sequence_classification", multihead(**b, task="sent").logits, torch.tensor([0, 2])
    )
    loss.backward()
    assert multihead.heads["sent"].classifier.weight.grad is not None
    assert multihead.heads["ner"].classifier.weight.grad is None
    assert multihead.backbone.embeddings.word_embeddings.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("pooling", ["pooler", "cls", "mean"])
def test_pooling_ignores_padding(pooling, bert_tokenizer):
    model = MultiHeadModel(
        tiny_bert_backbone(), {"s": HeadSpec("sequence_classification", ("x", "y"), pooling)}
    ).eval()
    alone = model(**batch(bert_tokenizer, TEXTS[:1]), task="s").logits
    padded = model(**batch(bert_tokenizer, TEXTS), task="s").logits[:1]
    torch.testing.assert_close(alone, padded, atol=1e-5, rtol=1e-5)


def test_default_pooling_and_bad_specs():
    model = MultiHeadModel(tiny_bert_backbone(), {"s": HeadSpec("sequence_classification", ("x",))})
    assert model.specs["s"].pooling == "pooler"
    with pytest.raises(ModelError, match="pooling"):
        HeadSpec("token_classification", ("O",), "cls")
    with pytest.raises(ModelError, match="distinct"):
        HeadSpec("sequence_classification", ("x", "x"))
    with pytest.raises(ModelError, match="no dots"):
        MultiHeadModel(tiny_bert_backbone(), {"a.b": HeadSpec("sequence_classification", ("x",))})
    with pytest.raises(ModelError, match="already"):
        model.add_head("s", HeadSpec("sequence_classification", ("x",)))


def test_head_init_is_seeded_per_task():
    spec = HeadSpec("sequence_classification", ("x", "y"))
    one = MultiHeadModel(tiny_bert_backbone(), {"a": spec}, init_seed=5)
    two = MultiHeadModel(tiny_bert_backbone(), {"b": spec, "a": spec}, init_seed=5)
    torch.testing.assert_close(one.heads["a"].state_dict(), two.heads["a"].state_dict())
    assert not torch.equal(two.heads["a"].classifier.weight, two.heads["b"].classifier.weight)
    torch.manual_seed(0)
    unseeded = MultiHeadModel(tiny_bert_backbone(), {"a": spec, "b": spec})
    assert not torch.equal(
        unseeded.heads["a"].classifier.weight, unseeded.heads["b"].classifier.weight
    )


def test_save_load_round_trip(multihead, bert_tokenizer, tmp_path):
    b = batch(bert_tokenizer, TEXTS)
    multihead.eval()
    multihead.save_pretrained(tmp_path / "mt")
    meta = json.loads((tmp_path / "mt" / "multitask.json").read_text())
    assert meta["heads"]["ner"] == {
        "kind": "token_classification",
        "labels": list(NER_TAGS),
        "pooling": None,
    }
    assert meta["heads"]["sent"]["pooling"] == "pooler"
    assert not (tmp_path / "mt" / "config.json").exists()  # never mistaken for a one-task model
    loaded = MultiHeadModel.from_pretrained(tmp_path / "mt")
    assert not loaded.training
    for name, t in multihead.state_dict().items():
        assert torch.equal(t, loaded.state_dict()[name]), name
    for task in ("sent", "ner"):
        torch.testing.assert_close(loaded(**b, task=task).logits, multihead(**b, task=task).logits)
    with pytest.raises(ModelError, match="multitask.json"):
        MultiHeadModel.from_pretrained(tmp_path)


def test_from_backbone_loads_pretrained_encoder(tiny_lms):
    source = AutoModelForSequenceClassification.from_pretrained(tiny_lms["bert-cls"])
    model = MultiHeadModel.from_backbone(
        tiny_lms["bert-cls"], {"s": HeadSpec("sequence_classification", ("a", "b"))}, init_seed=0
    )
    for name, t in source.bert.state_dict().items():
        assert torch.equal(t, model.backbone.state_dict()[name]), name
    with pytest.raises(ModelError):
        MultiHeadModel.from_backbone(
            "./no/such/folder", {"s": HeadSpec("sequence_classification", ("a",))}
        )


@pytest.mark.parametrize(
    "task, auto",
    [("sent", AutoModelForSequenceClassification), ("ner", AutoModelForTokenClassification)],
)
def test_export_task_equals_multihead(multihead, bert_tokenizer, tmp_path, task, auto):
    b = batch(bert_tokenizer, TEXTS)
    multihead.eval()
    export_task(multihead, task, tmp_path / task, tokenizer=bert_tokenizer)
    hf = auto.from_pretrained(tmp_path / task).eval()
    assert hf.config.id2label == multihead.id2label(task)
    torch.testing.assert_close(
        hf(**b).logits, multihead(**b, task=task).logits, atol=1e-5, rtol=1e-5
    )
    assert (tmp_path / task / "tokenizer.json").is_file()


def test_export_refuses_a_head_transformers_does_not_have():
    model = MultiHeadModel(
        tiny_bert_backbone(), {"s": HeadSpec("sequence_classification", ("x", "y"), "mean")}
    )
    with pytest.raises(ModelError, match="pooling: pooler"):
        export_task(model, "s")


def test_layout_sees_backbone_and_heads(multihead):
    """Freezing / LLRD / adapters find the blocks in the backbone and treat heads as the head."""
    layout = layer_layout(multihead)
    assert layout.layers == ["backbone.encoder.layer.0", "backbone.encoder.layer.1"]
    assert layout.head == ["heads.sent.classifier", "heads.ner.classifier"]
    assert layout.other == ["backbone.pooler"]
    apply_freezing(multihead, linear_probe=True)
    trainable = {n for n, p in multihead.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("heads.") for n in trainable)
    assert {"heads.sent.classifier.weight", "heads.ner.classifier.weight"} <= trainable

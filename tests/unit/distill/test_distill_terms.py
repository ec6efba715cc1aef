import pytest
import torch
from torch import nn
from transformers import AutoModelForSequenceClassification

from tunesmith.config import ObjectiveConfig
from tunesmith.data.collate import Collator
from tunesmith.distill.cache import TeacherCache, attach_teacher_outputs
from tunesmith.distill.collate import DistillCollator
from tunesmith.distill.losses import hinton_kd_loss
from tunesmith.distill.student import student_from_teacher
from tunesmith.errors import ConfigError
from tunesmith.objectives import OBJECTIVES, build_terms, combine
from tunesmith.objectives.distill import (
    HiddenMSETerm,
    KDTerm,
    LMKDTerm,
    OnPolicyTerm,
    bind_teacher,
)
from tunesmith.optim import param_groups
from tunesmith.tasks import model_inputs, task_loss

from .conftest import build, cls_examples, lm_examples


def trainable_modules(terms):
    """The terms' own modules as the loop gathers them for the optimizer (setup_terms)."""
    return nn.ModuleList([m for t in terms for m in t.trainable_modules()])


def term_parameters(terms):
    return list(trainable_modules(terms).parameters())


def _forward(model, task, batch):
    # what the loop passes for hidden-state / attention terms (their forward_kwargs)
    extra = {"output_hidden_states": True}
    if model.config._attn_implementation == "eager":
        extra["output_attentions"] = True
    outputs = model(**model_inputs(task, batch), **extra)
    return task_loss(task, outputs.logits, batch["labels"]), outputs


def test_terms_are_registered_and_built_from_recipes():
    for name in ("kd", "lm_kd", "hidden_mse", "hidden_cosine", "attention_kd", "gkd"):
        assert name in OBJECTIVES
    (term,) = build_terms([ObjectiveConfig(name="kd", weight=0.5, params={"temperature": 4})])
    assert isinstance(term, KDTerm) and term.params.temperature == 4.0 and term.weight == 0.5
    with pytest.raises(ConfigError, match="beta"):
        build_terms([ObjectiveConfig(name="lm_kd", params={"beta": "high"})])
    with pytest.raises(ConfigError, match=r"lm_kd.params.beta: invalid value 1.5"):
        build_terms([ObjectiveConfig(name="lm_kd", params={"beta": 1.5})])
    with pytest.raises(ConfigError, match="temperature"):
        build_terms([ObjectiveConfig(name="kd", params={"temperature": 0})])


def test_kd_through_combine_trains_the_student_only(bert_teacher, bert_tok):
    student = student_from_teacher(bert_teacher, "every_other")
    terms = build_terms([ObjectiveConfig(name="kd", weight=0.7, params={"temperature": 2})])
    bind_teacher(terms, bert_teacher)
    for t in terms:
        t.setup(student)
    batch = Collator(pad_token_id=0)(cls_examples(bert_tok))
    ce, outputs = _forward(student, "sequence_classification", batch)
    total, parts = combine(ce, terms, student, batch, outputs)
    total.backward()
    assert all(p.grad is not None for p in student.parameters() if p.dim() > 1)
    assert all(p.grad is None for p in bert_teacher.parameters())
    with torch.no_grad():
        teacher_logits = bert_teacher(**model_inputs("sequence_classification", batch)).logits
    expected = hinton_kd_loss(outputs.logits, teacher_logits, 2.0)
    assert parts["kd"] == pytest.approx(expected.item(), rel=1e-6)
    assert total.item() == pytest.approx(ce.item() + 0.7 * expected.item(), rel=1e-6)


def test_kd_from_cache_equals_live_teacher(tmp_path, bert_teacher, bert_tok):
    examples = cls_examples(bert_tok)
    cache = TeacherCache.build(tmp_path, bert_teacher, examples, task="sequence_classification")
    attach_teacher_outputs(examples, cache)
    batch = DistillCollator(Collator(pad_token_id=0))(examples)
    student = student_from_teacher(bert_teacher, [0, 3]).eval()
    _, outputs = _forward(student, "sequence_classification", batch)
    cached = KDTerm(params=KDTerm.Params(temperature=3.0))  # no teacher bound: reads the batch
    live = KDTerm(params=KDTerm.Params(temperature=3.0))
    bind_teacher([live], bert_teacher)
    without_cache = {k: v for k, v in batch.items() if k != "teacher_logits"}
    a = cached.loss(student, batch, outputs)
    b = live.loss(student, without_cache, outputs)
    assert torch.allclose(a, b, atol=1e-6)
    with pytest.raises(ConfigError, match="no teacher"):
        cached.loss(student, without_cache, outputs)


def test_lm_kd_from_full_top_k_cache_equals_live(tmp_path, llama_teacher, causal_tok):
    examples = lm_examples(causal_tok)
    vocab = llama_teacher.config.vocab_size
    cache = TeacherCache.build(tmp_path, llama_teacher, examples, task="causal_lm", top_k=vocab)
    attach_teacher_outputs(examples, cache)
    batch = DistillCollator(Collator(pad_token_id=0))(examples)
    live_batch = {k: v for k, v in batch.items() if not k.startswith("teacher_")}
    student = student_from_teacher(llama_teacher, "every_other").eval()
    _, outputs = _forward(student, "causal_lm", batch)
    params = LMKDTerm.Params(beta=0.0, temperature=2.0)
    cached, live = LMKDTerm(params=params), LMKDTerm(params=params)
    bind_teacher([live], llama_teacher)
    a = cached.loss(student, batch, outputs)
    assert torch.allclose(a, live.loss(student, live_batch, outputs), atol=1e-5)
    # kd on a causal LM is the same shifted, prompt-masked forward KL
    kd = KDTerm(params=KDTerm.Params(temperature=2.0))
    assert torch.allclose(kd.loss(student, batch, outputs), a, atol=1e-6)
    # with the tail bucket, JSD / reverse KL work on the cache too; a tail-less (old-style) batch
    # still supports forward KL only
    LMKDTerm(params=LMKDTerm.Params(beta=0.5)).loss(student, batch, outputs)
    no_tail = {k: v for k, v in batch.items() if k != "teacher_topk_tail"}
    with pytest.raises(ConfigError, match="forward KL only"):
        LMKDTerm(params=LMKDTerm.Params(beta=0.5)).loss(student, no_tail, outputs)


def test_same_weights_student_has_zero_distillation_losses(bert_teacher, bert_tok):
    student = student_from_teacher(bert_teacher, [0, 1, 2, 3]).eval()
    specs = [("kd", {}), ("hidden_mse", {}), ("hidden_cosine", {"layers": [0, -1]})]
    specs.append(("attention_kd", {"kind": "kl"}))
    terms = build_terms([ObjectiveConfig(name=n, params=p) for n, p in specs])
    bind_teacher(terms, bert_teacher)
    for t in terms:
        t.setup(student)
    assert student.config._attn_implementation == "eager"
    assert term_parameters(terms) == []  # same width: no projection
    batch = Collator(pad_token_id=0)(cls_examples(bert_tok))
    ce, outputs = _forward(student, "sequence_classification", batch)
    _, parts = combine(ce, terms, student, batch, outputs)
    for name, _ in specs:
        assert parts[name] == pytest.approx(0.0, abs=1e-5), name


def test_hidden_term_learns_a_projection_when_widths_differ(bert_teacher, bert_tok):
    student = build("bert", AutoModelForSequenceClassification, hidden_size=16, num_labels=3)
    student.train()
    term = HiddenMSETerm()
    bind_teacher([term], bert_teacher)
    term.setup(student)
    assert term.pairs == [(1, 2), (2, 4)]  # uniform map 2 -> 4 layers
    params = term_parameters([term])
    assert len(params) == 4 and params[0].shape == (32, 16)
    batch = Collator(pad_token_id=0)(cls_examples(bert_tok))
    _, outputs = _forward(student, "sequence_classification", batch)
    term.loss(student, batch, outputs).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)
    groups = param_groups(trainable_modules([term]), lr=1e-3, weight_decay=0.01)  # optimizer-ready
    assert sorted(len(g["params"]) for g in groups) == [2, 2]  # weights decay, biases do not
    assert student.bert.encoder.layer[0].attention.self.query.weight.grad is not None
    state = {k: v.clone() + 1 for k, v in term.state_dict().items()}
    term.load_state_dict(state)
    assert term_parameters([term])[0] is params[0]  # same tensors: the optimizer keeps them
    assert torch.equal(params[0], state["proj.0.weight"])


def test_terms_needing_a_live_teacher_say_so(bert_teacher):
    with pytest.raises(ConfigError, match="live teacher"):
        HiddenMSETerm().setup(bert_teacher)


def test_gkd_on_and_off_policy(llama_teacher, causal_tok):
    student = student_from_teacher(llama_teacher, "every_other")
    batch = Collator(pad_token_id=0)(lm_examples(causal_tok, 3))
    _, outputs = _forward(student, "causal_lm", batch)
    off = OnPolicyTerm(params=OnPolicyTerm.Params(lmbda=0.0, beta=0.5))
    ref = LMKDTerm(params=LMKDTerm.Params(beta=0.5))
    bind_teacher([off, ref], llama_teacher)
    assert torch.allclose(off.loss(student, batch, outputs), ref.loss(student, batch, outputs))
    assert not off.last_on_policy

    on = OnPolicyTerm(params=OnPolicyTerm.Params(lmbda=1.0, max_new_tokens=4))
    bind_teacher([on], llama_teacher)
    on.setup(student)
    state = on.state_dict()
    value = on.loss(student, batch, outputs)
    assert on.last_on_policy and torch.isfinite(value) and value.item() > 0
    assert student.training  # restored after sampling
    value.backward()
    assert student.model.layers[0].mlp.up_proj.weight.grad.abs().sum() > 0
    on.load_state_dict(state)  # resumed: the same draws and samples again
    assert torch.allclose(on.loss(student, batch, outputs), value)


def test_a_few_steps_of_cached_kd_pull_the_student_to_the_teacher(tmp_path, bert_teacher, bert_tok):
    examples = cls_examples(bert_tok)
    with torch.no_grad():  # a confident teacher (a random tiny one is near uniform)
        bert_teacher.classifier.weight.mul_(300.0)
    cache = TeacherCache.build(tmp_path, bert_teacher, examples, task="sequence_classification")
    batch = DistillCollator(Collator(pad_token_id=0))(attach_teacher_outputs(examples, cache))
    student = build(
        "bert", AutoModelForSequenceClassification, seed=1, hidden_size=16, num_labels=3
    )
    student.train()
    (term,) = build_terms([ObjectiveConfig(name="kd", params={"temperature": 2})])
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3)
    values = []
    for _ in range(15):
        ce, outputs = _forward(student, "sequence_classification", batch)
        total, parts = combine(0.0 * ce, [term], student, batch, outputs)  # KD only
        total.backward()
        optimizer.step()
        optimizer.zero_grad()
        values.append(parts["kd"])
    assert values[-1] < 0.5 * values[0]

"""Students that heal, multi-teacher, cross-tokenizer ULD and LwF on cached targets (issue 17)."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from transformers import AutoModelForCausalLM

from tunesmith.config import DistillConfig, ObjectiveConfig, parse_recipe
from tunesmith.config.sections import TeacherSpec
from tunesmith.data.collate import Collator
from tunesmith.distill.cache import TeacherCache, cache_key
from tunesmith.distill.ensemble import TeacherEnsemble, per_example_losses
from tunesmith.distill.heal import compare_layer_choices, initial_loss
from tunesmith.distill.student import select_layers, student_from_teacher
from tunesmith.distill.uld import teacher_batch, uld_loss, uld_rows
from tunesmith.errors import ConfigError, ModelError
from tunesmith.objectives import build_terms
from tunesmith.objectives.continual.lwf import LwFTerm
from tunesmith.objectives.continual.state import ContinualState
from tunesmith.objectives.distill import bind_teacher
from tunesmith.testing import tiny_config, tiny_tokenizer
from tunesmith.train.teacher import cache_term_targets, load_run_teacher

from .conftest import build, lm_examples

# -- students that heal -------------------------------------------------------------------------


def test_presets_pick_the_right_blocks():
    assert select_layers(30, "keep_ends", 15) == [*range(8), *range(23, 30)]
    assert select_layers(30, "keep_ends", 20) == [*range(10), *range(20, 30)]
    evenly = select_layers(30, "evenly", 20)
    assert len(evenly) == 20 and evenly[0] == 0 and evenly[-1] == 29
    assert select_layers(30, "evenly", 15) == select_layers(30, "evenly")  # n defaults to half
    assert select_layers(6, "every_other") == [1, 3, 5]  # unchanged
    with pytest.raises(ModelError, match="n must be"):
        select_layers(6, "keep_ends", 7)
    with pytest.raises(ModelError, match="keep_ends"):
        select_layers(6, "middle")


def test_keep_ends_student_loads_and_is_scored_before_training(causal_tok):
    teacher = build("llama", AutoModelForCausalLM, num_hidden_layers=6)
    student = student_from_teacher(teacher, "keep_ends", 4)
    assert student.config.num_hidden_layers == 4
    assert student.config.tunesmith_teacher_layers == [0, 1, 4, 5]
    assert torch.equal(
        student.model.layers[2].mlp.up_proj.weight, teacher.model.layers[4].mlp.up_proj.weight
    )
    examples = lm_examples(causal_tok)
    choices = compare_layer_choices(teacher, examples, "causal_lm", n=4)
    assert set(choices) == {"every_other", "keep_ends", "evenly", "teacher"}
    assert choices["keep_ends"]["layers"] == [0, 1, 4, 5]
    assert choices["keep_ends"]["loss"] == pytest.approx(
        initial_loss(student, examples, "causal_lm"), abs=1e-4
    )
    full = student_from_teacher(teacher, list(range(6)))
    assert initial_loss(full, examples, "causal_lm") == pytest.approx(
        choices["teacher"]["loss"], abs=1e-4
    )


def test_recipe_keys_for_students():
    base = {"task": "causal_lm", "data": {"train": "t.json"}, "distill": {"teacher": "t"}}
    recipe = parse_recipe(base | {"student": {"from_teacher": {"layers": "keep_ends", "n": 20}}})
    assert recipe.student.from_teacher.layers == "keep_ends" and recipe.student.from_teacher.n == 20
    with pytest.raises(ConfigError, match="n"):
        parse_recipe(base | {"student": {"from_teacher": {"layers": "evenly", "n": 0}}})


# -- multi-teacher ------------------------------------------------------------------------------


def _two_teachers():
    return [build("llama", AutoModelForCausalLM, seed=s) for s in (0, 1)]


def test_mixture_is_the_weighted_mixture_of_probabilities(causal_tok):
    a, b = _two_teachers()
    ens = TeacherEnsemble([a, b], [3.0, 1.0], "mixture", "causal_lm")
    batch = Collator(pad_token_id=0)(lm_examples(causal_tok))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        got = ens(**inputs).logits
        pa, pb = (F.softmax(m(**inputs).logits, -1) for m in (a, b))
    assert torch.allclose(got.exp(), 0.75 * pa + 0.25 * pb, atol=1e-6)


def test_per_example_picks_the_teacher_with_the_lowest_loss(causal_tok):
    a, b = _two_teachers()
    ens = TeacherEnsemble([a, b], [1.0, 1.0], "per_example", "causal_lm")
    batch = Collator(pad_token_id=0)(lm_examples(causal_tok))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        out = ens(**inputs, labels=batch["labels"])
        la, lb = (m(**inputs).logits for m in (a, b))
    losses = torch.stack([per_example_losses("causal_lm", z, batch["labels"]) for z in (la, lb)])
    assert torch.equal(out.choice, losses.argmin(0))
    for i, j in enumerate(out.choice.tolist()):
        assert torch.equal(out.logits[i], (la, lb)[j][i])
    with pytest.raises(ModelError, match="labels"):
        ens(**inputs)


def test_mixture_is_cached_like_one_teacher(tmp_path, causal_tok):
    a, b = _two_teachers()
    examples = lm_examples(causal_tok)
    ens = TeacherEnsemble([a, b], [1.0, 1.0], "mixture", "causal_lm")
    other = TeacherEnsemble([a, b], [1.0, 2.0], "mixture", "causal_lm")
    key = cache_key(ens, examples, task="causal_lm", top_k=4)[0]
    assert key != cache_key(other, examples, task="causal_lm", top_k=4)[0]
    assert key != cache_key(a, examples, task="causal_lm", top_k=4)[0]
    cache = TeacherCache.build(tmp_path, ens, examples, task="causal_lm", top_k=4)
    per = TeacherCache.build(tmp_path, TeacherEnsemble([a, b], [1, 1], "per_example", "causal_lm"),
                             examples, task="causal_lm", top_k=4)  # fmt: skip
    assert per.directory != cache.directory  # per_example reads labels: it caches too


def _save(path, seed, words=None):
    tok = tiny_tokenizer(words, kind="causal")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(tiny_config("llama", len(tok)))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path), tok


def test_teachers_config_and_mismatched_tokenizers_are_refused(tmp_path):
    (p0, tok), (p1, _) = _save(tmp_path / "a", 0), _save(tmp_path / "b", 1)
    (p2, _) = _save(tmp_path / "c", 2, words=["zebra", "quokka"])
    with pytest.raises(ConfigError, match="exactly one"):
        DistillConfig(teacher="x", teachers=[TeacherSpec(model="y")]).validate("distill")
    d = DistillConfig(teachers=[TeacherSpec(model=p0, weight=2), TeacherSpec(model=p1)])
    d.validate("distill")
    assert d.teacher == p0 and d.teacher_specs == [(p0, 2), (p1, 1.0)]
    recipe = SimpleNamespace(distill=d, task="causal_lm")
    teacher = load_run_teacher(recipe, tok, None)
    assert isinstance(teacher, TeacherEnsemble) and torch.allclose(
        teacher.weights, torch.tensor([2 / 3, 1 / 3])
    )
    bad = DistillConfig(teachers=[TeacherSpec(model=p0), TeacherSpec(model=p2)])
    bad.validate("distill")
    with pytest.raises(ModelError, match=r"distill.teachers: .* does not match") as err:
        load_run_teacher(SimpleNamespace(distill=bad, task="causal_lm"), tok, None)
    assert "\n" not in str(err.value)


# -- cross-tokenizer: ULD -----------------------------------------------------------------------


def test_uld_rows_hand_value_and_zero_for_the_same_distribution():
    s = torch.log(torch.tensor([[0.7, 0.2, 0.1]]))
    t = torch.log(torch.tensor([[0.1, 0.6, 0.05, 0.25]]))  # sorted: .6 .25 .1 .05 vs .7 .2 .1 0
    assert uld_rows(s, t).item() == pytest.approx(0.1 + 0.05 + 0.0 + 0.05, abs=1e-6)
    perm = torch.log(torch.tensor([[0.1, 0.0 + 1e-30, 0.2, 0.7]]))  # same values, permuted + pad
    assert uld_rows(s, perm).item() == pytest.approx(0.0, abs=1e-6)


def test_uld_between_two_tokenizers(causal_tok):
    other_tok = tiny_tokenizer(["zebra", "quokka", "wombat"], kind="causal")
    assert len(other_tok) != len(causal_tok)
    student = build("llama", AutoModelForCausalLM)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        teacher = AutoModelForCausalLM.from_config(tiny_config("llama", len(other_tok))).eval()
    batch = Collator(pad_token_id=0)(lm_examples(causal_tok))
    tb = teacher_batch(batch, causal_tok, other_tok)
    n_s = (batch["labels"] != -100).sum(1)
    assert torch.equal((tb["labels"] != -100).sum(1), n_s)  # same words: same response length
    terms = build_terms([ObjectiveConfig(name="uld")])
    bind_teacher(terms, teacher)
    terms[0].bind_tokenizers(causal_tok, other_tok)
    out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    value = terms[0].loss(student, batch, out)
    with torch.no_grad():
        t_logits = teacher(input_ids=tb["input_ids"], attention_mask=tb["attention_mask"]).logits
    assert value.item() == pytest.approx(
        uld_loss(out.logits, batch["labels"], t_logits, tb["labels"]).item()
    )
    value.backward()
    assert student.model.layers[0].mlp.up_proj.weight.grad is not None
    # identical distributions: a teacher whose logits are the student's, padded with -inf ids
    pad = torch.full((*out.logits.shape[:-1], 3), -1e9)
    same = uld_loss(out.logits, batch["labels"], torch.cat([out.logits, pad], -1), batch["labels"])
    assert same.item() == pytest.approx(0.0, abs=1e-6)


def test_uld_skips_the_tokenizer_check_only_when_alone(tmp_path, causal_tok):
    p, _ = _save(tmp_path / "t", 0, words=["zebra"])
    recipe = SimpleNamespace(distill=DistillConfig(teacher=p), task="causal_lm")
    load_run_teacher(recipe, causal_tok, None, terms=build_terms([ObjectiveConfig(name="uld")]))
    both = build_terms([ObjectiveConfig(name="uld"), ObjectiveConfig(name="lm_kd")])
    with pytest.raises(ModelError, match="tokenizers differ"):
        load_run_teacher(recipe, causal_tok, None, terms=both)


# -- LwF on cached targets ----------------------------------------------------------------------


def test_lwf_reads_cached_targets_equal_to_the_live_previous_model(tmp_path, causal_tok):
    path, _ = _save(tmp_path / "prev", 0)
    vocab = len(causal_tok)
    state = ContinualState(task="causal_lm", heads="shared", seen=["a"], previous_model=path)
    live = LwFTerm(params=LwFTerm.Params(temperature=2.0))
    cached = LwFTerm(params=LwFTerm.Params(temperature=2.0, cache=True, top_k=vocab,
                                           cache_dir=str(tmp_path / "cache")))  # fmt: skip
    for t in (live, cached):
        t.bind_state(state)
    examples = lm_examples(causal_tok)
    recipe = SimpleNamespace(distill=None, task="causal_lm")
    collator = cache_term_targets(recipe, [cached], examples, Collator(0), Accelerator(cpu=True))
    assert cached.cached and "teacher_topk_tail" in examples[0]
    student = build("llama", AutoModelForCausalLM, seed=5)
    for t in (live, cached):
        t.setup(student)
    assert cached.previous is None and live.previous is not None  # no previous model kept
    batch = collator(examples)
    out = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    plain = {k: batch[k] for k in ("input_ids", "attention_mask", "labels")}
    want = live.loss(student, plain, out).item()
    assert cached.loss(student, batch, out).item() == pytest.approx(want, rel=2e-3)
    assert math.isfinite(want) and want > 0

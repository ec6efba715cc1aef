"""The LM-distillation benchmark's label-word accuracy (benchmarks/distill/lm_kd.py): the library's
scoring of the records as training renders them, against log-likelihoods computed by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from tunesmith.testing import EOS_ID, tiny_config, tiny_tokenizer

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "distill" / "lm_kd.py"
QUESTIONS = ["who was the first man", "where is the big house", "how many men", "what is a dog"]


def _load():
    spec = importlib.util.spec_from_file_location("bench_distill_lm_kd", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@torch.no_grad()
def by_hand(model, tok, prompt: str, word: str) -> float:
    """log p(word </s> | prompt + newline): the whole text tokenised once (plain template)."""
    n = len(tok(prompt + "\n")["input_ids"])
    ids = tok(prompt + "\n" + word)["input_ids"] + [EOS_ID]
    logp = F.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    return sum(float(logp[t - 1, ids[t]]) for t in range(n, len(ids)))


def test_label_word_accuracy_scores_the_trained_text(tmp_path):
    lm_kd = _load()
    words = list(lm_kd.WORDS.values())
    tok = tiny_tokenizer([*words, "trec"], kind="causal")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config("llama", len(tok))).eval()
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    records, right = [], 0
    for i, q in enumerate(QUESTIONS):
        prompt = lm_kd.PROMPT.format(q=q)
        scores = [by_hand(model, tok, prompt, w) for w in words]
        best = max(range(len(words)), key=scores.__getitem__)
        gold = words[best] if i % 2 == 0 else words[(best + 1) % len(words)]  # half right
        right += gold == words[best]
        records.append({"instruction": prompt, "input": "", "output": gold})
    assert right == 2
    assert lm_kd.label_word_accuracy(tmp_path, records) == 0.5


def _tables():
    path = SCRIPT.parent / "lm_tables.py"
    spec = importlib.util.spec_from_file_location("bench_distill_lm_tables", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(method, variant="", **kw):
    """An lm_kd.py row of a 15-block TREC student at 300 steps."""
    base = {"dataset": "trec_t2t", "student_blocks": 15, "variant": variant, "steps": 300}
    return base | {"method": method} | kw


def test_verdicts_follow_the_issue_targets():
    t = _tables()

    rows = [
        {"dataset": "sst2", "method": "teacher", "accuracy": 0.9},  # run.py's: ignored
        row("sft", accuracy=0.80, teacher_accuracy=0.96, tokens_per_s=300),
        row("forward_kl", accuracy=0.83, teacher_accuracy=0.96, tokens_per_s=150),
        row("jsd", accuracy=0.82, teacher_accuracy=0.96, tokens_per_s=150),
        row("forward_kl", "cache", accuracy=0.832, teacher_accuracy=0.96, tokens_per_s=240),
        row("sft", dataset="alpaca_2k", eval_loss=3.2, teacher_eval_loss=2.0),
        row("reverse_kl", dataset="alpaca_2k", eval_loss=3.1, teacher_eval_loss=2.0),
    ]
    assert len(t.lm_kd_rows(rows)) == 6
    task = "\n".join(t.task_verdicts(t.lm_kd_rows(rows)))
    assert "best KD `forward_kl` 83.00 vs SFT 80.00 (**+3.00** points" in task
    assert "target >= +2: **met**" in task and "86.5% of the teacher's 96.00" in task
    assert "target >= 90%: **missed**" in task
    assert "+0.20 points (target within 0.5: **met**), 1.60x" in task
    assert "target >= 2x: **missed**" in task
    general = "\n".join(t.general_verdicts(t.lm_kd_rows(rows)))
    assert "`reverse_kl` held-out loss 3.100 vs SFT 3.200" in general and "**met**" in general
    assert "1.100 nats" in general
    md = t.markdown(rows)
    assert md.count("| trec_t2t |") == 4 and md.count("| alpaca_2k |") == 2
    rows += [row("forward_kl", "speed_live", tokens_per_s=100.0),
             row("forward_kl", "speed_cache", tokens_per_s=210.0)]  # fmt: skip
    task = "\n".join(t.task_verdicts(t.lm_kd_rows(rows)))
    assert "2.10x training tokens/s (measured alone, alternating; target >= 2x: **met**)" in task
    assert t.markdown(rows).count("| trec_t2t |") == 4  # speed rows: no accuracy, no table row


def test_verdicts_name_the_cache_ceiling_and_the_multi_teacher_row():
    t = _tables()

    rows = [
        row("sft", accuracy=0.80, teacher_accuracy=0.96),
        row("forward_kl", accuracy=0.83, teacher_accuracy=0.96),
        row("forward_kl", "cache", accuracy=0.82, teacher_accuracy=0.96),
        row("forward_kl", "multi_teacher_mixture", accuracy=0.85, teacher_accuracy=[0.96, 0.95]),
        row("forward_kl", "speed_live", tokens_per_s=100.0),
        row("forward_kl", "speed_cache", tokens_per_s=130.0),
        row("sft", "speed_sft", tokens_per_s=140.0),
    ]
    task = "\n".join(t.task_verdicts(t.lm_kd_rows(rows)))
    assert "SFT step (no teacher): 140 tokens/s = 1.40x the live teacher's 100" in task
    assert "cached KD runs at 93% of it" in task
    assert "mixture of 2 teachers, 96.00, 95.00; cached forward KL): 85.00" in task
    assert "+5.00 points vs SFT, +3.00 vs one cached teacher" in task
    assert "from the teacher" not in task  # 16 points of room
    rows[0] = row("sft", accuracy=0.968, teacher_accuracy=0.966)
    task = "\n".join(t.task_verdicts(t.lm_kd_rows(rows)))
    assert (
        "The SFT student is +0.20 points from the teacher: +2 would put a student 2.20 points above"
        in task
    )


def test_cross_tokenizer_verdict_compares_uld_with_sft_only():
    t = _tables()
    base = {"dataset": "trec_t2t", "variant": "cross_tokenizer", "steps": 200}
    rows = [
        {"dataset": "trec_t2t", "method": "teacher", "variant": "gemma3", "accuracy": 0.97},
        base | {"method": "uld", "student_blocks": 30, "accuracy": 0.962, "teacher_accuracy": 0.97},
        base | {"method": "sft", "student_blocks": 30, "accuracy": 0.958, "teacher_accuracy": 0.97},
    ]
    task = "\n".join(t.task_verdicts(t.lm_kd_rows(rows)))
    assert "teacher 97.00 with another tokenizer, 30-block student, 200 steps" in task
    assert "ULD 96.20 vs SFT only 95.80 (+0.40 points)" in task

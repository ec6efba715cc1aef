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

"""Classification by scoring the label set with a generative model (rank classification).

A generative model can answer anything; for a classification task we instead *score* each label
word ``y`` after the prompt ``x`` and take the most likely one::

    score(x, y) = log p(y | x) = sum_t log p(y_t | x, y_<t)        (plus </s> with include_eos)
    prediction  = argmax_y score(x, y)

which can never produce an invalid label (rank classification, as in T0 / FLAN evaluations).
:func:`score_label_set` tokenises exactly like training (``encode_causal_lm`` / ``encode_seq2seq``),
so the scored tokens are the ones the model was trained to produce. The prompts come from
:class:`tunesmith.data.textformat.TextFormat`. A decoder-only model runs each prompt once for all
its words (:mod:`tunesmith.train.sharedprompt`) where :func:`can_share_prompt` allows it, with the
same scores as every (prompt, word) run as its own sequence, the fallback.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from tunesmith.data.collate import Collator
from tunesmith.data.encode import IGNORE_INDEX, encode_seq2seq
from tunesmith.data.lmencode import encode_causal_lm
from tunesmith.errors import DataError
from tunesmith.metrics import accuracy, macro_f1
from tunesmith.train.sharedprompt import can_share_prompt, score_tree_rows, tree_row

__all__ = ["classify_by_scoring", "evaluate_text_to_text", "score_label_set"]


@torch.no_grad()
def score_label_set(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str] | Sequence[Mapping[str, Any]],
    label_words: Sequence[str],
    *,
    template: str = "plain",
    system: str | None = None,
    prompt_key: str | None = None,
    include_eos: bool = True,
    reduction: str = "sum",
    batch_size: int = 16,
    max_length: int = 512,
) -> torch.Tensor:
    """Log-likelihood of every label word after every prompt: a (N, L) float tensor.

    ``score[i, j] = sum_t log p(y_t | prompt_i, y_<t)`` over the tokens ``y`` of
    ``label_words[j]`` (and the closing ``</s>`` with ``include_eos``, as training targets end in
    it; this also keeps a word from winning by being a prefix of another). ``reduction="mean"``
    divides by the number of scored tokens (length-normalised). Decoder-only models see
    ``build_prompt(prompt, template)`` (``plain`` = ``prompt + "\\n"``; ``chat`` uses the chat
    template) followed by the word, tokenised as :func:`encode_causal_lm` does; encoder-decoder
    models (``config.is_encoder_decoder``) encode the prompt and score the word as the target,
    as :func:`encode_seq2seq` does. Prompts longer than ``max_length`` keep their end.

    ``prompts`` may also be training records of a decoder-only model (mappings): each is then
    rendered exactly as training renders it (``record[prompt_key]``, or alpaca ``instruction`` +
    ``input`` when ``prompt_key`` is None), so the scored text is the trained text.

    ``batch_size`` counts (prompt, word) sequences per forward. A decoder-only model that
    :func:`~tunesmith.train.sharedprompt.can_share_prompt` accepts runs each prompt once with all
    its words after it (one tree row per prompt, about ``batch_size`` sequences' tokens per
    forward); the others run every (prompt, word) as its own sequence.
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    if not label_words or any(not w.strip() for w in label_words):
        raise DataError(f"label words must be non-empty strings, got {list(label_words)}")
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    pairs = [(p, w) for p in prompts for w in label_words]
    records = any(isinstance(p, Mapping) for p in prompts)
    if records and (seq2seq or not all(isinstance(p, Mapping) for p in prompts)):
        raise ValueError("prompts are all strings, or all records of a decoder-only model")
    examples = (
        _seq2seq_examples(pairs, tokenizer, include_eos, max_length)
        if seq2seq
        else _causal_examples(
            pairs, tokenizer, template, system, include_eos, max_length, prompt_key
        )
    )
    if not examples:
        return torch.zeros(len(prompts), len(label_words))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    was_training = model.training
    model.eval()
    try:
        longest = max(len(ex["input_ids"]) for ex in examples)
        if not seq2seq and can_share_prompt(model, longest):
            n = len(label_words)
            rows = [tree_row(examples[i : i + n], i) for i in range(0, len(examples), n)]
            scores = score_tree_rows(
                model, rows, len(examples), reduction, pad, budget=batch_size * longest
            )
        else:
            scores = _separate_scores(model, examples, seq2seq, reduction, pad, batch_size)
    finally:
        model.train(was_training)
    return scores.view(len(prompts), len(label_words))


def _separate_scores(model, examples, seq2seq, reduction, pad, batch_size) -> torch.Tensor:
    """Every (prompt, word) as its own sequence, ``batch_size`` per forward (encoder-decoder
    models, and decoder-only ones :func:`can_share_prompt` refuses)."""
    collate = Collator(pad_token_id=pad)
    device = next(model.parameters()).device
    scores = []
    for start in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in collate(examples[start : start + batch_size]).items()}
        scores.append(_batch_scores(model, batch, seq2seq, reduction))
    return torch.cat(scores)


_WORD = "__label_word__"  # the response field of the scored records (no record uses it)


def _causal_examples(
    pairs, tokenizer, template, system, include_eos, max_length, prompt_key=None
) -> list[dict]:
    if pairs and isinstance(pairs[0][0], Mapping):
        records = [{**p, _WORD: w} for p, w in pairs]
    else:
        records, prompt_key = [{"prompt": p, _WORD: w} for p, w in pairs], "prompt"
    # no truncation here (a huge max_length): truncation must cut the prompt, never the word
    examples = encode_causal_lm(
        records,
        tokenizer,
        template=template,
        prompt_key=prompt_key,
        response_key=_WORD,
        system=system,
        mask_prompt=True,
        max_length=10**9,
    )
    if len(examples) != len(records):
        raise DataError("a prompt + label word left no label token to score")
    eos = tokenizer.eos_token_id
    for ex in examples:
        if not include_eos and ex["input_ids"][-1] == eos and ex["labels"][-1] != IGNORE_INDEX:
            ex["labels"][-1] = IGNORE_INDEX
        if len(ex["input_ids"]) > max_length:  # keep the end: the word and the prompt just before
            for key in ("input_ids", "attention_mask", "labels"):
                ex[key] = ex[key][-max_length:]
            if ex["labels"][0] != IGNORE_INDEX:
                raise DataError(f"label word longer than max_length={max_length} tokens")
    return examples


def _seq2seq_examples(pairs, tokenizer, include_eos, max_length) -> list[dict]:
    records = [{"source": p, "target": w} for p, w in pairs]
    examples = encode_seq2seq(records, tokenizer, max_source_length=max_length)
    eos = tokenizer.eos_token_id
    for ex in examples:
        if not include_eos and len(ex["labels"]) > 1 and ex["labels"][-1] == eos:
            ex["labels"] = ex["labels"][:-1]
    return examples


def _batch_scores(model, batch: dict, seq2seq: bool, reduction: str) -> torch.Tensor:
    labels = batch["labels"]
    if seq2seq:
        # the model shifts the labels right (start token first) to build the decoder input
        logits = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels
        ).logits
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits, labels = logits[:, :-1], labels[:, 1:]  # position t predicts token t+1
    logp = F.log_softmax(logits.float(), dim=-1)
    keep = labels.ne(IGNORE_INDEX)
    token = logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    total = (token * keep).sum(-1)
    return total / keep.sum(-1).clamp(min=1) if reduction == "mean" else total


def classify_by_scoring(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str] | Sequence[Mapping[str, Any]],
    label_words: Sequence[str],
    **kw: Any,
) -> list[int]:
    """Index of the most likely label word for each prompt (argmax of :func:`score_label_set`)."""
    return score_label_set(model, tokenizer, prompts, label_words, **kw).argmax(-1).tolist()


def evaluate_text_to_text(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str] | Sequence[Mapping[str, Any]],
    gold: Sequence[str],
    label_words: Sequence[str],
    **score_kw: Any,
) -> dict[str, float]:
    """Accuracy and macro-F1 of a generative model on one classification task by scoring the
    label set (:func:`score_label_set`); ``gold`` are label words.

    Runs on one process (the scoring is not sharded).
    """
    if len(prompts) != len(gold):
        raise ValueError(f"{len(prompts)} prompts but {len(gold)} gold labels")
    index = {w: i for i, w in enumerate(label_words)}
    unknown = sorted({g for g in gold if g not in index})
    if unknown:
        raise ValueError(
            f"gold labels {unknown[:5]} are not among the label words {list(label_words)}"
        )
    preds = classify_by_scoring(model, tokenizer, prompts, label_words, **score_kw)
    ys = [index[g] for g in gold]
    return {
        "accuracy": accuracy(preds, ys),
        "macro_f1": macro_f1(preds, ys, num_labels=len(label_words)),
    }

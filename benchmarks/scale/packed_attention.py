"""Micro-benchmark: forward + backward of one packed batch, per-example attention
(``tunesmith_packed``) vs SDPA under the block-diagonal mask (``sdpa``), alternating.

SmolLM2-135M (embedded ``smollm2``), LoRA r 16 on q, k, v, o, frozen base stored in bf16, bf16
autocast; the batch is ``--batch`` packed alpaca_2k rows of ``--max-length`` tokens that
the scale benchmark trains on (scale_worker.py: same encoder, template and packer), drawn with a
fixed seed as a shuffled training batch is (the packer emits rows longest example first). Each timed
step is one forward + loss + backward of the same batch (no optimiser step); the order of the two
backends alternates from step to step. Before timing, one step of each is compared: loss and LoRA
gradients (bf16, so close, not equal; the exact fp32 equality is tests/unit/test_packedattn.py).

    python benchmarks/scale/packed_attention.py --steps 10 --threads 2 --json-out out.json
    python benchmarks/scale/packed_attention.py --steps 1 --warmup 0   # does it run

Writes JSON: per-backend step seconds and medians, the speed-up, the attention work (sum of
squared example lengths / rows x T^2) and the check above. Time it on an idle machine only.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from scale_worker import LORA, SEED, collate_packed, packed_rows  # noqa: E402

from tunesmith.adapters import LoraConfig, add_adapter, mark_trainable  # noqa: E402
from tunesmith.memory import cast_for_training, enable_gradient_checkpointing  # noqa: E402
from tunesmith.models import load_model, load_tokenizer  # noqa: E402
from tunesmith.packedattn import PACKED  # noqa: E402
from tunesmith.tasks import model_inputs, task_loss  # noqa: E402

BACKENDS = (PACKED, "sdpa")


def build(a: argparse.Namespace, device: torch.device) -> tuple[torch.nn.Module, dict, dict]:
    """The LoRA model (bf16 frozen base), one packed batch on ``device`` and the attention work
    of every packed row."""
    tokenizer = load_tokenizer("smollm2")
    with tempfile.TemporaryDirectory() as tmp:
        rows = packed_rows("smollm2_lora", a, Path(tmp), tokenizer)
    every = attention_work(collate_packed(rows)["position_ids"])
    rows = random.Random(SEED).sample(rows, a.batch)
    batch = {k: v.to(device) for k, v in collate_packed(rows).items()}
    model = load_model("smollm2", "causal_lm", dtype=torch.bfloat16).to(device)
    add_adapter(model, "lora", LoraConfig(**LORA))
    mark_trainable(model, "lora")
    cast_for_training(model, [p for p in model.parameters() if p.requires_grad], torch.bfloat16)
    if a.ckpt:
        enable_gradient_checkpointing(model)
    model.train()
    return model, batch, every


def step(model: torch.nn.Module, batch: dict, backend: str, device: torch.device) -> tuple:
    """(seconds, loss) of one forward + loss + backward with ``backend``."""
    model.set_attn_implementation(backend)
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16):
        logits = model(**model_inputs("causal_lm", batch)).logits
        loss = task_loss("causal_lm", logits, batch["labels"])
    loss.backward()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, float(loss.detach())


def attention_work(position_ids: torch.Tensor) -> dict:
    """Rows, examples and sum(L_i^2) / (rows x T^2): the share of the masked scores that the
    per-example attention computes."""
    rows, t = position_ids.shape
    lengths = []
    for row in position_ids.tolist():
        cut = [i for i, p in enumerate(row) if p == 0] + [t]
        lengths += [e - s for s, e in zip(cut[:-1], cut[1:], strict=True)]
    exact = sum(n * n for n in lengths)
    return {"rows": rows, "examples": len(lengths), "work_ratio": round(exact / (rows * t * t), 4)}


def check(model: torch.nn.Module, batch: dict, device: torch.device) -> dict:
    """Loss and LoRA gradients of one step per backend, compared."""
    losses, grads = {}, {}
    for backend in BACKENDS:
        _, losses[backend] = step(model, batch, backend, device)
        grads[backend] = [p.grad.float().clone() for p in model.parameters() if p.requires_grad]
    diff = max((x - y).abs().max().item() for x, y in zip(*grads.values(), strict=True))
    scale = max(g.abs().max().item() for g in grads["sdpa"])
    return {"loss": losses, "max_grad_diff": diff, "max_grad": scale}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10, help="timed steps per backend")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps per backend first")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--limit", type=int, default=2000, help="alpaca_2k examples read")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ckpt", action="store_true", help="gradient checkpointing")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json-out", default=str(HERE / "results_packed_attention.json"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    model, batch, every = build(argparse.Namespace(**{**vars(a), "steps": 1}), device)
    out = {
        "meta": {
            "device": str(device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
            "batch": list(batch["input_ids"].shape),
            "ckpt": a.ckpt,
            **attention_work(batch["position_ids"].cpu()),
            "all_rows": every,
        },
        "check": check(model, batch, device),
    }
    times: dict[str, list[float]] = {b: [] for b in BACKENDS}
    for i in range(a.warmup + a.steps):
        for backend in BACKENDS if i % 2 == 0 else BACKENDS[::-1]:
            seconds, _ = step(model, batch, backend, device)
            if i >= a.warmup:
                times[backend].append(round(seconds, 4))
    medians = {b: statistics.median(t) for b, t in times.items()}
    out.update(step_s=times, median_s=medians, speedup=round(medians["sdpa"] / medians[PACKED], 3))
    Path(a.json_out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: out[k] for k in ("check", "median_s", "speedup")} | out["meta"]))


if __name__ == "__main__":
    main()

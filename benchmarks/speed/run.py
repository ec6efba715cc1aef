"""Speed benchmark (issue 7): tunesmith vs transformers' Trainer (+ PEFT), same work, alternating.

Cases (worker.py has their exact settings):
- minilm_full:  embedded MiniLM, full fine-tuning on SST-2 sentences, batch 32, max_length 64
- minilm_lora:  the same with LoRA r=8 on query/value (PEFT's SEQ_CLS: the classifier trains)
- smollm2_lora: SmolLM2-135M-Instruct, LoRA r=16 on q/k/v/o, alpaca_2k chat SFT, batch 8,
                max_length 256, loss on responses only

Each repeat runs, in fresh processes and in this order, tunesmith and the Trainer with its
defaults (REPEATS repeats per case, medians reported); the first repeat also runs the Trainer with
group_by_length and, for the causal LM, tunesmith with data.packing (once each). The ratio is
tunesmith / Trainer (defaults); the grouped Trainer is shown too, so the source of the gain is
visible. Peak RSS is read right after training (the
evaluation that follows is timed separately and its peak kept apart). MFU = model FLOPs per token x tokens/s / the measured fp32 GEMM limit, with model
FLOPs per token = 6 N (full fine-tuning) or 4 N (LoRA: forward 2N + input gradients 2N, no
weight gradients for frozen weights), N = parameters that multiply activations (embedding
tables excluded, the tied LM head included); attention-score FLOPs are left out.

    python benchmarks/speed/run.py                   # everything (~25 min on 2 cores)
    python benchmarks/speed/run.py --only minilm_full --repeats 1 --steps-scale 0.5
    python benchmarks/speed/run.py --tables-only

Writes results.json ({"runs": [...]}), results.md and the README table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from tunesmith.report import replace_marked_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CASES = {"minilm_full": 30, "minilm_lora": 30, "smollm2_lora": 8}  # optimiser steps per run
IMPLS = ["tunesmith", "trainer", "trainer_grouped"]
PACKED_CASES = {"smollm2_lora"}  # also run tunesmith with data.packing (causal LM only)
REPEATS = 3
TARGET = 1.3


def gemm_limit(seconds: float = 4.0, n: int = 2048) -> dict:
    """Sustained torch.mm FLOP/s on this machine (fp32, and bf16 for the record)."""
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < (seconds if dtype == torch.float32 else seconds / 2):
            torch.mm(a, b)
            reps += 1
        out[str(dtype).split(".")[-1]] = round(
            2 * n**3 * reps / (time.perf_counter() - t0) / 1e9, 1
        )
    return out


def flops_per_token(case: str) -> tuple[float, int]:
    from tunesmith.models import load_model

    sys.path.insert(0, str(HERE))
    from worker import CASES as SPEC

    c = SPEC[case]
    model = load_model(c["model"], c["task"], num_labels=2 if c["task"] != "causal_lm" else None)
    emb = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    total = sum(p.numel() for p in model.parameters())
    n = total - emb
    out = model.get_output_embeddings() if c["task"] == "causal_lm" else None
    if out is not None and out.weight.data_ptr() in {
        m.weight.data_ptr() for m in model.modules() if isinstance(m, torch.nn.Embedding)
    }:
        n += out.weight.numel()  # tied head: stored once, multiplied every token
    factor = 4 if c["adapter"] else 6
    return float(factor * n), n


def run_worker(case: str, impl: str, steps: int, tmp: Path) -> dict:
    out = tmp / f"{case}-{impl}.json"
    cmd = [
        sys.executable,
        str(HERE / "worker.py"),
        case,
        impl,
        "--steps",
        str(steps),
        "--json-out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    r = json.loads(out.read_text())
    print(
        f"{case} {impl}: {r['tokens_per_s']} tok/s, step {r['median_step_s']} s, "
        f"RSS {r['peak_rss_mb']} MB, eval {r['eval_examples_per_s']} ex/s",
        flush=True,
    )
    return r


def median(xs: list[float]) -> float:
    return round(statistics.median(xs), 2)


def aggregate(case: str, reps: list[dict[str, dict]], gflops: float, fpt: float) -> dict:
    def med(impl, key):
        return median([r[impl][key] for r in reps if impl in r])

    ts, base = med("tunesmith", "tokens_per_s"), med("trainer", "tokens_per_s")
    grouped = med("trainer_grouped", "tokens_per_s")
    losses = {impl: reps[0][impl]["loss_by_step"] for impl in IMPLS}
    packed = {}
    if "tunesmith_packed" in reps[0]:
        pk = med("tunesmith_packed", "tokens_per_s")
        packed = {
            "tunesmith_packed_tokens_per_s": pk,
            "ratio_packed": round(pk / base, 3),
            "tunesmith_packed_peak_rss_mb": med("tunesmith_packed", "peak_rss_train_mb"),
            "tunesmith_packed_step_s": med("tunesmith_packed", "median_step_s"),
            "packed_mfu": round(fpt * pk / (gflops * 1e9), 4),
            "packed_eval": reps[0]["tunesmith_packed"]["eval"],
        }
    return {
        **packed,
        "method": case,
        "repeats": len(reps),
        "steps": reps[0]["tunesmith"]["steps"],
        "tunesmith_tokens_per_s": ts,
        "baseline_tokens_per_s": base,
        "ratio": round(ts / base, 3),
        "trainer_grouped_tokens_per_s": grouped,
        "ratio_vs_grouped": round(ts / grouped, 3),
        "tunesmith_step_s": med("tunesmith", "median_step_s"),
        "baseline_step_s": med("trainer", "median_step_s"),
        "tunesmith_peak_rss_mb": med("tunesmith", "peak_rss_train_mb"),
        "baseline_peak_rss_mb": med("trainer", "peak_rss_train_mb"),
        "tunesmith_peak_rss_with_eval_mb": med("tunesmith", "peak_rss_mb"),
        "baseline_peak_rss_with_eval_mb": med("trainer", "peak_rss_mb"),
        "tunesmith_eval_examples_per_s": med("tunesmith", "eval_examples_per_s"),
        "baseline_eval_examples_per_s": med("trainer", "eval_examples_per_s"),
        "flops_per_token": fpt,
        "mfu": round(fpt * ts / (gflops * 1e9), 4),
        "baseline_mfu": round(fpt * base / (gflops * 1e9), 4),
        "tokens_per_s_all": {
            impl: [r[impl]["tokens_per_s"] for r in reps if impl in r] for impl in reps[0]
        },
        "loss_by_step": losses,
        "eval": {impl: reps[0][impl]["eval"] for impl in IMPLS},
    }


def loss_line(r: dict) -> str:
    steps = sorted({int(s) for s in r["loss_by_step"]["tunesmith"]})
    pick = [s for s in (1, 5, 10, 20, 40) if s in steps] or steps[:3]
    parts = []
    for impl in ("tunesmith", "trainer"):
        d = {int(k): v for k, v in r["loss_by_step"][impl].items()}
        parts.append(impl + " " + ", ".join(f"{s}: {d.get(s, float('nan')):.3f}" for s in pick))
    return f"{r['method']} loss at steps — " + "; ".join(parts)


def table(runs: list[dict]) -> str:
    gemm = next((r for r in runs if r["method"] == "gemm_limit"), None)
    lines = [
        "| case | tunesmith tok/s | Trainer tok/s | ratio | Trainer grouped tok/s | ratio vs grouped "
        "| step s (ts / Tr) | peak RSS MB (ts / Tr) | eval ex/s (ts / Tr) | MFU (ts / Tr) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    verdict = []
    for r in runs:
        if r["method"] == "gemm_limit":
            continue
        lines.append(
            f"| {r['method']} | {r['tunesmith_tokens_per_s']:.0f} | {r['baseline_tokens_per_s']:.0f} "
            f"| **{r['ratio']:.2f}x** | {r['trainer_grouped_tokens_per_s']:.0f} "
            f"| {r['ratio_vs_grouped']:.2f}x | {r['tunesmith_step_s']:.3f} / {r['baseline_step_s']:.3f} "
            f"| {r['tunesmith_peak_rss_mb']:.0f} / {r['baseline_peak_rss_mb']:.0f} "
            f"| {r['tunesmith_eval_examples_per_s']:.0f} / {r['baseline_eval_examples_per_s']:.0f} "
            f"| {100 * r['mfu']:.1f}% / {100 * r['baseline_mfu']:.1f}% |"
        )
        ok = "meets" if r["ratio"] >= TARGET else "MISSES"
        mem = "<=" if r["tunesmith_peak_rss_mb"] <= r["baseline_peak_rss_mb"] else ">"
        verdict.append(
            f"{r['method']}: {r['ratio']:.2f}x the Trainer's tokens/s ({ok} the "
            f"{TARGET}x target), peak RSS {mem} the Trainer's."
        )
        verdict.append(loss_line(r))
        if "tunesmith_packed_tokens_per_s" in r:
            verdict.append(
                f"{r['method']} with data.packing: {r['tunesmith_packed_tokens_per_s']:.0f} tok/s = "
                f"{r['ratio_packed']:.2f}x the Trainer's (step {r['tunesmith_packed_step_s']:.2f} s "
                f"for full {256}-token rows), peak RSS {r['tunesmith_packed_peak_rss_mb']:.0f} MB, "
                f"MFU {100 * r['packed_mfu']:.1f}%, held-out loss {r['packed_eval']}."
            )
    if gemm:
        verdict.insert(
            0,
            f"GEMM limit (torch.mm 2048², {gemm['threads']} threads): fp32 "
            f"{gemm['gflops']:.0f} GFLOP/s, bf16 {gemm['bf16_gflops']:.0f} GFLOP/s.",
        )
    return "\n".join(lines + [""] + verdict)


def write_tables(runs: list[dict]) -> None:
    md = table(runs)
    (HERE / "results.md").write_text(md + "\n")
    replace_marked_section(ROOT / "README.md", "speed-table", md)
    print(md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=sorted(CASES))
    p.add_argument("--repeats", type=int, default=REPEATS)
    p.add_argument("--steps-scale", type=float, default=1.0)
    p.add_argument("--tables-only", action="store_true")
    args = p.parse_args()
    out = HERE / "results.json"
    if args.tables_only:
        write_tables(json.loads(out.read_text())["runs"])
        return
    previous = json.loads(out.read_text())["runs"] if out.is_file() else []
    runs = {r["method"]: r for r in previous}
    g = gemm_limit()
    runs["gemm_limit"] = {
        "method": "gemm_limit",
        "gflops": g["float32"],
        "bf16_gflops": g["bfloat16"],
        "threads": torch.get_num_threads(),
    }
    print(f"GEMM limit: {g} GFLOP/s", flush=True)
    tmp = ROOT / "runs" / "bench_speed" / "json"
    tmp.mkdir(parents=True, exist_ok=True)
    for case in [c for c in CASES if c in (args.only or CASES)]:
        steps = max(WARMUP_MIN, round(CASES[case] * args.steps_scale))
        fpt, n = flops_per_token(case)
        reps = []
        extra = ["trainer_grouped"] + (["tunesmith_packed"] if case in PACKED_CASES else [])
        for i in range(args.repeats):  # the two compared sides every repeat; the extras once
            impls = ["tunesmith", "trainer"] + (extra if i == 0 else [])
            reps.append({impl: run_worker(case, impl, steps, tmp) for impl in impls})
        runs[case] = {**aggregate(case, reps, g["float32"], fpt), "flop_params": n}
        order = ["gemm_limit", *CASES]
        meta = {
            "machine": f"{platform.machine()} {platform.processor()}",
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "command": "python benchmarks/speed/run.py",
        }
        out.write_text(
            json.dumps({"meta": meta, "runs": [runs[k] for k in order if k in runs]}, indent=2)
        )
    write_tables([runs[k] for k in ["gemm_limit", *CASES] if k in runs])


WARMUP_MIN = 6

if __name__ == "__main__":
    main()

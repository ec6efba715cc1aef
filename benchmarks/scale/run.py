"""Scale benchmark (issue 14): precision, bf16 frozen bases, gradient checkpointing and the chunked
LM loss, tunesmith vs an equally configured transformers Trainer + PEFT, alternating runs.

Cases (scale_worker.py has the exact settings): smollm2_lora (SmolLM2-135M, LoRA r 16 on q,k,v,o),
smollm2_full (full fine-tuning), gemma3_lora (Gemma-3-270m, 262k vocabulary, LoRA); alpaca_2k,
8 packed rows x 512 tokens per step, the same steps for every run. Configs: fp32 | bf16 (autocast
over fp32 weights) | bf16base (frozen weights stored in bf16 + autocast), each with optional
+ckpt (gradient checkpointing), +chunk (train.loss_chunk_tokens; tunesmith only) and +nopack_attn
(tunesmith only: the block-diagonal SDPA mask instead of per-example attention over packed rows).

Every run is a fresh subprocess (scale_worker.py) with a fixed thread count; the plan is walked repeat
by repeat, so tunesmith and Trainer runs alternate. The GEMM limits (torch.mm 2048², fp32 and
bf16) are measured in the same invocation, before and after the runs; MFU = flops_per_token x
tokens/s / the limit of the run's precision (scale_worker.flop_params gives the formula).

    python benchmarks/scale/run.py                  # the default plan (PLAN; ~27 min measured on 2 idle cores)
    python benchmarks/scale/run.py --quick          # smoke test: 3 short steps, 4 runs (~3 min)
    python benchmarks/scale/run.py --cases gemma3_lora --configs bf16base+ckpt bf16base+ckpt+chunk
    python benchmarks/scale/run.py --fsdp           # also the 2-process FSDP vs DDP case
    python benchmarks/scale/run.py --tables-only    # README table from results.json

Writes results.json ({"meta": ..., "runs": [...]}, one object per run, saved after every run)
and the table in README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from scale_tables import write_tables  # noqa: E402
from scale_worker import CASES, parse_config, tunesmith_only  # noqa: E402

THREADS = 2
STEPS = 10
# (case, impl, config, repeats), ~27 min measured on 2 idle cores (--dry-run prints the estimate).
# 3 repeats for the pair the 1.3x speed and 0.7x memory targets compare: tunesmith's best vs the
# equally configured Trainer. Once: tunesmith fp32 (the 2x target's baseline, ~4 min; a gap that
# large needs no repeats) and bf16 autocast alone; full fine-tuning at bf16+ckpt on both sides
# (no frozen base there: bf16base = bf16); Gemma's chunked vs unchunked loss (peak RSS). The rest
# of the grid (Trainer fp32, bf16base without ckpt, ...) costs ~2-4 min a run: --configs.
PLAN: list[tuple[str, str, str, int]] = [
    ("smollm2_lora", "tunesmith", "bf16base+ckpt+chunk", 3),
    ("smollm2_lora", "trainer", "bf16base+ckpt", 3),
    ("smollm2_lora", "tunesmith", "fp32", 1),
    ("smollm2_lora", "tunesmith", "bf16", 1),
    ("smollm2_lora", "tunesmith", "bf16base+ckpt", 1),  # the Trainer's exact config, on our side
    # the per-example attention's share: the same run with the block-diagonal mask over rows
    ("smollm2_lora", "tunesmith", "bf16base+ckpt+chunk+nopack_attn", 1),
    ("smollm2_full", "tunesmith", "bf16+ckpt+chunk", 1),
    ("smollm2_full", "trainer", "bf16+ckpt", 1),
    ("gemma3_lora", "tunesmith", "bf16base+ckpt", 1),
    ("gemma3_lora", "tunesmith", "bf16base+ckpt+chunk", 1),
]
# Seconds per optimiser step of 8 x 512 tokens on 2 idle cores, for the --dry-run estimate:
# 2-step runs on 1 shared thread (AMD EPYC, AVX512-BF16, no AMX), scaled by the GEMM rates
# measured alongside them to ~200 (fp32) / ~450 (bf16) GFLOP/s for 2 idle threads; +-50%.
STEP_S = {"smollm2_lora": {"fp32": 19.0, "bf16": 11.0}, "smollm2_full": {"fp32": 30.0, "bf16": 25.0},
          "gemma3_lora": {"fp32": 45.0, "bf16": 19.0}}  # fmt: skip
CKPT_FACTOR, STARTUP_S = 1.3, 25.0
QUICK_PLAN = [
    ("smollm2_lora", "tunesmith", "fp32", 1),
    ("smollm2_lora", "trainer", "fp32", 1),
    ("smollm2_lora", "tunesmith", "bf16", 1),
    ("smollm2_lora", "trainer", "bf16", 1),
]
QUICK = {"steps": 3, "max_length": 128, "limit": 200}
SHARED_NOTE = (
    "timings taken while other jobs shared the machine's cores: losses and memory are "
    "unaffected, tokens/s and MFU are not comparable with an idle machine"
)


def gemm_limit(threads: int, seconds: float = 3.0, n: int = 2048) -> dict[str, float]:
    """Sustained torch.mm GFLOP/s at ``threads`` threads, fp32 and bf16."""
    torch.set_num_threads(threads)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.mm(a, b)
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            torch.mm(a, b)
            reps += 1
        key = "fp32" if dtype == torch.float32 else "bf16"
        out[key] = round(2 * n**3 * reps / (time.perf_counter() - t0) / 1e9, 1)
    return out


def build_plan(a: argparse.Namespace) -> list[tuple[str, str, str, int]]:
    """The default (or quick) plan, narrowed or replaced by --cases / --impls / --configs."""
    plan = QUICK_PLAN if a.quick else PLAN
    if a.configs:  # an explicit grid: every case x impl x config (trainer: no +chunk etc.)
        cases = a.cases or sorted({c for c, *_ in plan})
        plan = [
            (c, i, cfg, a.repeats or 1)
            for c in cases
            for cfg in a.configs
            for i in a.impls or ("tunesmith", "trainer")
            if not (i == "trainer" and tunesmith_only(parse_config(cfg)))
        ]
    plan = [
        r for r in plan if (not a.cases or r[0] in a.cases) and (not a.impls or r[1] in a.impls)
    ]
    if a.repeats:
        plan = [
            (c, i, cfg, a.repeats if reps > 1 or a.configs else reps) for c, i, cfg, reps in plan
        ]
    return plan


def estimate_s(plan: list[tuple[str, str, str, int]], steps: int, max_length: int = 512) -> float:
    """Rough wall time of ``plan`` on 2 idle cores (STEP_S, scaled linearly to 8 x max_length
    tokens per step; --dry-run prints it)."""
    total = 0.0
    for case, _, config, reps in plan:
        cfg = parse_config(config)
        step = STEP_S[case][cfg["precision"]] * (CKPT_FACTOR if cfg["grad_ckpt"] else 1.0)
        total += reps * (STARTUP_S + steps * step * max_length / 512)
    return total


def run_one(case: str, impl: str, config: str, a: argparse.Namespace, tmp: Path) -> dict:
    out = tmp / f"{case}-{impl}-{config}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / "scale_worker.py"), case, impl, config,
           "--steps", str(a.steps), "--threads", str(a.threads), "--max-length", str(a.max_length),
           "--limit", str(a.limit), "--chunk-tokens", str(a.chunk_tokens), "--json-out", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not out.is_file():
        tail = (proc.stderr or proc.stdout)[-3000:]
        print(f"FAILED {case} {impl} {config}:\n{tail}", flush=True)
        return {"case": case, "impl": impl, "config": config, **parse_config(config),
                "error": tail.strip().splitlines()[-1] if tail.strip() else f"rc {proc.returncode}"}  # fmt: skip
    r = json.loads(out.read_text())
    r["subprocess_s"] = round(time.perf_counter() - t0, 1)
    return r


def with_mfu(r: dict, gemm: dict) -> dict:
    """The run's GEMM limits and its MFU against the limit of its precision."""
    limit = gemm[r.get("precision", "fp32")]
    r["gemm_gflops"] = gemm
    if r.get("tokens_per_s") and r.get("flops_per_token"):
        r["mfu"] = round(r["flops_per_token"] * r["tokens_per_s"] / (limit * 1e9), 4)
        r["mfu_against"] = f"{r['precision']} torch.mm 2048² ({limit} GFLOP/s)"
    ls = {int(k): v for k, v in r.get("loss_by_step", {}).items()}
    r["loss_at_steps"] = {str(s): round(ls[s], 4) for s in (1, 5, 10) if s in ls}
    return r


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke test: 4 short runs")
    p.add_argument("--cases", nargs="+", choices=sorted(CASES))
    p.add_argument("--impls", nargs="+", choices=["tunesmith", "trainer"])
    p.add_argument("--configs", nargs="+", help="explicit grid, e.g. fp32 bf16base+ckpt+chunk")
    p.add_argument("--repeats", type=int, help="repeats of the compared rows (default: PLAN's)")
    p.add_argument("--steps", type=int)
    p.add_argument("--max-length", type=int)
    p.add_argument("--limit", type=int, help="alpaca_2k examples read (default all 2000)")
    p.add_argument("--chunk-tokens", type=int, default=512, help="train.loss_chunk_tokens")
    p.add_argument("--threads", type=int, default=THREADS)
    p.add_argument("--fsdp", action="store_true", help="also the 2-process FSDP vs DDP case")
    p.add_argument("--timing-note", help=f"recorded on every run (--shared: {SHARED_NOTE!r})")
    p.add_argument("--shared", action="store_true", help="the machine was shared: note it")
    p.add_argument("--out", default=str(HERE / "results.json"))
    p.add_argument("--tables-only", action="store_true")
    p.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    a = p.parse_args()
    out = Path(a.out)
    if a.tables_only:
        write_tables(json.loads(out.read_text()), out)
        return
    quick = QUICK if a.quick else {"steps": STEPS, "max_length": 512, "limit": 2000}
    for key, value in quick.items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    plan = build_plan(a)
    est = estimate_s(plan, a.steps, a.max_length)
    print(f"plan ({sum(r[3] for r in plan)} runs, {a.steps} steps, {a.threads} threads), "
          f"estimated {est / 60:.0f} min on 2 idle cores:")  # fmt: skip
    for row in plan:
        print("  ", *row)
    if a.dry_run:
        return
    note = a.timing_note or (SHARED_NOTE if a.shared else None)
    gemm = gemm_limit(a.threads)
    print(f"GEMM limit ({a.threads} threads): {gemm} GFLOP/s", flush=True)
    meta = {
        "command": "python benchmarks/scale/run.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} {_cpu_name()}",
        "torch": torch.__version__,
        "threads": a.threads,
        "steps": a.steps,
        "rows_x_tokens": f"8 x {a.max_length}",
        "gemm_gflops_start": gemm,
        **({"timing_note": note} if note else {}),
    }
    tmp = ROOT / "runs" / "bench_scale" / "json"
    tmp.mkdir(parents=True, exist_ok=True)
    runs: list[dict] = []
    start = time.perf_counter()
    for rep in range(max(r[3] for r in plan)):
        for case, impl, config, reps in plan:
            if rep >= reps:
                continue
            r = with_mfu(run_one(case, impl, config, a, tmp), gemm)
            r["repeat"] = rep + 1
            if note:
                r["timing_note"] = note
            runs.append(r)
            print(_line(r), flush=True)
            _save(out, meta, runs)
    if a.fsdp:
        from scale_fsdp import run_fsdp_case

        runs += [with_mfu(r, gemm) for r in run_fsdp_case(a, tmp)]
    meta["gemm_gflops_end"] = gemm_limit(a.threads)
    meta["total_s"] = round(time.perf_counter() - start, 1)
    _save(out, meta, runs)
    write_tables(json.loads(out.read_text()), out)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _line(r: dict) -> str:
    if "error" in r:
        return f"{r['case']} {r['impl']} {r['config']}: ERROR {r['error']}"
    return (
        f"{r['case']} {r['impl']} {r['config']} #{r['repeat']}: {r['tokens_per_s']} tok/s, "
        f"peak RSS {r['peak_rss_mb']} MB, MFU {r.get('mfu')}, losses {r['loss_at_steps']}, "
        f"{r['subprocess_s']} s"
    )


def _save(out: Path, meta: dict, runs: list[dict]) -> None:
    out.write_text(json.dumps({"meta": meta, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()

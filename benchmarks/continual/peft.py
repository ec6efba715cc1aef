"""Continual learning inside parameter-efficient training (issue 16): AG News -> SST-2 -> TREC on
embedded MiniLM with a LoRA or a Houlsby adapter and one head per task, at run.py's budget (STEPS
optimiser steps per stage, batch 16, max_length 64, the same splits and test caps; the adapter
rows use LR = PEFT_LR, the usual adapter learning rate, instead of full fine-tuning's 5e-5).

Methods: naive, ewc (lambda 0.5 on the mean-1 Fisher), lwf (lambda 1, T 2), replay (reservoir
1000, ratio 0.25), olora (LoRA only: lambda_1 0.5, lambda_2 0), mas (lambda 1 on the mean-1
Omega), agem (memory 1000, 64 per reference batch), adapter_per_task (task-id routing). Each row:
method, adapter, seed, acc, bwt, forgetting, trainable_params (the most any stage trains: adapter
+ head), total_params, the matrix. Full fine-tuning rows stay in results.json (run.py).

    python benchmarks/continual/peft.py                           # every row x 3 seeds
    python benchmarks/continual/peft.py --only olora --adapters lora --seeds 13
    python benchmarks/continual/peft.py --quick --only naive --adapters lora   # wiring smoke test
    python benchmarks/continual/peft.py --tables-only             # rebuild results_peft.md
    # two single-thread processes, then one file:
    python benchmarks/continual/peft.py --adapters lora --results /tmp/lora.json &
    python benchmarks/continual/peft.py --adapters houlsby --results /tmp/houlsby.json
    python benchmarks/continual/peft.py --merge /tmp/lora.json /tmp/houlsby.json

Writes results_peft.json ({"runs": [...]}) and results_peft.md (results_peft_quick.* with --quick).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import HERE, ROOT, SEEDS, STEPS, Budget, prune_run, stages  # noqa: E402

from tunesmith.continual import run_sequence  # noqa: E402
from tunesmith.continual.config import ContinualConfig  # noqa: E402
from tunesmith.paths import data_root  # noqa: E402
from tunesmith.report import replace_marked_section  # noqa: E402

PEFT_LR = 5e-4
ADAPTERS = {
    "lora": {"type": "lora", "r": 8, "alpha": 16},  # MiniLM's default targets: query, value
    "houlsby": {"type": "houlsby"},  # reduction factor 16, after attention and FFN
}
METHODS = ["naive", "ewc", "lwf", "replay", "olora", "mas", "agem", "adapter_per_task"]
CONTINUAL = {
    "ewc": {"ewc": {"weight": 0.5}},
    "lwf": {"lwf": {"weight": 1.0, "temperature": 2.0}},
    "replay": {"replay": {"capacity": 1000, "ratio": 0.25}},
    "olora": {"olora": {"weight": 0.5, "l2_weight": 0.0}},
    "mas": {"mas": {"weight": 1.0}},
    "agem": {"agem": {"capacity": 1000, "batch_size": 64}},
}
LORA_ONLY = {"olora"}


def peft_stages(seed: int, budget: Budget, adapter: str) -> list:
    """run.py's stages with the adapter section and the adapter learning rate."""
    out = []
    for stage in stages(seed, budget, joint=False):
        optim = dataclasses.replace(stage.recipe.optim, lr=PEFT_LR)
        recipe = dataclasses.replace(stage.recipe, adapter=dict(ADAPTERS[adapter]), optim=optim)
        out.append(dataclasses.replace(stage, recipe=recipe))
    return out


def stage_params(out: Path) -> tuple[int, int]:
    """(the most parameters any stage trained, the model's total) from the stages' summaries."""
    summaries = [json.loads(p.read_text()) for p in sorted(out.glob("stages/*/summary.json"))]
    return (
        max(s["trainable_params"] for s in summaries),
        max(s["total_params"] for s in summaries),
    )


def run_one(method: str, adapter: str, seed: int, runs_dir: Path, budget: Budget, keep: bool):
    out = runs_dir / f"{method}-{adapter}-s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = ContinualConfig.parse({"method": method, **CONTINUAL.get(method, {})})
    report = run_sequence(peft_stages(seed, budget, adapter), cfg, out)
    trainable, total = stage_params(out)
    r = {
        "method": method,
        "adapter": adapter,
        "seed": seed,
        "acc": report["acc"],
        "bwt": report["bwt"],
        "forgetting": report["forgetting"],
        "trainable_params": trainable,
        "total_params": total,
        "trainable_pct": round(100 * trainable / total, 3),
        "matrix": report["matrix"],
        "steps_per_stage": budget.steps,
        "lr": PEFT_LR,
        "adapter_settings": ADAPTERS[adapter],
        "settings": CONTINUAL.get(method, {}),
        "wall_s": report.get("wall_s"),
    }
    print(json.dumps(r), flush=True)
    if not keep:
        prune_run(out)
    return r


def _ms(values: list[float]) -> str:
    m = 100 * statistics.mean(values)
    sd = 100 * statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{m:.2f} ± {sd:.2f}"


def table(runs: list[dict]) -> str:
    """Mean ± sd over seeds per (adapter, method)."""
    by: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        by.setdefault((r["adapter"], r["method"]), []).append(r)
    lines = [
        "| adapter | method | seeds | ACC | BWT | trainable params (%) |",
        "|---|---|---|---|---|---|",
    ]
    for (adapter, method), rs in by.items():
        pct = rs[0]["trainable_pct"]
        lines.append(
            f"| {adapter} | {method} | {len(rs)} | {_ms([r['acc'] for r in rs])} | "
            f"{_ms([r['bwt'] for r in rs])} | {rs[0]['trainable_params']:,} ({pct:.2f}%) |"
        )
    return "\n".join(lines) + "\n"


def verdicts(runs: list[dict]) -> list[str]:
    """The issue's target: a PEFT method with |BWT| <= 3 points and ACC >= 70 (mean over seeds),
    training <= 5% of the parameters; the full fine-tuning table's best non-joint ACC beside it."""
    by: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        by.setdefault((r["adapter"], r["method"]), []).append(r)
    lines = []
    for (adapter, method), rs in by.items():
        acc = 100 * statistics.mean(r["acc"] for r in rs)
        bwt = 100 * statistics.mean(r["bwt"] for r in rs)
        pct = max(r["trainable_pct"] for r in rs)
        ok = abs(bwt) <= 3 and acc >= 70 and pct <= 5
        verdict = "meets" if ok else "misses"
        if len(rs) < len(SEEDS):
            verdict = f"would {'meet' if ok else 'miss'} (only {len(rs)} of {len(SEEDS)} seeds)"
        lines.append(
            f"{adapter} {method}: ACC {acc:.2f}, |BWT| {abs(bwt):.2f}, {pct:.2f}% trained "
            f"({len(rs)} seeds) -> {verdict} the target (|BWT| <= 3, ACC >= 70, <= 5% trained)"
        )
    return lines


def save(
    out: Path, runs: list[dict], budget: Budget, readme: bool = False, merged: list | None = None
) -> None:
    order = {(a, m): i for i, (a, m) in enumerate((a, m) for a in ADAPTERS for m in METHODS)}
    runs.sort(key=lambda r: (order[(r["adapter"], r["method"])], r["seed"]))
    meta = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "command": " ".join(["python benchmarks/continual/peft.py", *sys.argv[1:]]),
        "steps_per_stage": budget.steps,
        "lr": PEFT_LR,
    }
    if merged:  # the runs came from these invocations (each a single-thread process)
        meta["machine"] = f"{platform.machine()}, runs from the commands in merged_from"
        meta["merged_from"] = merged
    out.write_text(json.dumps({"meta": meta, "runs": runs}, indent=2))
    md = table(runs) + "\n" + "\n".join(f"- {v}" for v in verdicts(runs)) + "\n"
    out.with_suffix(".md").write_text(
        "# Continual learning with adapters: AG News -> SST-2 -> TREC (MiniLM, a head per "
        "task)\n\n" + md
    )
    if readme:
        replace_marked_section(ROOT / "README.md", "continual-peft-table", md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=METHODS)
    p.add_argument("--adapters", nargs="+", choices=list(ADAPTERS), default=list(ADAPTERS))
    p.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    p.add_argument("--steps", type=int, default=STEPS, help="optimiser steps per stage")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--quick", action="store_true", help="smoke test -> results_peft_quick.json")
    p.add_argument("--tables-only", action="store_true")
    p.add_argument("--results", help="write here instead of results_peft.json (parallel runs)")
    p.add_argument(
        "--merge", nargs="+", metavar="JSON", help="fold these results files' runs in, then exit"
    )
    p.add_argument("--keep-runs", action="store_true", help="keep the run folders' weights")
    args = p.parse_args()
    out = HERE / ("results_peft_quick.json" if args.quick else "results_peft.json")
    out = Path(args.results) if args.results else out
    budget = Budget(args.quick, args.steps)
    previous = json.loads(out.read_text())["runs"] if out.is_file() else []
    if args.merge:
        key = lambda r: (r["adapter"], r["method"], r["seed"])  # noqa: E731
        runs = {key(r): r for r in previous}
        merged = []
        for path in args.merge:
            body = json.loads(Path(path).read_text())
            runs.update({key(r): r for r in body["runs"]})
            merged.append(f"{body['meta']['command']} ({body['meta']['machine']})")
        previous = list(runs.values())
    if args.tables_only or args.merge:
        merged = merged if args.merge else None
        save(out, previous, budget, readme=not (args.quick or args.results), merged=merged)
        return
    if not (data_root() / "ag_news").is_dir():
        sys.exit(f"shared data not found at {data_root()} (set TUNESMITH_DATA)")
    runs_dir = Path(args.runs_dir or ROOT / "runs" / "bench_continual_peft")
    runs = {(r["adapter"], r["method"], r["seed"]): r for r in previous}
    for seed in args.seeds:
        for adapter in args.adapters:
            for method in [m for m in METHODS if m in (args.only or METHODS)]:
                if method in LORA_ONLY and adapter != "lora":
                    continue
                r = run_one(method, adapter, seed, runs_dir, budget, args.keep_runs)
                runs[(adapter, method, seed)] = r
                save(out, list(runs.values()), budget)


if __name__ == "__main__":
    main()

"""EWC lambda sweep on a two-task sequence the continual benchmark does not use (TREC -> emotion).

What ``continual.ewc.weight`` (lambda) does to the balance of old and new task with the
scale-free Fisher (``fisher.normalize: mean``, the default): for each lambda, ACC, BWT, the old
task's (TREC) accuracy after the new one and the new task's (emotion) accuracy, next to naive
fine-tuning. Same budget as benchmarks/continual/run.py (embedded MiniLM, a head per task,
max_length 64, batch 16, lr 5e-5, --steps optimiser steps per stage, dev/test capped at 200/500).

The first stage (TREC) and the Fisher after it do not depend on lambda: they are trained once
(``<runs-dir>/base``, run_sequence(stop_after=1)) and each lambda continues a copy of that
folder, exactly what an independent run with the same seed would do (stage 0 is seeded and
identical for every method; the benchmark's matrices show it).

    python benchmarks/continual/sweep_lambda.py                  # -> lambda_sweep.json / .md
                                                                 #    and docs/continual.md
    python benchmarks/continual/sweep_lambda.py --lambdas 1 10 --no-naive
    python benchmarks/continual/sweep_lambda.py --tables-only

Run folders are pruned once scored (weights deleted) unless --keep-runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (benchmarks/continual/run.py: budget, stages, pruning)

from tunesmith.continual import run_sequence  # noqa: E402
from tunesmith.continual.config import ContinualConfig  # noqa: E402
from tunesmith.report import replace_marked_section  # noqa: E402

HERE = Path(__file__).resolve().parent
TASKS = ["trec", "emotion"]
LAMBDAS = [0.01, 0.1, 0.3, 0.5, 1.0, 10.0]  # the default, 0.5, chosen from this table
OUT = HERE / "lambda_sweep.json"


def config(method: str, lam: float | None) -> ContinualConfig:
    if method == "naive":
        return ContinualConfig.parse({"method": "naive"})
    return ContinualConfig.parse({"method": "ewc", "ewc": {"weight": lam}})


def prepare(args, runs: Path, budget) -> Path:
    """Stage 0 and the state (anchor + normalised Fisher) for stage 1, once."""
    base = runs / "base"
    stages = bench.stages(args.seed, budget, False, TASKS)
    run_sequence(stages, config("ewc", 1.0), base, stop_after=1)
    return base


def continue_from(base: Path, out: Path, method: str, lam: float | None, args, budget) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(base, out)
    (out / "sequence.yaml").unlink()  # written again with this run's settings
    stages = bench.stages(args.seed, budget, False, TASKS)
    report = run_sequence(stages, config(method, lam), out)
    m = report["matrix"]
    r = {
        "method": method,
        "lambda": lam,
        "seed": args.seed,
        "acc": report["acc"],
        "bwt": report["bwt"],
        "old_before": m[0][0],
        "old_after": m[1][0],
        "new_after": m[1][1],
        "matrix": m,
        "steps_per_stage": budget.steps,
        "wall_s_stage2": report.get("wall_s"),
    }
    print(json.dumps(r), flush=True)
    if not args.keep_runs:
        bench.prune_run(out)
    return r


def table(runs: list[dict]) -> str:
    naive = next((r for r in runs if r["method"] == "naive"), None)
    lines = [
        f"| λ (`continual.ewc.weight`) | ACC | BWT | {TASKS[0]} after {TASKS[1]} (was) "
        f"| {TASKS[1]} | \\|BWT\\| / naive |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(runs, key=lambda r: -1 if r["lambda"] is None else r["lambda"]):
        name = "naive" if r["method"] == "naive" else f"{r['lambda']:g}"
        ratio = abs(r["bwt"]) / abs(naive["bwt"]) if naive and naive["bwt"] else float("nan")
        lines.append(
            f"| {name} | {100 * r['acc']:.1f} | {100 * r['bwt']:+.1f} "
            f"| {100 * r['old_after']:.1f} ({100 * r['old_before']:.1f}) "
            f"| {100 * r['new_after']:.1f} | {ratio:.2f} |"
        )
    return "\n".join(lines)


def save(runs: list[dict], budget) -> None:
    meta = {
        "sequence": " -> ".join(TASKS),
        "command": "python benchmarks/continual/sweep_lambda.py",
        "fisher": "empirical, 512 examples, normalize: mean",
        "steps_per_stage": budget.steps,
        "batch_size": bench.BATCH,
        "max_length": bench.MAX_LEN,
        "lr": bench.LR,
        "test_cap": bench.TEST_CAP,
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
    }
    md = table(runs)
    OUT.write_text(json.dumps({"meta": meta, "runs": runs, "table": md}, indent=2))
    OUT.with_suffix(".md").write_text(
        f"EWC λ sweep, {meta['sequence']} (MiniLM, seed {runs[0]['seed']}, "
        f"{budget.steps} steps per stage; {meta['command']}):\n\n{md}\n"
    )
    replace_marked_section(bench.ROOT / "docs" / "continual.md", "lambda-sweep", md)
    print(md, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lambdas", nargs="*", type=float, default=LAMBDAS)
    p.add_argument("--no-naive", action="store_true", help="skip the naive row")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--steps", type=int, default=bench.STEPS, help="optimiser steps per stage")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--keep-runs", action="store_true", help="keep the run folders' weights")
    p.add_argument("--keep-base", action="store_true", help="keep the shared first stage")
    p.add_argument("--tables-only", action="store_true")
    args = p.parse_args()
    bench.show_fisher_scale()
    budget = bench.Budget(False, args.steps)
    previous = json.loads(OUT.read_text())["runs"] if OUT.is_file() else []
    if args.tables_only:
        save(previous, budget)
        return
    runs_dir = Path(args.runs_dir or bench.ROOT / "runs" / "sweep_lambda")
    base = prepare(args, runs_dir, budget)
    todo = ([] if args.no_naive else [("naive", None)]) + [("ewc", x) for x in args.lambdas]
    runs = {(r["method"], r["lambda"]): r for r in previous if r["seed"] == args.seed}
    for method, lam in todo:
        out = runs_dir / (method if lam is None else f"ewc-{lam:g}")
        runs[(method, lam)] = continue_from(base, out, method, lam, args, budget)
        save(list(runs.values()), budget)
    if not (args.keep_runs or args.keep_base):
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

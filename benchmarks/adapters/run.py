"""Adapter benchmark (issue 3): do bottleneck adapters match full fine-tuning with a few % of weights?

Embedded MiniLM (all-MiniLM-L6-v2, 22.7M params) on SST-2 sentences, RTE and TREC (coarse), the
same budget per dataset (configs/<dataset>.yaml: epochs SST-2 3, RTE 5, TREC 4; batch 32;
max_length 128; seeds 13, 14, 15 from configs/seeds.yaml) for full fine-tuning, Houlsby,
Pfeiffer, LoRA and IA3 (configs/: one base per dataset + per-method overrides). Reported: accuracy (test; dev for RTE, whose test split is unlabelled), % trainable
parameters, checkpoint bytes, wall time and peak RSS. Plus the same SST-2 LoRA config through
peft + transformers' Trainer (peft_baseline.py), and SmolLM2-135M LoRA instruction tuning on
alpaca_2k (held-out loss before/after, 3 generations, adapter size).

    python benchmarks/adapters/run.py                          # everything
    python benchmarks/adapters/run.py --only sst2 lora         # a dataset, a method, or a case
    python benchmarks/adapters/run.py --quick --only sst2/houlsby   # smoke test (seconds)
    python benchmarks/adapters/run.py --only full houlsby --seeds 13 14 --epochs rte=6 \
        --out /tmp/sweep.json                                  # a sweep: nothing published

Each job (a case with one seed) runs in a fresh subprocess (``--case dataset/method --seed N
--json-out FILE``) so that peak RSS is that job's own. Writes results.json ({"runs": [...],
"summary": ...}; one row per job), results.md and the table in the top-level README; --quick,
and any run with --out, write only that results file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import torch
from cases import (
    ALL_CASES,
    PEFT_CASE,
    Overrides,
    add_override_args,
    build_recipe,
    default_seeds,
    select,
    split_case,
)
from measure import checkpoint_bytes, dir_bytes, peak_gpu_mb, peak_rss_mb
from tables import seed_of, summarise, write_tables

from tunesmith.paths import data_root
from tunesmith.predict import predict_texts
from tunesmith.train.loop import train

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMMAND = "python benchmarks/adapters/run.py"
PROMPTS = [
    "Give three tips for staying healthy.",
    "Rewrite this sentence in the passive voice: The cat chased the mouse.",
    "What is the capital of France? Answer in one sentence.",
]


def common_fields(case: str, recipe, summary: dict, run_dir: Path, wall: float) -> dict:
    dataset, method = split_case(case)
    trainable, total = summary["trainable_params"], summary["total_params"]
    return {
        "dataset": dataset,
        "method": method,
        "seed": recipe.seed,
        "model": recipe.model,
        "adapter": recipe.adapter,
        "lr": recipe.optim.lr,
        "steps": summary["steps"],
        "trainable_params": trainable,
        "total_params": total,
        "trainable_fraction": round(trainable / total, 6),
        "trainable_pct": round(100 * trainable / total, 4),
        "checkpoint_bytes": checkpoint_bytes(run_dir / "best"),
        "best_dir_bytes": dir_bytes(run_dir / "best"),
        "wall_s": round(wall, 1),
        "train_wall_s": summary["wall_s"],
        "tokens_per_s": summary["tokens_per_s"],
    }


def job_name(case: str, seed: int) -> str:
    return f"{case}@{seed}"


def run_case(case: str, seed: int, runs_dir: Path, quick: bool, over: Overrides) -> dict:
    """Train one case with one seed in this process and return its result row."""
    recipe = build_recipe(case, quick, seed, over)
    run_dir = runs_dir / case / f"seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    summary = train(recipe, run_dir)
    wall = time.perf_counter() - t0
    result = common_fields(case, recipe, summary, run_dir, wall)
    result["peak_rss_mb"] = peak_rss_mb()  # before generation, which loads the model again
    result["peak_gpu_mb"] = peak_gpu_mb()
    if recipe.task == "sequence_classification":
        split = "test" if "test" in summary else "dev"
        result |= {
            "accuracy": round(summary[split]["accuracy"], 4),
            "split": split,
            "dev_accuracy": round(summary["dev"]["accuracy"], 4),
            "best_step": summary["best_step"],
        }
    else:
        new_tokens = 8 if quick else 60
        generations = predict_texts(run_dir, PROMPTS, new_tokens)
        result |= {
            "accuracy": None,
            "split": "dev",
            "adapter_bytes": (run_dir / "best" / "adapter_model.safetensors").stat().st_size,
            "eval_loss_before": round(summary["dev_at_start"]["loss"], 4),
            "eval_loss_after": round(summary["dev"]["loss"], 4),
            "ppl_before": round(summary["dev_at_start"]["perplexity"], 2),
            "ppl_after": round(summary["dev"]["perplexity"], 2),
            "samples": [
                {"prompt": p, "generated": g["generated"]}
                for p, g in zip(PROMPTS, generations, strict=True)
            ],
        }
    return result


def spawn(
    job: tuple[str, int], runs_dir: Path, quick: bool, over: Overrides, threads: int | None = None
) -> dict | None:
    """Run ``job`` (case, seed) in a fresh Python process; its result row, or None if it failed."""
    case, seed = job
    out = runs_dir / f"{case.replace('/', '__')}__seed{seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    script = HERE / ("peft_baseline.py" if case == PEFT_CASE else "run.py")
    cmd = [sys.executable, str(script), "--json-out", str(out), "--runs-dir", str(runs_dir)]
    cmd += ["--seed", str(seed), *over.args()] + ([] if case == PEFT_CASE else ["--case", case])
    cmd += ["--quick"] if quick else []
    name = job_name(case, seed)
    print(f"== {name}: {' '.join(cmd)}", flush=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
    if subprocess.run(cmd, cwd=ROOT, env=env).returncode != 0 or not out.is_file():
        print(f"!! {name} failed; its previous result (if any) is kept", flush=True)
        return None
    result = json.loads(out.read_text())
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}), flush=True)
    return result


def meta(quick: bool, threads: int | None = None, flags: tuple[str, ...] = ()) -> dict:
    """Where and how the rows were made; ``flags`` are those that change results (not --only,
    which picks the rows rerun, nor --jobs)."""
    import transformers

    try:
        import peft
    except ImportError:  # only the peft_lora case needs it
        peft = None
    return {
        "machine": f"{platform.machine()}, {threads or torch.get_num_threads()} torch threads per case",
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__ if peft else None,
        "command": " ".join([COMMAND, *flags]),
        "quick": quick,
    }


def run_matrix(
    jobs: list[tuple[str, int]],
    runs_dir: Path,
    out: Path,
    quick: bool,
    over: Overrides,
    parallel: int = 1,
    flags: tuple[str, ...] = (),
) -> bool:
    """Run the jobs one subprocess each (``parallel`` at a time, each with cores / parallel
    threads, so two jobs on 2 cores never oversubscribe), saving ``out`` after every job. Rows of
    earlier runs in ``out`` are kept unless rerun. True if all succeeded."""
    previous = json.loads(out.read_text())["runs"] if out.is_file() else []
    runs = {(f"{r['dataset']}/{r['method']}", seed_of(r)): r for r in previous}
    threads = max(1, (os.cpu_count() or 1) // parallel) if parallel > 1 else None
    ok = True
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        futures = {pool.submit(spawn, j, runs_dir, quick, over, threads): j for j in jobs}
        for future in as_completed(futures):
            job, result = futures[future], future.result()
            ok = ok and result is not None
            if result is not None:
                runs[job] = result
            ordered = [runs[k] for k in sorted(runs, key=lambda k: (ALL_CASES.index(k[0]), k[1]))]
            out.parent.mkdir(parents=True, exist_ok=True)
            info = meta(quick, threads, flags)
            results = {"meta": info, "runs": ordered, "summary": summarise(ordered)}
            out.write_text(json.dumps(results, indent=2))
    return ok


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", help="cases (sst2/lora), datasets (rte) or methods (ia3)")
    p.add_argument("--quick", action="store_true", help="smoke test: 64 train, 4 steps")
    p.add_argument("--runs-dir", help="run folders (default runs/bench_adapters[_quick])")
    p.add_argument("--jobs", type=int, default=1, help="jobs run at once (cores split evenly)")
    p.add_argument("--seeds", type=int, nargs="+", help="seeds for every case (configs/seeds.yaml)")
    add_override_args(p)
    p.add_argument("--out", help="results file (default results.json here, published in README)")
    p.add_argument("--case", choices=ALL_CASES, help="(internal) run one case in this process")
    p.add_argument("--seed", type=int, help="(internal) the seed of --case")
    p.add_argument("--json-out", help="(internal) where --case writes its result row")
    p.add_argument(
        "--tables-only",
        action="store_true",
        help="rewrite results.md and the README table from results.json, train nothing",
    )
    args = p.parse_args()
    runs_dir = Path(
        args.runs_dir or ROOT / "runs" / f"bench_adapters{'_quick' if args.quick else ''}"
    )
    publish = not (args.quick or args.out)
    if args.out:
        out = Path(args.out)
    else:
        out = runs_dir / "results.json" if args.quick else HERE / "results.json"
    over = Overrides.from_args(args)
    if args.case:
        if not args.json_out or args.seed is None:
            p.error("--case needs --seed and --json-out")
        result = run_case(args.case, args.seed, runs_dir, args.quick, over)
        Path(args.json_out).write_text(json.dumps(result, indent=2))
        return
    if args.tables_only:
        write_tables(json.loads(out.read_text()), publish=publish)
        return
    if not (data_root() / "sst2_sentences").is_dir():
        sys.exit(f"shared data not found at {data_root()} (set TUNESMITH_DATA)")
    jobs = [(c, s) for c in select(args.only) for s in (args.seeds or default_seeds(c))]
    for case, seed in jobs:  # a bad config fails now, not an hour into the matrix
        build_recipe(case, args.quick, seed, over)
    # --seeds that only fill in rows of the default design (configs/seeds.yaml) are like --only
    extra_seeds = args.seeds and any(s not in default_seeds(c) for c, s in jobs)
    flags = (*over.args(), *(["--seeds", *map(str, args.seeds)] if extra_seeds else []))
    flags += ("--quick",) if args.quick else ()
    ok = run_matrix(jobs, runs_dir, out, args.quick, over, args.jobs, flags)
    write_tables(json.loads(out.read_text()), publish=publish)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

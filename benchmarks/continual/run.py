"""Continual-learning benchmark (issue 5): AG News -> SST-2 -> TREC with seven methods, 3 seeds.

Embedded MiniLM, one classification head per task (task-incremental: each task is scored with its
own head), max_length 64, batch 16, lr 5e-5, STEPS optimiser steps per stage for every method
(joint: one run of 3 x STEPS steps over the union of the three training sets, one shared head
scored among each task's own labels). AG News: the 7,600 labelled rows split here (seeded,
stratified: 75/10/15). Test sets are capped at the first TEST_CAP examples to keep the
9 evaluations per sequence cheap; dev at DEV_CAP.

Methods: naive, ewc (lambda EWC_LAMBDA on the raw empirical Fisher of 512 examples, i.e.
fisher.normalize: none, as measured; --fisher-normalize mean --ewc-lambda L for the scale-free
default), online_ewc (gamma 0.9),
lwf (lambda 1, T 2), replay (reservoir 1000, ratio 0.25), ewc_replay, joint.

    python benchmarks/continual/run.py                      # all methods x 3 seeds
    python benchmarks/continual/run.py --only naive ewc --seeds 13
    python benchmarks/continual/run.py --quick              # smoke test -> results_quick.json
    python benchmarks/continual/run.py --tables-only        # rebuild results.md + README table
    python benchmarks/continual/run.py --lm                 # SmolLM2 perplexity drift runs

Run folders (runs/bench_continual/<method>-s<seed>) keep only their matrix, logs and summaries
once a run is scored (weights pruned); --keep-runs keeps everything.

Writes results.json ({"runs": [...]}, one object per method x seed), results.md, heatmaps in
benchmarks/continual/heatmaps/, and the table in the top-level README.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import platform
import shutil
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_data import DATA  # noqa: E402  (benchmarks/bench_data.py)

from tunesmith.config import parse_recipe
from tunesmith.continual import run_sequence
from tunesmith.continual.config import ContinualConfig, Stage
from tunesmith.paths import data_root
from tunesmith.report import replace_marked_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
METHODS = ["naive", "ewc", "online_ewc", "lwf", "replay", "ewc_replay", "joint"]
SEEDS = [13, 14, 15]
TASKS = ["ag_news", "sst2", "trec"]
STEPS, BATCH, MAX_LEN, LR = 100, 16, 64, 5e-5
TEST_CAP, DEV_CAP = 500, 200
EWC_LAMBDA = (
    1e5  # swept on seed 13 at 150 steps: 1e3 does nothing (penalty ~1e-5), 1e6 blocks SST-2
)
# the raw (un-normalised) empirical Fisher these results were measured with; see
# sweep_lambda.py and docs/continual.md for the scale-free default (fisher.normalize: mean)
RAW = {"normalize": "none"}
CONTINUAL = {
    "ewc": {"ewc": {"weight": EWC_LAMBDA, "fisher": dict(RAW)}},
    "online_ewc": {"online_ewc": {"weight": EWC_LAMBDA, "gamma": 0.9, "fisher": dict(RAW)}},
    "lwf": {"lwf": {"weight": 1.0, "temperature": 2.0}},
    "replay": {"replay": {"capacity": 1000, "ratio": 0.25}},
    "ewc_replay": {
        "ewc": {"weight": EWC_LAMBDA, "fisher": dict(RAW)},
        "replay": {"capacity": 1000, "ratio": 0.25},
    },
}
PRUNED = ("best", "checkpoints", "init", "state", "heads", "data")


def prune_run(out: Path) -> None:
    """Delete a finished run folder's weights (every stage's best/, checkpoints, the continual
    state, the saved heads and frozen data), keeping matrix.json/md/png, logs and summaries:
    a MiniLM sequence otherwise keeps ~90 MB per stage (benchmark folders once filled the disk)."""
    for d in sorted(out.rglob("*"), key=lambda p: -len(p.parts)):
        if d.is_dir() and d.name in PRUNED:
            shutil.rmtree(d, ignore_errors=True)
    for f in out.rglob("*"):
        if f.is_file() and f.suffix in (".safetensors", ".bin", ".pt"):
            f.unlink()


def show_fisher_scale() -> None:
    """Print the raw Fisher mean of each finished stage (the scale a raw lambda must fit)."""
    log = logging.getLogger("tunesmith.objectives.continual.fisher")
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)


def ewc_settings(method: str) -> dict:
    """The method's ``weight`` (lambda) in CONTINUAL, or None."""
    section = {"ewc": "ewc", "ewc_replay": "ewc", "online_ewc": "online_ewc"}.get(method)
    return CONTINUAL[method][section] if section else {}


class Budget:
    def __init__(self, quick: bool, steps: int):
        self.steps = 3 if quick else steps
        self.limit = (
            {"train": 64, "dev": 32, "test": 32} if quick else {"dev": DEV_CAP, "test": TEST_CAP}
        )


def stages(seed: int, budget: Budget, joint: bool, tasks: list[str] = TASKS) -> list[Stage]:
    out = []
    for i, task in enumerate(tasks):
        steps = budget.steps * len(tasks) if joint and i == 0 else budget.steps
        recipe = parse_recipe(
            {
                "model": "minilm",
                "task": "sequence_classification",
                "seed": seed,
                "data": {**DATA[task], "max_length": MAX_LEN, "limit": dict(budget.limit)},
                "optim": {"lr": LR, "weight_decay": 0.01, "warmup_ratio": 0.06},
                "train": {
                    "batch_size": BATCH,
                    "max_steps": steps,
                    "progress": False,
                    "tensorboard": False,
                    "precision": "fp32",  # pinned: comparable results (auto may pick bf16)
                },
            }
        )
        out.append(Stage(task, recipe))
    return out


def run_one(
    method: str, seed: int, runs_dir: Path, budget: Budget, keep: bool = False, heat: bool = True
) -> dict:
    out = runs_dir / f"{method}-s{seed}"
    shutil.rmtree(out, ignore_errors=True)
    cfg = ContinualConfig.parse({"method": method, **CONTINUAL.get(method, {})})
    report = run_sequence(stages(seed, budget, method == "joint"), cfg, out)
    if heat and not budget.steps < 10:
        (HERE / "heatmaps").mkdir(exist_ok=True)
        shutil.copy(out / "matrix.png", HERE / "heatmaps" / f"{method}-s{seed}.png")
    r = {
        "method": method,
        "seed": seed,
        "acc": report["acc"],
        "bwt": report["bwt"],
        "forgetting": report["forgetting"],
        "forgetting_per_task": report.get("forgetting_per_task"),
        "fwt": report.get("fwt"),
        "matrix": report["matrix"],
        "initial": report.get("initial"),
        "steps_per_stage": budget.steps,
        "settings": CONTINUAL.get(method, {}),
        "wall_s": report.get("wall_s"),
    }
    print(json.dumps(r), flush=True)
    if not keep:
        prune_run(out)
    return r


def _ms(values: list[float | None], scale: float = 100.0) -> str:
    vals = [scale * v for v in values if v is not None]
    if not vals:
        return "—"
    if len(vals) == 1:
        return f"{vals[0]:.2f}"
    return f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}"


def aggregate(runs: list[dict]) -> dict[str, dict]:
    by: dict[str, list[dict]] = {}
    for r in runs:
        by.setdefault(r["method"], []).append(r)
    return {m: by[m] for m in METHODS if m in by}


def verdicts(runs: list[dict]) -> list[str]:
    by = aggregate(runs)
    if "naive" not in by:
        return []
    naive_bwt = statistics.mean(abs(r["bwt"]) for r in by["naive"])
    naive_acc = statistics.mean(r["acc"] for r in by["naive"])
    lines = []
    for m in ("ewc", "online_ewc", "lwf", "replay", "ewc_replay"):
        if m not in by:
            continue
        bwt = statistics.mean(abs(r["bwt"]) for r in by[m])
        acc = statistics.mean(r["acc"] for r in by[m])
        ratio = bwt / naive_bwt if naive_bwt else float("nan")
        halved = "halves" if ratio <= 0.5 else "does NOT halve"
        acc_ok = ">=" if acc >= naive_acc else "<"
        lines.append(
            f"{m}: |BWT| {100 * bwt:.2f} vs naive {100 * naive_bwt:.2f} ({ratio:.2f}x, {halved} "
            f"naive forgetting); ACC {100 * acc:.2f} {acc_ok} naive {100 * naive_acc:.2f}."
        )
    return lines


def table(runs: list[dict]) -> str:
    by = aggregate(runs)
    lines = [
        "| method | seeds | ACC | BWT | forgetting | "
        + " | ".join(f"final {t}" for t in TASKS)
        + " | wall s / seq |",
        "|---|" + "---|" * (5 + len(TASKS)),
    ]
    for m, rs in by.items():
        finals = " | ".join(_ms([r["matrix"][-1][j] for r in rs]) for j in range(len(TASKS)))
        wall = statistics.mean(r["wall_s"] or 0 for r in rs)
        lines.append(
            f"| {m} | {len(rs)} | {_ms([r['acc'] for r in rs])} | {_ms([r['bwt'] for r in rs])} "
            f"| {_ms([r['forgetting'] for r in rs])} | {finals} | {wall:.0f} |"
        )
    v = verdicts(runs)
    return "\n".join(lines + ([""] + v if v else []))


def matrices(runs: list[dict]) -> str:
    """Mean accuracy matrix R per method (rows: after stage i; columns: task j)."""
    parts = []
    for m, rs in aggregate(runs).items():
        rows = len(rs[0]["matrix"])
        head = "| after \\ on | " + " | ".join(TASKS) + " |"
        lines = [f"**{m}** (mean over {len(rs)} seeds)", "", head, "|---|" + "---|" * len(TASKS)]
        for i in range(rows):
            cells = " | ".join(
                f"{100 * statistics.mean(r['matrix'][i][j] for r in rs):.2f}"
                for j in range(len(TASKS))
            )
            label = "joint" if m == "joint" else TASKS[i]
            lines.append(f"| {label} | {cells} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def write_tables(runs: list[dict], quick: bool, results: Path | None = None) -> None:
    """results.md and the README table; a side results file (--results) gets <name>.md only."""
    md = table(runs)
    if quick:
        print(md)
        return
    if results is not None:
        results.with_suffix(".md").write_text(md + "\n\n" + matrices(runs) + "\n")
        print(md)
        return
    (HERE / "results.md").write_text(md + "\n\n" + matrices(runs) + "\n" + lm_section())
    replace_marked_section(ROOT / "README.md", "continual-table", md + "\n" + lm_section())
    print(md)


# -- SmolLM2: does EWC / LwF protect what the model knew? ---------------------------------------
LM_METHODS = {
    "naive": {},
    "ewc": {
        "ewc": {
            "weight": 1e5,
            "fisher": {"kind": "empirical", "max_examples": 128, "normalize": "none"},
        }
    },
    "lwf": {"lwf": {"weight": 1.0, "temperature": 1.0}},
}
LM_TASK_STEPS, LM_ANCHOR_STEPS = 80, 4
LM_STAGES = {
    # "what the model knew": general instruction data, held-out perplexity. The anchor stage is
    # 4 steps at lr 1e-6 (the model stays what it was); after it the methods take their
    # snapshot: the Fisher / anchor weights / frozen copy on general data.
    "general": {
        "data": {
            "train": {"path": "alpaca_2k/alpaca_small.json", "format": "json"},
            "split": {"dev": 0.05, "test": 0.05},
            "limit": {"dev": 32, "test": 64},
            "template": "chat",
            "max_length": 256,
        },
        "optim": {"lr": 1e-6},
        "train": {"max_steps": LM_ANCHOR_STEPS},
    },
    # the new task: emotion labels as text ("i feel so alone\n" -> "sadness")
    "emotion": {
        "data": {
            **DATA["emotion"],
            "prompt_key": "text",
            "response_key": "label",
            "template": "plain",
            "max_length": 64,
            "limit": {"dev": 32, "test": 200},
        },
        "optim": {"lr": 1e-4},
        "train": {"max_steps": LM_TASK_STEPS},
    },
}


def lm_stages(quick: bool) -> list[Stage]:
    from tunesmith.configschema import deep_merge

    base = {
        "model": "smollm2",
        "task": "causal_lm",
        "seed": 13,
        "transfer": {"freeze_layers": 20},
        "optim": {"weight_decay": 0.0, "warmup_steps": 0},
        "train": {
            "batch_size": 8,
            "eval_batch_size": 16,
            "progress": False,
            "tensorboard": False,
            "precision": "fp32",  # pinned: comparable results (auto may pick bf16)
        },
    }
    out = []
    for name, over in LM_STAGES.items():
        d = deep_merge(base, over)
        if quick:
            d = deep_merge(
                d,
                {"data": {"limit": {"train": 16, "dev": 4, "test": 4}}, "train": {"max_steps": 2}},
            )
        out.append(Stage(name, parse_recipe(d)))
    return out


def run_lm(runs_dir: Path, quick: bool, methods: list[str], keep: bool = False) -> None:
    path = HERE / ("results_lm_quick.json" if quick else "results_lm.json")
    runs = json.loads(path.read_text())["runs"] if path.is_file() else []
    runs = [r for r in runs if r["method"] not in methods]
    for method in methods:
        out = runs_dir / f"lm-{method}"
        shutil.rmtree(out, ignore_errors=True)
        cfg = ContinualConfig.parse({"method": method, "heads": "shared", **LM_METHODS[method]})
        report = run_sequence(lm_stages(quick), cfg, out)
        r = {
            "method": method,
            "settings": LM_METHODS[method],
            "initial": report["initial"],
            "matrix": report["matrix"],
            "general_ppl_before": report["matrix"][0][0],
            "general_ppl_after": report["matrix"][1][0],
            "task_ppl_before": report["matrix"][0][1],
            "task_ppl_after": report["matrix"][1][1],
            "wall_s": report.get("wall_s"),
        }
        print(json.dumps(r), flush=True)
        if not keep:
            prune_run(out)
        runs.append(r)
        runs.sort(key=lambda x: list(LM_METHODS).index(x["method"]))
        path.write_text(json.dumps({"runs": runs, "table": lm_table(runs)}, indent=2))
    print(lm_table(runs))


def lm_table(runs: list[dict]) -> str:
    lines = [
        f"SmolLM2-135M-Instruct (lower 20 of 30 blocks frozen) fine-tuned {LM_TASK_STEPS} steps on "
        "emotion labels as text (batch 8, lr 1e-4); 'what it knew' = held-out perplexity on "
        "alpaca_2k instructions (64 examples, chat template):",
        "",
        "| method | general ppl before | general ppl after | drift | emotion ppl before "
        "| emotion ppl after | wall s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        g0, g1 = r["general_ppl_before"], r["general_ppl_after"]
        lines.append(
            f"| {r['method']} | {g0:.3f} | {g1:.3f} | {g1 - g0:+.3f} ({100 * (g1 / g0 - 1):+.1f}%) "
            f"| {r['task_ppl_before']:.3f} | {r['task_ppl_after']:.3f} | {r['wall_s'] or 0:.0f} |"
        )
    return "\n".join(lines)


def lm_section() -> str:
    path = HERE / "results_lm.json"
    if not path.is_file():
        return ""
    return "\n" + json.loads(path.read_text()).get("table", "") + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    p.add_argument("--steps", type=int, default=STEPS, help="optimiser steps per stage")
    p.add_argument("--runs-dir", default=None)
    p.add_argument("--quick", action="store_true", help="smoke test -> results_quick.json")
    p.add_argument("--tables-only", action="store_true")
    p.add_argument("--ewc-lambda", type=float, default=None, help=f"default {EWC_LAMBDA:g}")
    p.add_argument(
        "--fisher-normalize",
        choices=["none", "mean"],
        default=None,
        help="fisher.normalize of the EWC methods (default none: the raw Fisher of results.json)",
    )
    p.add_argument(
        "--keep-runs", action="store_true", help="keep the run folders' weights (default: pruned)"
    )
    p.add_argument(
        "--results",
        default=None,
        help="a side results file (default results.json); its table goes to <name>.md, not to "
        "results.md, the README or heatmaps/",
    )
    p.add_argument(
        "--lm",
        nargs="*",
        choices=list(LM_METHODS),
        default=None,
        help="run the SmolLM2 perplexity-drift sequences (all methods if none given)",
    )
    args = p.parse_args()
    show_fisher_scale()
    if args.lm is not None:
        runs_dir = Path(args.runs_dir or ROOT / "runs" / "bench_continual_lm")
        run_lm(runs_dir, args.quick, args.lm or list(LM_METHODS), args.keep_runs)
        return
    out = HERE / ("results_quick.json" if args.quick else "results.json")
    side = Path(args.results) if args.results else None  # not results.md / README / heatmaps
    if side is not None:
        out = side
    for method in CONTINUAL:
        settings = ewc_settings(method)
        if settings and args.ewc_lambda is not None:
            settings["weight"] = args.ewc_lambda
        if settings and args.fisher_normalize is not None:
            settings["fisher"]["normalize"] = args.fisher_normalize
    if args.tables_only:
        write_tables(json.loads(out.read_text())["runs"], args.quick, side)
        return
    if not (data_root() / "ag_news").is_dir():
        sys.exit(f"shared data not found at {data_root()} (set TUNESMITH_DATA)")
    budget = Budget(args.quick, args.steps)
    runs_dir = Path(
        args.runs_dir
        or ROOT / "runs" / ("bench_continual_quick" if args.quick else "bench_continual")
    )
    ordered: list[dict] = []
    for seed in args.seeds:
        for method in [m for m in METHODS if m in (args.only or METHODS)]:
            result = run_one(method, seed, runs_dir, budget, args.keep_runs, side is None)
            ordered = save_run(out, result, budget, args.quick)
    write_tables(ordered, args.quick, side)


def save_run(out: Path, result: dict, budget: Budget, quick: bool) -> list[dict]:
    """Add one run to ``out`` under a file lock: several benchmark processes may share it (two
    single-thread processes use a 2-core machine better than one with two threads)."""
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        previous = json.loads(out.read_text())["runs"] if out.is_file() else []
        runs = {(r["method"], r["seed"]): r for r in previous}
        runs[(result["method"], result["seed"])] = result
        ordered = sorted(runs.values(), key=lambda r: (METHODS.index(r["method"]), r["seed"]))
        meta = {
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads per process",
            "torch": torch.__version__,
            "command": " ".join(["python benchmarks/continual/run.py", *sys.argv[1:]]),
            "steps_per_stage": budget.steps,
            "batch_size": BATCH,
            "max_length": MAX_LEN,
            "lr": LR,
            "test_cap": TEST_CAP,
            "ewc_lambda": CONTINUAL["ewc"]["ewc"]["weight"],
            "ewc_fisher_normalize": CONTINUAL["ewc"]["ewc"]["fisher"]["normalize"],
        }
        out.write_text(json.dumps({"meta": meta, "runs": ordered}, indent=2))
    return ordered


if __name__ == "__main__":
    main()

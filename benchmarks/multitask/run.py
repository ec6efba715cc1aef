"""Multi-task benchmark (issue 6): single-task vs T5 mixtures vs multi-task + per-task fine-tuning.

Embedded MiniLM with one classification head per task on SST-2 sentences (dev 872 / test 1,821),
TREC coarse (dev: 10% of train, test 500) and emotion (val 2,000 / test 2,000); max_length 64,
batch 32, lr 1e-4, seed 13. Every method gets the same N_TOTAL = 600 optimiser steps:

- single:        one single-task run per task, N_TOTAL / 3 = 200 steps each (best by dev accuracy)
- proportional:  multi-task, examples-proportional mixing, no cap (best by dev mean)
- temperature2:  multi-task, temperature mixing T = 2
- equal:         multi-task, equal mixing
- mt_then_ft:    temperature2's best/tasks/<name> fine-tuned 100 more steps per task at lr 5e-5
                 (600 + 300 steps in all; needs the temperature2 run dir)
- adapters_per_task: temperature2's mixture with one Houlsby adapter (reduction 4, lr 1e-3, the
                 adapter benchmark's setting) and one head per task on the frozen MiniLM
                 (``adapter: {..., per_task: true}``), N_TOTAL steps; records trainable params and
                 the best/ artefact's size (target: within 1.0 point of temperature2's mean)
- smollm2_t2t:   text-to-text (T5 style) on SmolLM2-135M-Instruct: "sst2 sentence: ..." ->
                 "positive", "trec question: ..." -> "location", "emotion sentence: ..." -> "joy";
                 temperature mixing T = 2, T2T_STEPS steps, batch 16, lower 20 of 30 blocks frozen;
                 accuracy by scoring each task's label words (dev before / after training, test
                 after; dev capped at T2T_DEV, test at T2T_TEST examples per task)

Dev is evaluated every 100 steps; accuracies are on the labelled test sets.

    python benchmarks/multitask/run.py                  # everything
    python benchmarks/multitask/run.py --only single equal
    python benchmarks/multitask/run.py --quick          # smoke test -> results_quick.json
    python benchmarks/multitask/run.py --tables-only    # rebuild results.md + README table

Writes results.json ({"runs": [...]}), results.md, and the table in the top-level README.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_data import DATA  # noqa: E402  (benchmarks/bench_data.py)

from tunesmith.config import parse_recipe
from tunesmith.paths import data_root
from tunesmith.report import replace_marked_section
from tunesmith.train.loop import train

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
METHODS = [
    "single",
    "proportional",
    "temperature2",
    "equal",
    "mt_then_ft",
    "smollm2_t2t",
    "adapters_per_task",
]
HEAD_METHODS = [*METHODS[:5], "adapters_per_task"]
PER_TASK_ADAPTER = {"type": "houlsby", "reduction_factor": 4, "per_task": True}
ADAPTER_LR, ADAPTER_TOLERANCE = 1e-3, 1.0
TASKS = ["sst2", "trec", "emotion"]
MIXING = {
    "proportional": {"strategy": "proportional", "cap": None},
    "temperature2": {"strategy": "temperature", "temperature": 2.0, "cap": None},
    "equal": {"strategy": "equal"},
}
N_TOTAL = 600
FT_STEPS, FT_LR = 100, 5e-5
EVAL_EVERY = 100
SEED, LR, BATCH, MAX_LEN = 13, 1e-4, 32, 64
TOLERANCE = 1.5  # points: multi-task within this of the single-task mean
T2T_STEPS, T2T_LR, T2T_BATCH, T2T_DEV, T2T_TEST = 200, 1e-4, 16, 50, 200
T2T_TEXT = {
    "sst2": {
        "prefix": "sst2",
        "fields": [["sentence", "text"]],
        "words": {"0": "negative", "1": "positive"},
    },
    "trec": {
        "prefix": "trec",
        "fields": [["question", "text"]],
        "words": {
            "ABBR": "abbreviation",
            "DESC": "description",
            "ENTY": "entity",
            "HUM": "human",
            "LOC": "location",
            "NUM": "number",
        },
    },
    "emotion": {"prefix": "emotion", "fields": [["sentence", "text"]]},  # labels are words
}


class Budget:
    """Step counts and data limits: the real benchmark or the --quick smoke test."""

    def __init__(self, quick: bool):
        self.quick = quick
        self.multi = 4 if quick else N_TOTAL
        self.single = 4 if quick else N_TOTAL // len(TASKS)
        self.ft = 4 if quick else FT_STEPS
        self.eval_every = 2 if quick else EVAL_EVERY
        self.limit = {"train": 64, "dev": 32, "test": 32} if quick else {}


def task_data(task: str, budget: Budget) -> dict:
    return {**DATA[task], "max_length": MAX_LEN, "limit": dict(budget.limit)}


def train_section(steps: int, budget: Budget) -> dict:
    return {
        "batch_size": BATCH,
        "max_steps": steps,
        "eval_every": budget.eval_every,
        "progress": False,
        "tensorboard": False,
        "precision": "fp32",  # pinned: comparable results (auto may pick bf16)
    }


def single_recipe(task: str, model: str, steps: int, lr: float, run_dir: Path, budget: Budget):
    return parse_recipe(
        {
            "model": model,
            "task": "sequence_classification",
            "output_dir": str(run_dir),
            "seed": SEED,
            "data": task_data(task, budget),
            "optim": {"lr": lr, "weight_decay": 0.01, "warmup_ratio": 0.06},
            "train": train_section(steps, budget),
        }
    )


def multi_recipe(method: str, run_dir: Path, budget: Budget):
    adapters = method == "adapters_per_task"  # temperature2's mixture, an adapter per task
    extra = {"adapter": PER_TASK_ADAPTER} if adapters else {}
    return parse_recipe(
        {
            **extra,
            "model": "minilm",
            "task": "multi_head",
            "output_dir": str(run_dir),
            "seed": SEED,
            "tasks": [
                {"name": t, "head": "sequence_classification", "data": task_data(t, budget)}
                for t in TASKS
            ],
            "mixing": MIXING["temperature2" if adapters else method],
            "optim": {
                "lr": ADAPTER_LR if adapters else LR,
                "weight_decay": 0.01,
                "warmup_ratio": 0.06,
            },
            "train": train_section(budget.multi, budget),
        }
    )


def t2t_recipe(run_dir: Path, budget: Budget):
    limit = {"dev": T2T_DEV, "test": T2T_TEST} if not budget.quick else dict(budget.limit)
    tasks = [
        {
            "name": t,
            "text": T2T_TEXT[t],
            "data": {**DATA[t], "max_length": MAX_LEN, "limit": limit, "template": "plain"},
        }
        for t in TASKS
    ]
    return parse_recipe(
        {
            "model": "smollm2",
            "task": "causal_lm",
            "output_dir": str(run_dir),
            "seed": SEED,
            "tasks": tasks,
            "mixing": MIXING["temperature2"],
            "transfer": {"freeze_layers": 20},
            "optim": {"lr": T2T_LR, "weight_decay": 0.0, "warmup_ratio": 0.06},
            "train": {
                **train_section(4 if budget.quick else T2T_STEPS, budget),
                "batch_size": T2T_BATCH,
                "eval_batch_size": 32,
                "eval_every": None,
                "eval_at_start": True,
            },
        }
    )


def run_t2t(runs_dir: Path, budget: Budget) -> dict:
    run_dir = runs_dir / "smollm2_t2t"
    summary, wall = timed_train(t2t_recipe(run_dir, budget), run_dir)
    per_task = {t: summary["test"][f"{t}/accuracy"] for t in TASKS}
    return finish(
        "smollm2_t2t",
        per_task,
        summary["steps"],
        wall,
        model="smollm2 (SmolLM2-135M-Instruct), text-to-text, label words scored",
        dev_before={t: round(summary["dev_at_start"][f"{t}/accuracy"], 4) for t in TASKS},
        dev_after={t: round(summary["dev"][f"{t}/accuracy"], 4) for t in TASKS},
        test_examples_per_task=T2T_TEST,
        mixing_rates={t: round(r, 4) for t, r in summary.get("mixing_rates", {}).items()},
        tokens_per_s=summary.get("tokens_per_s"),
    )


def timed_train(recipe, run_dir: Path) -> tuple[dict, float]:
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    summary = train(recipe, run_dir)
    return summary, time.perf_counter() - t0


def finish(method: str, per_task: dict, steps: int, wall: float, **extra) -> dict:
    result = {
        "method": method,
        "per_task": {t: round(a, 4) for t, a in per_task.items()},
        "mean_accuracy": round(sum(per_task.values()) / len(per_task), 4),
        "steps": steps,
        "wall_s": round(wall, 1),
        **extra,
    }
    print(json.dumps(result), flush=True)
    return result


def run_single(runs_dir: Path, budget: Budget, method: str = "single", base: Path | None = None):
    per_task, dev, steps, wall = {}, {}, 0, 0.0
    for task in TASKS:
        run_dir = runs_dir / method / task
        model = str(base / "best" / "tasks" / task) if base else "minilm"
        n, lr = (budget.ft, FT_LR) if base else (budget.single, LR)
        summary, w = timed_train(single_recipe(task, model, n, lr, run_dir, budget), run_dir)
        per_task[task] = summary["test"]["accuracy"]
        dev[task] = round(summary["dev"]["accuracy"], 4)
        steps += summary["steps"]
        wall += w
    return per_task, dev, steps, wall


def run_one(method: str, runs_dir: Path, budget: Budget, previous: dict) -> dict:
    if method == "smollm2_t2t":
        return run_t2t(runs_dir, budget)
    if method == "single":
        per_task, dev, steps, wall = run_single(runs_dir, budget)
        return finish(method, per_task, steps, wall, dev_per_task=dev, runs=len(TASKS))
    if method == "mt_then_ft":
        base = runs_dir / "temperature2"
        if not (base / "best" / "tasks").is_dir():
            sys.exit(f"mt_then_ft needs the temperature2 run at {base} (run it first)")
        per_task, dev, ft_steps, wall = run_single(runs_dir, budget, method, base)
        mt = previous.get("temperature2", {})
        mt_steps = mt.get("steps", budget.multi)
        return finish(
            method,
            per_task,
            mt_steps + ft_steps,
            wall + mt.get("wall_s", 0.0),
            dev_per_task=dev,
            multitask_steps=mt_steps,
            finetune_steps=ft_steps,
            finetune_lr=FT_LR,
            finetune_wall_s=round(wall, 1),
            note=f"temperature2 ({mt_steps} steps) + {ft_steps // len(TASKS)} fine-tuning steps "
            f"per task ({ft_steps} in all); wall_s includes the temperature2 run",
        )
    run_dir = runs_dir / method
    summary, wall = timed_train(multi_recipe(method, run_dir, budget), run_dir)
    per_task = {t: summary["test"][f"{t}/accuracy"] for t in TASKS}
    return finish(
        method,
        per_task,
        summary["steps"],
        wall,
        dev_mean=round(summary["dev"]["mean"], 4),
        dev_per_task={t: round(summary["dev"][f"{t}/accuracy"], 4) for t in TASKS},
        best_step=summary.get("best_step"),
        mixing_rates={t: round(r, 4) for t, r in summary.get("mixing_rates", {}).items()},
        trainable_params=summary.get("trainable_params"),
        total_params=summary.get("total_params"),
        **summary.get("per_task_adapters", {}),  # artefact_bytes, adapter_bytes, heads_bytes
    )


def verdicts(runs: list[dict]) -> list[str]:
    by = {r["method"]: r for r in runs}
    if "single" not in by:
        return []
    ref = 100 * by["single"]["mean_accuracy"]
    lines = []
    for m in ("proportional", "temperature2", "equal"):
        if m in by:
            d = 100 * by[m]["mean_accuracy"] - ref
            ok = "within" if d >= -TOLERANCE else "NOT within"
            lines.append(
                f"{m}: {d:+.2f} points vs the single-task mean ({ref:.2f}): "
                f"{ok} {TOLERANCE} points."
            )
    if "adapters_per_task" in by and "temperature2" in by:
        r, d = (
            by["adapters_per_task"],
            100 * (by["adapters_per_task"]["mean_accuracy"] - by["temperature2"]["mean_accuracy"]),
        )
        ok = "meets" if d >= -ADAPTER_TOLERANCE else "does NOT meet"
        lines.append(
            f"adapters_per_task: {d:+.2f} points vs temperature2 (per-task heads, same steps): "
            f"{ok} the target (at most {ADAPTER_TOLERANCE} point below); {r.get('trainable_params', 0):,} trainable of "
            f"{r.get('total_params', 0):,} parameters, best/ artefact "
            f"{r.get('artefact_bytes', 0) / 1e6:.1f} MB (no base weights)."
        )
    if "mt_then_ft" in by:
        d = 100 * by["mt_then_ft"]["mean_accuracy"] - ref
        ok = ">=" if d >= 0 else "<"
        lines.append(
            f"mt_then_ft: {d:+.2f} points vs single ({ok} single; "
            f"{by['mt_then_ft']['steps']} steps: {by['mt_then_ft'].get('note', '')})."
        )
    return lines


def table(runs: list[dict]) -> str:
    ref = next((r["mean_accuracy"] for r in runs if r["method"] == "single"), None)
    lines = [
        "| method | " + " | ".join(f"{t} test" for t in TASKS) + " | mean | vs single | steps "
        "| wall s |",
        "|---|" + "---|" * (len(TASKS) + 4),
    ]
    for r in runs:
        if r["method"] not in HEAD_METHODS:
            continue
        accs = " | ".join(f"{100 * r['per_task'][t]:.2f}" for t in TASKS)
        vs = (
            ""
            if ref is None or r["method"] == "single"
            else f"{100 * (r['mean_accuracy'] - ref):+.2f}"
        )
        lines.append(
            f"| {r['method']} | {accs} | {100 * r['mean_accuracy']:.2f} | {vs} | {r['steps']} "
            f"| {r['wall_s']:.0f} |"
        )
    v = verdicts(runs)
    return "\n".join(lines + ([""] + v if v else []) + t2t_table(runs))


def t2t_table(runs: list[dict]) -> list[str]:
    r = next((r for r in runs if r["method"] == "smollm2_t2t"), None)
    if r is None:
        return []
    lines = [
        "",
        f"SmolLM2-135M text-to-text on the same three tasks ({r['steps']} steps, batch "
        f"{T2T_BATCH}, temperature mixing T=2; accuracy = argmax over each task's label words; "
        f"dev {T2T_DEV} / test {r.get('test_examples_per_task', T2T_TEST)} examples per task):",
        "",
        "| SmolLM2 text-to-text | " + " | ".join(TASKS) + " | mean | wall s |",
        "|---|" + "---|" * (len(TASKS) + 2),
    ]
    for label, scores in (
        ("dev, before training", r["dev_before"]),
        ("dev, after", r["dev_after"]),
        ("test, after", r["per_task"]),
    ):
        mean = sum(scores.values()) / len(scores)
        cells = " | ".join(f"{100 * scores[t]:.2f}" for t in TASKS)
        wall = f"{r['wall_s']:.0f}" if label.startswith("test") else ""
        lines.append(f"| {label} | {cells} | {100 * mean:.2f} | {wall} |")
    return lines


def update_readme(text: str) -> None:
    replace_marked_section(ROOT / "README.md", "multitask-table", text)


def write_tables(ordered: list[dict], quick: bool = False) -> None:
    md = table(ordered)
    if quick:  # smoke test: never touch results.md or the README
        print(md)
        return
    (HERE / "results.md").write_text(md + "\n")
    update_readme(md)
    print(md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=METHODS)
    p.add_argument("--runs-dir", default=None, help="default runs/bench_multitask[_quick]")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 64 train / 32 eval examples per task, 4 steps per run; "
        "writes results_quick.json only",
    )
    p.add_argument(
        "--tables-only",
        action="store_true",
        help="rewrite results.md and the README table from results.json, train nothing",
    )
    args = p.parse_args()
    out = HERE / ("results_quick.json" if args.quick else "results.json")
    if args.tables_only:
        write_tables(json.loads(out.read_text())["runs"], args.quick)
        return
    if not (data_root() / "sst2_sentences").is_dir():
        sys.exit(f"shared data not found at {data_root()} (set TUNESMITH_DATA)")
    budget = Budget(args.quick)
    runs_dir = Path(
        args.runs_dir
        or ROOT / "runs" / ("bench_multitask_quick" if args.quick else "bench_multitask")
    )
    methods = [m for m in METHODS if m in (args.only or METHODS)]
    previous = json.loads(out.read_text())["runs"] if out.is_file() else []
    runs = {r["method"]: r for r in previous}
    ordered = [runs[m] for m in METHODS if m in runs]
    for method in methods:
        runs[method] = run_one(method, runs_dir, budget, runs)
        ordered = [runs[m] for m in METHODS if m in runs]
        meta = {
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
            "torch": torch.__version__,
            "command": "python benchmarks/multitask/run.py" + (" --quick" if args.quick else ""),
            "quick": args.quick,
        }
        out.write_text(json.dumps({"meta": meta, "runs": ordered}, indent=2))
    write_tables(ordered, args.quick)


if __name__ == "__main__":
    main()

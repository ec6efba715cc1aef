"""Transfer-learning benchmark (issue 2): does pretraining transfer, and how do the controls compare?

SST-2 sentences (train 6,920 / dev 872 / labelled test 1,821), same budget (3 epochs, batch 32)
and seed for: (a) MiniLM fully fine-tuned, (b) the same architecture randomly initialised,
(c) linear probe (head.pooling auto: MiniLM's mean pooling; ``linear_probe_pooler`` reads BERT's
untrained pooler instead), (d) gradual unfreezing + layer-wise LR decay. Plus a short SmolLM2
instruction tuning run on alpaca_2k with the lower layers frozen: held-out loss before/after, 3 generations.

    python benchmarks/transfer/run.py                 # everything (~25 min on 2 CPU cores)
    python benchmarks/transfer/run.py --only finetune linear_probe

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

from tunesmith.config import load_recipe
from tunesmith.paths import data_root
from tunesmith.predict import predict_texts
from tunesmith.report import replace_marked_section
from tunesmith.train.loop import train

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLASSIFIERS = [
    "finetune",
    "scratch",
    "linear_probe",
    "linear_probe_pooler",
    "gradual_unfreeze_llrd",
]
PROMPTS = [
    "Give three tips for staying healthy.",
    "Rewrite this sentence in the passive voice: The cat chased the mouse.",
    "What is the capital of France? Answer in one sentence.",
]


def run_one(method: str, runs_dir: Path, keep: bool = False) -> dict:
    recipe = load_recipe(HERE / "configs" / f"{method}.yaml")
    run_dir = runs_dir / method
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    summary = train(recipe, run_dir)
    wall = time.perf_counter() - t0
    result = {
        "method": method,
        "dataset": "sst2_sentences" if recipe.task == "sequence_classification" else "alpaca_2k",
        "model": recipe.model,
        "wall_s": round(wall, 1),
        "train_wall_s": summary["wall_s"],
        "steps": summary["steps"],
        "trainable_params": summary["trainable_params"],
        "total_params": summary["total_params"],
        "tokens_per_s": summary["tokens_per_s"],
    }
    if recipe.task == "sequence_classification":
        result |= {
            "test_accuracy": round(summary["test"]["accuracy"], 4),
            "dev_accuracy": round(summary["dev"]["accuracy"], 4),
            "best_step": summary["best_step"],
            "pooling": json.loads((run_dir / "best" / "tunesmith.json").read_text())["pooling"],
        }
    else:
        result |= {
            "eval_loss_before": round(summary["dev_at_start"]["loss"], 4),
            "eval_loss_after": round(summary["dev"]["loss"], 4),
            "ppl_before": round(summary["dev_at_start"]["perplexity"], 2),
            "ppl_after": round(summary["dev"]["perplexity"], 2),
            "samples": [
                {"prompt": p, "generated": g["generated"]}
                for p, g in zip(PROMPTS, predict_texts(run_dir, PROMPTS, 60), strict=True)
            ],
        }
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}), flush=True)
    if not keep:
        # resumable checkpoints: hundreds of MB per run; best/ stays (the distill benchmark's
        # teacher is the finetune run's)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    return result


def table(runs: list[dict]) -> str:
    lines = [
        "| method | head pooling | test acc | dev acc | trainable params | steps | train s "
        "| wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        if "test_accuracy" in r:
            pct = 100 * r["trainable_params"] / r["total_params"]
            lines.append(
                f"| {r['method']} | {r.get('pooling', 'pooler')} "
                f"| {100 * r['test_accuracy']:.2f} | "
                f"{100 * r['dev_accuracy']:.2f} | {r['trainable_params']:,} ({pct:.1f}%) "
                f"| {r['steps']} | {r['train_wall_s']:.0f} | {r['wall_s']:.0f} |"
            )
    for r in runs:
        if "eval_loss_before" in r:
            lines += [
                "",
                "| SmolLM2 SFT (alpaca_2k, 60 held-out) | loss before | loss after | "
                "ppl before | ppl after | steps | wall s |",
                "|---|---|---|---|---|---|---|",
                f"| lower 20/30 blocks + embeddings frozen | {r['eval_loss_before']:.3f} | "
                f"{r['eval_loss_after']:.3f} | {r['ppl_before']:.2f} | {r['ppl_after']:.2f} "
                f"| {r['steps']} | {r['wall_s']:.0f} |",
            ]
    return "\n".join(lines)


def update_readme(text: str) -> None:
    replace_marked_section(ROOT / "README.md", "transfer-table", text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=CLASSIFIERS + ["smollm2_sft"])
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "bench_transfer"))
    p.add_argument("--keep-runs", action="store_true", help="keep the runs' resumable checkpoints")
    p.add_argument(
        "--tables-only",
        action="store_true",
        help="rewrite results.md and the README table from results.json, train nothing",
    )
    args = p.parse_args()
    out = HERE / "results.json"
    if args.tables_only:
        write_tables(json.loads(out.read_text())["runs"])
        return
    if not (data_root() / "sst2_sentences").is_dir():
        sys.exit(f"shared data not found at {data_root()} (set TUNESMITH_DATA)")
    methods = args.only or CLASSIFIERS + ["smollm2_sft"]
    previous = json.loads(out.read_text())["runs"] if out.is_file() else []
    runs = {r["method"]: r for r in previous}
    for method in methods:
        runs[method] = run_one(method, Path(args.runs_dir), args.keep_runs)
        ordered = [runs[m] for m in CLASSIFIERS + ["smollm2_sft"] if m in runs]
        meta = {
            "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
            "torch": torch.__version__,
            "command": "python benchmarks/transfer/run.py",
        }
        out.write_text(json.dumps({"meta": meta, "runs": ordered}, indent=2))
    write_tables(ordered)


def write_tables(ordered: list[dict]) -> None:
    md = table(ordered)
    samples = [
        f"- **{s['prompt']}** → {s['generated']!r}" for r in ordered for s in r.get("samples", [])
    ]
    (HERE / "results.md").write_text(
        md + ("\n\nSmolLM2 samples after SFT:\n" + "\n".join(samples) if samples else "") + "\n"
    )
    update_readme(md)
    print(md)


if __name__ == "__main__":
    main()

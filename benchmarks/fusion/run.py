"""AdapterFusion benchmark (issue 16): SST-2 from 500 examples with adapters from other tasks.

Source adapters (Pfeiffer, frozen once trained) on emotion, AG News, TREC and SMS spam; target
SST-2 with a seeded sample of 500 training examples (dev 872 / test 1,821). Rows, each for every
seed in configs/fusion.yaml:

- single_adapter: a new adapter + head on the 500 examples (the paper's ST-A);
- full_ft:        full fine-tuning on the 500 examples;
- fusion:         AdapterFusion of the four source adapters + this seed's single_adapter, frozen;
                  only the fusion layers and a new head train (Pfeiffer et al. 2021);
- fusion_lr1e3:   fusion at the adapters' learning rate;
- fusion_reviews: fusion with a related source added: an adapter on ~500 binarised Amazon / Yelp /
                  app-store reviews (t0_p3_sample; the shared data's only sentiment besides SST-2);
- fusion_joint:   the four source adapters + a new target adapter trained with the fusion.

Target: fusion >= single_adapter + 2 points (test accuracy, mean over 3 seeds).

    python benchmarks/fusion/run.py                 # sources once, then every row x seed
    python benchmarks/fusion/run.py --only single_adapter fusion --seeds 13
    python benchmarks/fusion/run.py --quick         # wiring smoke test -> results_quick.json
    python benchmarks/fusion/run.py --tables-only   # rebuild the README table

Writes results.json ({"runs": [...]}: row, seed, acc, dev_acc, trainable_params, total_params,
steps, wall_s, and for fusion rows the mean attention per layer on dev) and the README table.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_data import DATA  # noqa: E402  (benchmarks/bench_data.py)

from tunesmith.config import parse_recipe  # noqa: E402
from tunesmith.paths import data_root  # noqa: E402
from tunesmith.report import replace_marked_section  # noqa: E402
from tunesmith.train.loop import train  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONFIG = yaml.safe_load((HERE / "configs" / "fusion.yaml").read_text())
ROWS = list(CONFIG["rows"])
TARGET_GAIN = 2.0  # points over single_adapter


class Budget:
    """The configured budget, or the --quick smoke test's (a few steps on a few examples)."""

    def __init__(self, quick: bool):
        self.quick = quick
        src, tgt = CONFIG["sources"], CONFIG["target"]
        self.source_steps = 3 if quick else src["steps"]
        self.source_eval = 3 if quick else src["eval_every"]
        self.target_examples = 32 if quick else tgt["train_examples"]
        self.target_steps = 3 if quick else tgt["steps"]
        self.target_eval = 3 if quick else tgt["eval_every"]
        self.limit = {"train": 64, "dev": 32, "test": 32} if quick else {}
        self.eval_limit = {"dev": 32, "test": 32} if quick else {}


def recipe(data: dict, run_dir: Path, seed: int, lr: float, steps: int, every: int, **extra):
    return parse_recipe(
        {
            "model": CONFIG["model"],
            "task": "sequence_classification",
            "output_dir": str(run_dir),
            "seed": seed,
            "data": {**data, "max_length": CONFIG["max_length"]},
            "optim": {"lr": lr, "weight_decay": 0.01, "warmup_ratio": 0.06},
            "train": {
                "batch_size": CONFIG["batch_size"],
                "max_steps": steps,
                "eval_every": every,
                "progress": False,
                "tensorboard": False,
                "precision": "fp32",  # pinned: comparable rows
            },
            **extra,
        }
    )


def timed(r, run_dir: Path) -> tuple[dict, float]:
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    summary = train(r, run_dir)
    return summary, time.perf_counter() - t0


REVIEWS = ("amazon_polarity", "yelp_review_full", "app_reviews")


def reviews_data(runs: Path) -> dict:
    """A sentiment source built from the review datasets in the shared T0/P3 sample
    (t0_p3_sample/mixture.jsonl, 200 rows each): Amazon polarity (Positive / Negative), Yelp and
    app-store stars binarised (1-2 negative, 4-5 positive, 3 dropped); the review text alone, its
    prompt template stripped. ~500 examples, written once as ``label text`` lines."""
    path = runs / "data" / "reviews.txt"
    if not path.is_file():
        lines = []
        for line in (data_root() / "t0_p3_sample" / "mixture.jsonl").read_text().splitlines():
            row = json.loads(line)
            label = _review_label(row["dataset"], row["completion"])
            if label is not None:
                text = " ".join(_review_text(row["dataset"], row["prompt"]).split())
                lines.append(f"{label} {text}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
    return {"train": {"path": str(path), "format": "label_text"}, "split": {"dev": 0.1}}


def _review_label(dataset: str, completion: str) -> str | None:
    if dataset not in REVIEWS:
        return None
    if dataset == "amazon_polarity":
        return {"Positive": "positive", "Negative": "negative"}.get(completion.strip())
    stars = completion.count("★") if dataset == "app_reviews" else int(completion.split()[0])
    return "negative" if stars <= 2 else "positive" if stars >= 4 else None


def _review_text(dataset: str, prompt: str) -> str:
    # amazon: "Title: ...\nReview: ...\nIs the review positive or negative?\n"
    if dataset == "amazon_polarity":
        title, _, rest = prompt.removeprefix("Title: ").partition("\nReview: ")
        return f"{title}. {rest.rsplit(chr(10) + 'Is the review', 1)[0]}"
    if dataset == "yelp_review_full":  # "Review text:\n...\n\nStars:\n"
        return prompt.removeprefix("Review text:\n").rsplit("\n\nStars:", 1)[0]
    return prompt.split('"', 1)[1].rsplit('"', 1)[0]  # app_reviews: the quoted review


def source_data(task: str, runs: Path) -> dict:
    return reviews_data(runs) if task == "reviews" else DATA[task]


def train_sources(runs: Path, budget: Budget) -> list[str]:
    """One adapter per source task and per related source (skipped when its run already
    finished); returns the run folders of ``sources.tasks`` (what ``fuse: [sources]`` means)."""
    src, out = CONFIG["sources"], []
    for task in src["tasks"] + src.get("related", []):
        run_dir = runs / "sources" / task
        if not (run_dir / "summary.json").is_file():
            data = {**source_data(task, runs), "limit": dict(budget.limit)}
            r = recipe(
                data,
                run_dir,
                src["seed"],
                src["lr"],
                budget.source_steps,
                budget.source_eval,
                adapter=CONFIG["adapter"],
            )
            summary, wall = timed(r, run_dir)
            print(json.dumps({"source": task, "dev": summary.get("dev"), "wall_s": round(wall)}))
        if task in src["tasks"]:
            out.append(str(run_dir))
    return out


def target_data(runs: Path, seed: int, budget: Budget) -> dict:
    """SST-2 with a seeded sample of the training sentences (written once per seed)."""
    tgt = CONFIG["target"]
    sample = runs / "data" / f"{tgt['task']}_{budget.target_examples}_seed{seed}.txt"
    if not sample.is_file():
        lines = (data_root() / DATA[tgt["task"]]["train"]["path"]).read_text().splitlines()
        lines = [x for x in lines if x.strip()]
        sample.parent.mkdir(parents=True, exist_ok=True)
        sample.write_text("\n".join(random.Random(seed).sample(lines, budget.target_examples)))
    data = {**DATA[tgt["task"]], "limit": dict(budget.eval_limit)}
    return {**data, "train": {**data["train"], "path": str(sample)}}


def adapter_section(row: str, seed: int, sources: list[str], runs: Path) -> dict | None:
    spec = CONFIG["rows"][row]
    if row == "full_ft":
        return None
    if "fuse" not in spec:
        return dict(CONFIG["adapter"])
    fused = []
    for part in spec["fuse"]:
        if part == "sources":
            fused += sources
        elif part.startswith("source:"):  # one related source, e.g. source:reviews
            fused.append(str(runs / "sources" / part.removeprefix("source:")))
        else:
            fused.append(str(runs / part / f"seed{seed}"))
    section = {"type": "fusion", "adapters": fused}
    if spec.get("target"):
        section["target"] = spec["target"]
    return section


def run_row(row: str, seed: int, sources: list[str], runs: Path, budget: Budget) -> dict:
    section = adapter_section(row, seed, sources, runs)
    for path in (section or {}).get("adapters", []):
        if not Path(path).is_dir():
            sys.exit(f"{row} fuses {path}, which has not been trained (run its row first)")
    run_dir = runs / row / f"seed{seed}"
    extra = {"adapter": section} if section else {}
    r = recipe(
        target_data(runs, seed, budget),
        run_dir,
        seed,
        CONFIG["rows"][row]["lr"],
        budget.target_steps,
        budget.target_eval,
        **extra,
    )
    summary, wall = timed(r, run_dir)
    result = {
        "row": row,
        "seed": seed,
        "acc": round(summary["test"]["accuracy"], 4),
        "dev_acc": round(summary["dev"]["accuracy"], 4),
        "trainable_params": summary["trainable_params"],
        "total_params": summary["total_params"],
        "steps": summary["steps"],
        "train_examples": summary["train_examples"],
        "wall_s": round(wall, 1),
    }
    if "fusion" in summary:
        result["fusion"] = summary["fusion"]
    print(json.dumps(result), flush=True)
    return result


def table(runs: list[dict]) -> str:
    lines = [
        "| row | test acc (mean ± sd) | seeds | trainable params | wall s |",
        "|---|---|---|---|---|",
    ]
    means = {}
    for row in ROWS:
        rs = [r for r in runs if r["row"] == row]
        if not rs:
            continue
        accs = [100 * r["acc"] for r in rs]
        means[row] = statistics.mean(accs)
        sd = statistics.stdev(accs) if len(accs) > 1 else 0.0
        lines.append(
            f"| {row} | {means[row]:.2f} ± {sd:.2f} | {len(rs)} | "
            f"{rs[0]['trainable_params']:,} | {statistics.mean(r['wall_s'] for r in rs):.0f} |"
        )
    fused = [row for row in means if row.startswith("fusion")]
    if fused and "single_adapter" in means:
        lines.append("")
    for row in fused if "single_adapter" in means else []:
        gain = means[row] - means["single_adapter"]
        ok = "meets" if gain >= TARGET_GAIN else "does NOT meet"
        seeds = sum(r["row"] == row for r in runs)
        lines.append(
            f"- {row} vs single_adapter: {gain:+.2f} points over {seeds} seed(s) ({ok} the "
            f"+{TARGET_GAIN} target{'' if seeds >= 3 else '; the target asks for 3 seeds'})."
        )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=ROWS)
    p.add_argument("--seeds", nargs="+", type=int)
    p.add_argument("--runs-dir", default=None, help="default runs/bench_fusion[_quick]")
    p.add_argument("--quick", action="store_true", help="smoke test: 3 steps per run, one seed")
    p.add_argument("--tables-only", action="store_true", help="rebuild the README table")
    args = p.parse_args()
    out = HERE / ("results_quick.json" if args.quick else "results.json")
    if args.tables_only:
        md = table(json.loads(out.read_text())["runs"])
        replace_marked_section(HERE / "README.md", "fusion-table", md)
        replace_marked_section(ROOT / "README.md", "fusion-table", md)
        print(md)
        return
    if not (data_root() / "sst2_sentences").is_dir():
        sys.exit(f"shared data not found at {data_root()} (set TUNESMITH_DATA)")
    budget = Budget(args.quick)
    runs_dir = Path(
        args.runs_dir or ROOT / "runs" / ("bench_fusion_quick" if args.quick else "bench_fusion")
    )
    seeds = args.seeds or (CONFIG["seeds"][:1] if args.quick else CONFIG["seeds"])
    rows = [r for r in ROWS if r in (args.only or ROWS)]
    previous = json.loads(out.read_text())["runs"] if out.is_file() else []
    results = {(r["row"], r["seed"]): r for r in previous}
    sources = train_sources(runs_dir, budget)
    for seed in seeds:
        for row in rows:
            results[row, seed] = run_row(row, seed, sources, runs_dir, budget)
            ordered = sorted(results.values(), key=lambda r: (ROWS.index(r["row"]), r["seed"]))
            meta = {
                "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, "
                f"{torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}",
                "torch": torch.__version__,
                "command": "python benchmarks/fusion/run.py" + (" --quick" if args.quick else ""),
                "quick": args.quick,
                "config": CONFIG,
            }
            out.write_text(json.dumps({"meta": meta, "runs": ordered}, indent=2) + "\n")
    md = table(sorted(results.values(), key=lambda r: (ROWS.index(r["row"]), r["seed"])))
    if not args.quick:
        replace_marked_section(HERE / "README.md", "fusion-table", md)
        replace_marked_section(ROOT / "README.md", "fusion-table", md)
    print(md)


if __name__ == "__main__":
    main()

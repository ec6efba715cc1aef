"""Distillation benchmark (issue 4): how much of a fine-tuned teacher does a half-depth student keep?

SST-2 sentences (train 6,920 / dev 872 / labelled test 1,821). Teacher: the embedded MiniLM
(6 blocks) fine-tuned with benchmarks/transfer/configs/finetune.yaml (3 epochs, batch 32, lr 1e-4);
the transfer benchmark's run (runs/bench_transfer/finetune) is reused when it finished with that
recipe, else the teacher is trained here. Students: 3 blocks copied from the teacher (every other
one, DistilBERT-style) with its embeddings and head, same budget and seed (13):
hard labels only; Hinton KD at T=2 and T=4 (alpha 0.5, cached teacher logits); KD T=2 + hidden-state
MSE; KD T=2 with the live teacher (what the cache saves). Test accuracy, % of the teacher,
parameters, inference examples/s (all models timed in one process, see speed.py), training time.
LM: SmolLM2-135M-Instruct (30 blocks) -> a 15-block student on alpaca_2k, 30 steps of token-level KD
(forward KL on the teacher's cached top-32 log-probs) vs SFT only: held-out loss before/after, samples.

    python benchmarks/distill/run.py                        # SST-2 + LM (~1.5-2 h, 2 CPU cores)
    python benchmarks/distill/run.py --datasets sst2 trec   # also TREC coarse (teacher trained here)
    python benchmarks/distill/run.py --only student_kd_T4   # rerun one; speeds are re-measured
    python benchmarks/distill/run.py --quick                # smoke test: tiny data, 3 steps

Writes results.json ({"runs": [...]}), results.md and the README table (--quick: only
results_quick.json / results_quick.md, runs under runs/bench_distill_quick).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import speed
import tables
import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import set_seed

from tunesmith.config import Recipe, check_files, dump_recipe, load_recipe, parse_recipe
from tunesmith.data.collate import Collator
from tunesmith.data.pipeline import build_datasets, load_raw_splits
from tunesmith.distill import TeacherCache, load_teacher
from tunesmith.models import load_tokenizer
from tunesmith.paths import data_root
from tunesmith.predict import predict_texts
from tunesmith.train.evaluation import evaluate
from tunesmith.train.loop import train

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONFIGS = HERE / "configs"
TEACHER_RECIPE = ROOT / "benchmarks" / "transfer" / "configs" / "finetune.yaml"
TRANSFER_TEACHER = ROOT / "runs" / "bench_transfer" / "finetune"
STUDENTS = tables.CLASSIFIER_METHODS[1:]
PROMPTS = ["Give three tips for staying healthy.", "What is the capital of France?"]
DATASETS = {  # --datasets name -> (results name, data section; None = the configs' own, SST-2)
    "sst2": ("sst2_sentences", None),
    "trec": (
        "trec_coarse",
        {  # as recipes/trec_coarse_minilm.yaml; labels fixed so tiny --quick slices agree
            "train": {"path": "trec/train.txt", "format": "label_text", "label_sep": ":"}
            | {"encoding": "latin-1"},
            "test": {"path": "trec/test.txt", "format": "label_text", "label_sep": ":"},
            "split": {"dev": 0.1},
            "labels": ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"],
            "max_length": 128,
        },
    ),
}
QUICK_CLS = ["data.limit={train: 64, dev: 32, test: 32}", "train.max_steps=3"]
QUICK_LM = [  # no warmup: the one step must move the weights
    "data.limit={train: 8, dev: 4}",
    "train.max_steps=1",
    "train.eval_every=1",
    "optim.warmup_steps=0",
]


class Store:
    """results.json, rewritten after every run so a killed benchmark keeps what finished."""

    def __init__(self, path: Path, meta: dict):
        self.path, self.meta = path, meta
        previous = json.loads(path.read_text())["runs"] if path.is_file() else []
        self.runs = {(r["dataset"], r["method"]): r for r in previous if "variant" not in r}
        self.lm17 = [r for r in previous if "variant" in r]  # lm_kd.py's rows, kept as they are

    def put(self, result: dict) -> None:
        self.runs[(result["dataset"], result["method"])] = result
        self.save()

    def ordered(self) -> list[dict]:
        order = tables.CLASSIFIER_METHODS + tables.LM_METHODS
        datasets = [name for name, _ in DATASETS.values()] + ["alpaca_2k"]
        runs = sorted(
            self.runs.values(),
            key=lambda r: (datasets.index(r["dataset"]), order.index(r["method"])),
        )
        tables.derive(runs)
        return runs

    def save(self) -> None:
        runs = self.ordered()
        body = {"meta": self.meta, "checks": tables.checks(runs), "runs": runs + self.lm17}
        self.path.write_text(json.dumps(body, indent=2))


def make_recipe(path: Path, data: dict | None = None, overrides: list[str] = ()) -> Recipe:
    """A config file's recipe, its data section optionally swapped, overrides applied."""
    raw = yaml.safe_load(path.read_text())
    if data is not None:
        raw["data"] = data
    recipe = parse_recipe(raw, list(overrides))
    check_files(recipe)
    return recipe


def loss_text(recipe: Recipe) -> str:
    """``0.5 CE + 0.5 kd(T=2)``: the run's loss, for the tables."""
    ce = "CE" if recipe.task_weight == 1.0 else f"{recipe.task_weight:g} CE"
    parts = [ce]
    for o in recipe.objectives:
        numbers = {k: v for k, v in o.params.items() if isinstance(v, int | float)}
        p = ", ".join(f"{'T' if k == 'temperature' else k}={v:g}" for k, v in numbers.items())
        parts.append(f"{o.weight:g} {o.name}" + (f"({p})" if p else ""))
    return " + ".join(parts)


def train_run(recipe: Recipe, run_dir: Path) -> tuple[dict, float]:
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    summary = train(recipe, run_dir)
    return summary, round(time.perf_counter() - t0, 1)


def rel(path: Path) -> str:
    """A run dir as stored in results.json: relative to the repository when inside it."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def finished(run_dir: Path) -> bool:
    summary = run_dir / "summary.json"
    return (run_dir / "best" / "config.json").is_file() and summary.is_file()


def same_recipe(run_dir: Path, recipe: Recipe) -> bool:
    """The run was trained with ``recipe`` (keys added to tunesmith since take their defaults)."""
    saved = load_recipe(run_dir / "config.yaml", check_paths=False)
    return dump_recipe(saved) == dump_recipe(recipe)


def classifier_result(method: str, dataset: str, recipe: Recipe, run_dir: Path, summary: dict):
    return {
        "method": method,
        "dataset": dataset,
        "accuracy": round(summary["test"]["accuracy"], 4),
        "dev_accuracy": round(summary["dev"]["accuracy"], 4),
        "pct_of_teacher": None,
        "params": summary["total_params"],
        "examples_per_s": None,
        "speedup_vs_teacher": None,
        "train_wall_s": summary["wall_s"],
        "cached": bool(recipe.distill and recipe.distill.cache),
        "loss": loss_text(recipe),
        "steps": summary["steps"],
        "best_step": summary["best_step"],
        "run_dir": rel(run_dir),
    }


def ensure_teacher(key: str, args, part: Path) -> tuple[dict, Path, Recipe]:
    """The dataset's fine-tuned teacher in ``part/teacher``: kept when it is a finished run of the
    teacher recipe, else copied from ``--teacher`` / the transfer benchmark's run (so rerunning
    that benchmark cannot pull the teacher from under this one), else trained."""
    dataset, data = DATASETS[key]
    recipe = make_recipe(TEACHER_RECIPE, data, QUICK_CLS if args.quick else [])
    run_dir = part / "teacher"
    if args.teacher and key == "sst2":
        if not finished(Path(args.teacher)):
            sys.exit(
                f"--teacher {args.teacher}: not a finished tunesmith run (best/, summary.json)"
            )
        copy_run(Path(args.teacher), run_dir)
    elif not (finished(run_dir) and same_recipe(run_dir, recipe)):
        source = TRANSFER_TEACHER if key == "sst2" and not args.quick else None
        if source and finished(source) and same_recipe(source, recipe):
            copy_run(source, run_dir)
    if finished(run_dir):
        summary, wall = json.loads((run_dir / "summary.json").read_text()), None
        print(f"teacher for {dataset}: {run_dir} (not retrained)", flush=True)
    else:
        summary, wall = train_run(recipe, run_dir)
    result = classifier_result("teacher", dataset, recipe, run_dir, summary)
    origin = run_dir / "COPIED_FROM"
    if origin.is_file():
        result["copied_from"] = origin.read_text().strip()
    return result | {"wall_s": wall}, run_dir.resolve(), recipe


def copy_run(source: Path, dest: Path) -> None:
    """A finished run's model, recipe and summary (not its resumable checkpoints)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("checkpoints", "tensorboard"))
    (dest / "COPIED_FROM").write_text(rel(source) + "\n")


def build_cache(recipe: Recipe) -> tuple[float, bool]:
    """Run the teacher over the train set into the recipe's cache dir, as the loop would.

    Done here, before training, to time it apart from the training loop. Returns (seconds, reused).
    """
    tokenizer = load_tokenizer(recipe.model_source)
    set_seed(recipe.seed)
    data = build_datasets(recipe, tokenizer)
    teacher = load_teacher(recipe.distill.teacher, recipe.task)
    teacher.to("cuda" if torch.cuda.is_available() else "cpu")
    top_k = recipe.distill.top_k if recipe.task == "causal_lm" else None
    t0 = time.perf_counter()
    cache = TeacherCache.build(
        Path(recipe.distill.cache_dir), teacher, data.train, task=recipe.task, top_k=top_k
    )
    return round(time.perf_counter() - t0, 1), cache.reused


def train_student(recipe: Recipe, run_dir: Path) -> tuple[dict, dict]:
    """Train; (summary, extra fields): total wall time and, when cached, the cache's build time."""
    extra: dict = {}
    if recipe.distill.cache:
        root = Path(recipe.distill.cache_dir)
        build_s, reused = build_cache(recipe)
        before = sorted(root.iterdir())
        extra = {"cache": "reused" if reused else "computed", "cache_build_s": build_s}
    summary, extra["wall_s"] = train_run(recipe, run_dir)
    if recipe.distill.cache and sorted(root.iterdir()) != before:  # the loop built another key
        extra |= {"cache": "computed in the run (inside wall_s)", "cache_build_s": None}
    return summary, extra


def classifier_part(key: str, args, runs_dir: Path, store: Store) -> None:
    dataset, data = DATASETS[key]
    part = runs_dir / key
    teacher, teacher_dir, teacher_recipe = ensure_teacher(key, args, part)
    store.put(teacher)
    over = (QUICK_CLS if args.quick else []) + [
        f"distill.teacher={teacher_dir}",
        f"distill.cache_dir={part / 'teacher_cache'}",
    ]
    recipes = {m: make_recipe(CONFIGS / f"{m}.yaml", data, over) for m in selected(args, STUDENTS)}
    if any(r.distill.cache for r in recipes.values()):
        shutil.rmtree(part / "teacher_cache", ignore_errors=True)  # time a cold build
    for m, recipe in recipes.items():
        summary, extra = train_student(recipe, part / m)
        store.put(classifier_result(m, dataset, recipe, part / m, summary) | extra)
    measure_classifiers(dataset, teacher_recipe, store)


def measure_classifiers(dataset: str, recipe: Recipe, store: Store) -> None:
    """Time every finished model of ``dataset`` on its test sentences (the recipe's test split)."""
    runs = [r for (ds, _), r in store.runs.items() if ds == dataset]
    dirs = {r["method"]: ROOT / r["run_dir"] / "best" for r in runs}
    dirs = {m: d for m, d in dirs.items() if (d / "config.json").is_file()}
    test = load_raw_splits(recipe)["test"]
    texts = [ex[recipe.data.text_key] for ex in test]
    labels = [ex[recipe.data.label_key] for ex in test]
    print(f"timing {sorted(dirs)} on {len(texts)} {dataset} test sentences", flush=True)
    found = speed.classification_speeds(dirs, texts, labels, recipe.data.max_length)
    for method, values in found.items():
        store.runs[(dataset, method)].update(values)
    store.save()


def lm_part(args, runs_dir: Path, store: Store) -> None:
    part = runs_dir / "alpaca_2k"
    over = (QUICK_LM if args.quick else []) + [f"distill.cache_dir={part / 'teacher_cache'}"]
    recipes = {m: make_recipe(CONFIGS / f"{m}.yaml", None, over) for m in tables.LM_METHODS}
    for m in selected(args, tables.LM_METHODS):
        recipe = recipes[m]
        if recipe.distill.cache:
            shutil.rmtree(part / "teacher_cache", ignore_errors=True)
        summary, extra = train_student(recipe, part / m)
        samples = predict_texts(part / m, PROMPTS, 40)
        store.put(
            {
                "method": m,
                "dataset": "alpaca_2k",
                "accuracy": None,
                "eval_loss_before": round(summary["dev_at_start"]["loss"], 4),
                "eval_loss_after": round(summary["dev"]["loss"], 4),
                "ppl_before": round(summary["dev_at_start"]["perplexity"], 2),
                "ppl_after": round(summary["dev"]["perplexity"], 2),
                "params": summary["total_params"],
                "examples_per_s": None,
                "train_wall_s": summary["wall_s"],
                "cached": bool(recipe.distill.cache),
                "loss": loss_text(recipe),
                "steps": summary["steps"],
                "run_dir": rel(part / m),
                "samples": [
                    {"prompt": p, "generated": g["generated"]}
                    for p, g in zip(PROMPTS, samples, strict=True)
                ],
            }
            | extra
        )
    measure_lm(recipes["lm_student_sft"], part, store)


def measure_lm(recipe: Recipe, part: Path, store: Store) -> None:
    """The teacher's held-out loss, and forward examples/s of teacher and students (batch 8)."""
    tokenizer = load_tokenizer("smollm2")
    set_seed(recipe.seed)
    dev = build_datasets(recipe, tokenizer).dev
    teacher = speed.load("smollm2", "causal_lm")
    acc = Accelerator(cpu=True)
    metrics = evaluate(teacher, dev, Collator(tokenizer.pad_token_id), "causal_lm", None, acc, 8)
    models = {"teacher": teacher} | {
        m: speed.load(part / m / "best", "causal_lm")
        for m in tables.LM_METHODS
        if ("alpaca_2k", m) in store.runs and finished(part / m)
    }
    print(f"timing {sorted(models)} on {len(dev)} held-out alpaca_2k examples", flush=True)
    found = speed.throughput(models, speed.lm_batches(dev, tokenizer.pad_token_id, 8))
    loss = round(metrics["loss"], 4)
    store.runs[("alpaca_2k", "teacher")] = {
        "method": "teacher",
        "dataset": "alpaca_2k",
        "model": "smollm2 (embedded SmolLM2-135M-Instruct, not trained here)",
        "accuracy": None,
        "eval_loss_before": loss,
        "eval_loss_after": loss,
        "ppl_after": round(metrics["perplexity"], 2),
        "train_wall_s": None,
        "cached": False,
        "loss": "–",
    }
    for method, values in found.items():
        store.runs[("alpaca_2k", method)].update(values | {"eval_examples": len(dev)})
    store.save()


def selected(args, methods: list[str]) -> list[str]:
    return [m for m in methods if not args.only or m in args.only]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=["sst2"])
    p.add_argument("--lm", action=argparse.BooleanOptionalAction, default=True, help="LM part")
    p.add_argument("--only", nargs="+", choices=STUDENTS + tables.LM_METHODS)
    p.add_argument("--teacher", help="SST-2 teacher run dir to use as is (default: see above)")
    p.add_argument("--quick", action="store_true", help="smoke test (tiny data, few steps)")
    p.add_argument("--runs-dir", help="default runs/bench_distill (quick: bench_distill_quick)")
    p.add_argument("--tables-only", action="store_true", help="rewrite the tables, train nothing")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    suffix = "_quick" if args.quick else ""
    out, md = HERE / f"results{suffix}.json", HERE / f"results{suffix}.md"
    readme = None if args.quick else ROOT / "README.md"
    command = "python benchmarks/distill/run.py " + " ".join(sys.argv[1:])
    meta = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "command": command.strip(),
        "quick": args.quick,
    }
    store = Store(out, meta)
    if not args.tables_only:
        if not (data_root() / "sst2_sentences").is_dir():
            sys.exit(f"shared data not found at {data_root()} (set TUNESMITH_DATA)")
        runs_dir = Path(args.runs_dir or ROOT / "runs" / f"bench_distill{suffix}").resolve()
        for key in args.datasets if selected(args, STUDENTS) else []:
            classifier_part(key, args, runs_dir, store)
        if args.lm and selected(args, tables.LM_METHODS):
            lm_part(args, runs_dir, store)
    runs = store.ordered()
    if not runs:
        sys.exit(f"no results in {out}: run the benchmark first")
    tables.write_tables(runs, tables.checks(runs), md, readme)


if __name__ == "__main__":
    main()

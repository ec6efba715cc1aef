"""LLM continual instruction tuning (issue 16, item 4): SST-2 -> TREC -> emotion as label words.

SmolLM2-135M-Instruct (embedded ``smollm2``) with one LoRA (r 8 on q, k, v, o) learns three
classification tasks written as text, one after another (T5-style prompts, plain template:
``"sst2 sentence: <text>\\n"`` -> ``"positive"``; ``"trec question: <q>\\n"`` -> ``"location"``;
``"emotion tweet: <text>\\n"`` -> ``"sadness"``). After every stage each task's test examples are
scored by ranking its label words (``continual.metric: accuracy``) and a fixed general-capability
probe is measured: perplexity on 64 alpaca_2k instructions (chat template) the sequence never
trains on (``continual.probe``). Methods: naive, olora, ewc, replay, ewc_replay, lwf; one seed; ``train.precision:
auto`` (bf16 where the device has it).

    python benchmarks/continual/lm_sequence.py                       # all four methods
    python benchmarks/continual/lm_sequence.py --only naive olora    # some; rows merge by method
    python benchmarks/continual/lm_sequence.py --quick --only naive  # wiring check (2 steps)
    # two single-thread processes, each with its own run folder (a killed sequence resumes):
    python benchmarks/continual/lm_sequence.py --only naive ewc --runs-dir runs/lmseq_a &
    python benchmarks/continual/lm_sequence.py --only olora replay --runs-dir runs/lmseq_b

Writes results_lm_sequence.json (``{"runs": [...]}``: method, acc, bwt, old-task drops, probe
perplexity initial / final / drift, wall_s, matrix) and results_lm_sequence.md (the table and the
target check: the best method's mean old-task accuracy drop and probe drift each at most half of
naive's); --quick writes results_lm_sequence_quick.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_data import DATA, LABEL_WORDS  # noqa: E402  (benchmarks/bench_data.py)

from tunesmith.config import parse_recipe  # noqa: E402
from tunesmith.configschema import deep_merge  # noqa: E402
from tunesmith.continual import run_sequence  # noqa: E402
from tunesmith.continual.config import ContinualConfig, Stage  # noqa: E402
from tunesmith.continual.data import write_jsonl  # noqa: E402
from tunesmith.data.pipeline import load_raw_splits  # noqa: E402
from tunesmith.data.textformat import TextFormat  # noqa: E402
from tunesmith.paths import data_root  # noqa: E402
from tunesmith.report import replace_marked_section  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
METHODS = {  # method -> its continual: section
    "naive": {},
    "olora": {"olora": {"weight": 0.5}},
    "ewc": {"ewc": {"weight": 0.5, "fisher": {"kind": "empirical", "max_examples": 256}}},
    "replay": {"replay": {"capacity": 1000, "ratio": 0.25}},
    # added after the first four: replay alone kept the most of the old tasks, EWC the most of
    # the probe; both at once (replay at ratio 0.5), and LwF (the old model's outputs on new data)
    "ewc_replay": {
        "ewc": {"weight": 0.5, "fisher": {"kind": "empirical", "max_examples": 256}},
        "replay": {"capacity": 1000, "ratio": 0.5},
    },
    "lwf": {"lwf": {"weight": 1.0, "temperature": 1.0}},
}
TASKS = {  # task -> (T5-style text format, max_length)
    "sst2": TextFormat("sst2", (("sentence", "text"),), words=LABEL_WORDS["sst2"]),
    "trec": TextFormat("trec", (("question", "text"),), words=LABEL_WORDS["trec"]),
    "emotion": TextFormat("emotion", (("tweet", "text"),)),
}
STEPS, BATCH, LR, MAX_LEN, SEED = 60, 8, 3e-4, 80, 13
# Scoring dominates the time: a row ranks 2 + 6 + 6 words for each test example (one forward per
# prompt + word), 4 rows per sequence. Estimated on 2 idle cores in bf16 (~1,400 forward tokens/s,
# ~550 training tokens/s: benchmarks/scale/README.md): ~3.5 min scoring at 120 test examples per
# task, ~2 min for 3 x 60 steps, ~1 min loading / probe / Fisher: ~6 min a method.
TEST_CAP, DEV_CAP, PROBE = 120, 32, 64
PROBE_DATA = {  # alpaca_2k, never trained on: its first 64 instructions, chat template
    "train": {"path": "alpaca_2k/alpaca_small.json", "format": "json"},
    "limit": {"train": PROBE},
    "template": "chat",
    "max_length": 256,
}


def prepare(root: Path) -> Path:
    """``root/<task>/{train,dev?,test}.jsonl``: each task's records as ``{"instruction": source,
    "output": label word}``, read with the library's readers (the shared ``DATA`` sections)."""
    for name, fmt in TASKS.items():
        recipe = parse_recipe(
            {
                "model": "smollm2",
                "task": "sequence_classification",
                "seed": SEED,
                "data": DATA[name],
            }
        )
        for split, records in load_raw_splits(recipe).items():
            pairs = fmt.to_pairs(records, "instruction", "output")
            write_jsonl(root / name / f"{split}.jsonl", pairs)
    return root


def stages(data: Path, steps: int, quick: bool, test_cap: int = TEST_CAP) -> list[Stage]:
    base = {
        "model": "smollm2",
        "task": "causal_lm",
        "seed": SEED,
        "adapter": {"type": "lora", "r": 8, "alpha": 16, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]},
        "optim": {"lr": LR, "weight_decay": 0.0, "warmup_steps": 0},
        "train": {
            "batch_size": BATCH,
            "eval_batch_size": 32,
            "max_steps": steps,
            "precision": "auto",
            "progress": False,
            "tensorboard": False,
        },
    }  # fmt: skip
    caps = {"train": 64, "dev": 4, "test": 8} if quick else {"dev": DEV_CAP, "test": test_cap}
    out = []
    for name in TASKS:
        section = {  # every task has train / dev / test (TREC's dev carved by prepare)
            "root": str(data),
            **{
                s: {"path": f"{name}/{s}.jsonl", "format": "jsonl"}
                for s in ("train", "dev", "test")
            },
            "limit": caps,
            "template": "plain",
            "max_length": MAX_LEN,
        }
        out.append(Stage(name, parse_recipe(deep_merge(base, {"data": section}))))
    return out


def continual(method: str, quick: bool) -> ContinualConfig:
    probe = dict(PROBE_DATA, root=str(data_root()), limit={"train": 4 if quick else PROBE})
    return ContinualConfig.parse(
        {"method": method, "heads": "shared", "metric": "accuracy", "probe": probe}
        | METHODS[method]
    )


def row(method: str, report: dict) -> dict:
    R, probe = report["matrix"], report["probe"]
    T = len(R)
    drops = {report["tasks"][j]: round(R[j][j] - R[T - 1][j], 4) for j in range(T - 1)}
    return {
        "method": method,
        "settings": METHODS[method],
        "acc": report["acc"],
        "bwt": report["bwt"],
        "old_task_drop": drops,
        "mean_old_task_drop": round(sum(drops.values()) / len(drops), 4),
        "final_accuracy": dict(zip(report["tasks"], R[-1], strict=True)),
        "probe_ppl_initial": probe["initial"],
        "probe_ppl_final": probe["after_stage"][-1],
        "probe_drift": probe["final_drift"],
        "probe_per_stage": probe["after_stage"],
        "initial": report["initial"],
        "matrix": R,
        "label_words": report["label_words"],
        "wall_s": report.get("wall_s"),
    }


def table(runs: list[dict], steps: int, quick: bool = False, test_cap: int = TEST_CAP) -> str:
    test, probe = (8, 4) if quick else (test_cap, PROBE)
    lines = [
        f"SmolLM2-135M-Instruct + LoRA (r 8, q/k/v/o), SST-2 -> TREC -> emotion as label words, "
        f"{steps} steps per stage (batch {BATCH}, lr {LR:g}, max_length {MAX_LEN}), seed {SEED}; "
        f"test sets capped at {test}; probe: alpaca_2k perplexity ({probe} instructions, "
        "chat template). Old-task drop: accuracy just after learning a task minus after the last "
        "stage (mean over SST-2 and TREC).",
        "",
        "| method | ACC | BWT | sst2 drop | trec drop | mean drop | probe ppl initial "
        "| final | drift | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        d = r["old_task_drop"]
        lines.append(
            f"| {r['method']} | {r['acc']:.4f} | {r['bwt']:+.4f} | {d['sst2']:+.4f} "
            f"| {d['trec']:+.4f} | {r['mean_old_task_drop']:+.4f} | {r['probe_ppl_initial']:.3f} "
            f"| {r['probe_ppl_final']:.3f} | {r['probe_drift']:+.3f} | {r['wall_s'] or 0:.0f} |"
        )
    return "\n".join(lines) + "\n\n" + target(runs) + "\n"


def target(runs: list[dict]) -> str:
    """The issue's target: the best method's old-task accuracy drop and probe drift each at most
    half of naive's (best = the method meeting most of the two, then the smallest drop)."""
    by = {r["method"]: r for r in runs}
    if "naive" not in by or len(by) < 2:
        return "Target check: needs naive and at least one other method."
    base = by["naive"]

    def halves(r):
        drop = r["mean_old_task_drop"] <= 0.5 * max(base["mean_old_task_drop"], 0.0)
        drift = r["probe_drift"] <= 0.5 * max(base["probe_drift"], 0.0)
        return drop, drift

    others = [r for m, r in by.items() if m != "naive"]
    best = max(others, key=lambda r: (sum(halves(r)), -r["mean_old_task_drop"]))
    drop, drift = halves(best)
    verdict = "met" if drop and drift else "NOT met"
    if base["mean_old_task_drop"] <= 0 or base["probe_drift"] <= 0:
        verdict += " (vacuous: naive lost nothing to halve)"
    return (
        f"Target (best method's old-task drop and probe drift each <= half of naive's): **{verdict}** "
        f"- best {best['method']}: drop {best['mean_old_task_drop']:+.4f} vs naive "
        f"{base['mean_old_task_drop']:+.4f} ({'ok' if drop else 'no'}), drift "
        f"{best['probe_drift']:+.3f} vs naive {base['probe_drift']:+.3f} ({'ok' if drift else 'no'})."
    )


def write_tables(quick: bool) -> None:
    """results_lm_sequence[_quick].md from the results file (settings from its rows), and the
    README's marked table for a full run."""
    stem = "results_lm_sequence" + ("_quick" if quick else "")
    runs = json.loads((HERE / f"{stem}.json").read_text())["runs"]
    md = table(runs, runs[0]["steps"], quick, runs[0].get("test_cap", TEST_CAP))
    (HERE / f"{stem}.md").write_text(md)
    if not quick:
        replace_marked_section(ROOT / "README.md", "lm-sequence-table", md)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--steps", type=int, default=None, help=f"steps per stage (default {STEPS})")
    p.add_argument("--test-cap", type=int, default=TEST_CAP, help="test examples per task")
    p.add_argument("--quick", action="store_true", help="2 steps, tiny caps -> *_quick files")
    p.add_argument("--runs-dir", default=str(ROOT / "runs" / "bench_lm_sequence"))
    p.add_argument("--keep-runs", action="store_true", help="keep the run folders")
    p.add_argument("--tables-only", action="store_true", help="rebuild the .md and README table")
    args = p.parse_args()
    steps = args.steps or (2 if args.quick else STEPS)
    if args.tables_only:
        write_tables(args.quick)
        return
    runs_dir = Path(args.runs_dir) / ("quick" if args.quick else "full")
    data = prepare(runs_dir / "data")
    stem = "results_lm_sequence" + ("_quick" if args.quick else "")
    path = HERE / f"{stem}.json"
    for method in args.only:
        out = runs_dir / method  # a sequence left by a killed run resumes (rows are files)
        report = run_sequence(
            stages(data, steps, args.quick, args.test_cap), continual(method, args.quick), out
        )
        r = row(method, report) | {"steps": steps, "test_cap": 8 if args.quick else args.test_cap}
        print(json.dumps({k: r[k] for k in ("method", "acc", "bwt", "probe_drift", "wall_s")}))
        # read again: parallel invocations (--only, their own --runs-dir) share the results file
        runs = json.loads(path.read_text())["runs"] if path.is_file() else []
        runs = [x for x in runs if x["method"] != method]
        runs = sorted([*runs, r], key=lambda x: list(METHODS).index(x["method"]))
        path.write_text(json.dumps({"runs": runs}, indent=2))
        write_tables(args.quick)
        if not args.keep_runs:
            shutil.rmtree(out / "stages", ignore_errors=True)
            shutil.rmtree(out / "state", ignore_errors=True)
    print((HERE / f"{stem}.md").read_text())


if __name__ == "__main__":
    main()

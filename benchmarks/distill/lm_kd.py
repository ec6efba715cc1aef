"""LM distillation benchmark (issue 17): do decoder students distilled from a teacher beat SFT?

Parts (``--part``, default all):

* ``task`` — TREC coarse written text-to-text ("trec question: <q>" -> one label word). Teacher:
  SmolLM2-135M-Instruct fine-tuned on it (configs/lm17/trec_teacher.yaml). Students: keep_ends
  blocks of the teacher (15 and 20 of 30), the same steps for SFT on gold words, forward KL,
  reverse KL, JSD(0.5) and on-policy GKD (each KD run: 0.5 CE + 0.5 KD). Label-word accuracy on
  the test set (ranking the six words by log-likelihood). Cache rows: forward KL on the top-64 +
  tail cache vs the live teacher (accuracy, tokens/s, bytes per token). Multi-teacher: two
  teachers fine-tuned with different seeds, their mixture (cached) teaching a 15-block student.
* ``speed`` — training tokens/s of forward-KL KD, live teacher vs the cache, short runs
  alternating (the accuracy runs' tokens/s are not comparable when they share the machine).
* ``general`` — alpaca_2k, teacher = the instruct model itself (held-out loss 2.00): SFT vs
  forward / reverse KL students (15 and 20 blocks) at equal steps; dev loss curve every 100 steps.
* ``cross`` — Gemma-3-270m (embedded ``gemma3``, another tokenizer) fine-tuned on TREC teaches the
  pretrained SmolLM2 through ``uld``; SFT-only beside it.

Every row: ``method``, ``dataset``, ``student_blocks``, ``accuracy`` / ``eval_loss``,
``teacher_accuracy`` / ``teacher_eval_loss``, ``steps``, ``tokens_per_s``, ``wall_s``,
``cached``, ``cache_bytes_per_token``, ``student_loss_before_training`` (and the choices' losses).
Rows go into results.json beside the classifier rows (same ``{"runs": [...]}``), keyed by
(dataset, method, student_blocks, variant).

    python benchmarks/distill/lm_kd.py                 # everything (GPU: see the README estimate)
    python benchmarks/distill/lm_kd.py --part task --blocks 15
    python benchmarks/distill/lm_kd.py --quick         # wiring check on tiny random models, CPU
    # parallel single-thread processes write their own files, merged afterwards:
    python benchmarks/distill/lm_kd.py --part general --results /tmp/general.json
    python benchmarks/distill/lm_kd.py --merge /tmp/task.json /tmp/general.json --shared
    python benchmarks/distill/lm_kd.py --tables-only   # results_lm.md + README from results.json
    python benchmarks/distill/lm_kd.py --part speed    # live vs cached KD tokens/s, alone
    # a 2-core CPU budget: one teacher, 15-block students, 300 steps
    python benchmarks/distill/lm_kd.py --part task --blocks 15 --no-multi-teacher \
        --over train.max_steps=300 train.eval_every=100
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_data import LABEL_WORDS  # noqa: E402  (benchmarks/bench_data.py)
from lm_tables import write as write_tables  # noqa: E402

from tunesmith.config import parse_recipe  # noqa: E402
from tunesmith.distill.heal import initial_loss  # noqa: F401  (re-exported for notebooks)
from tunesmith.models import load_model, load_tokenizer
from tunesmith.paths import data_root
from tunesmith.train.loop import train
from tunesmith.train.scoring import evaluate_text_to_text

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CONFIGS = HERE / "configs" / "lm17"
WORDS = LABEL_WORDS["trec"]
PROMPT = "trec question: {q}"
KD = {  # method -> objectives added to 0.5 CE (SFT: CE only)
    "sft": [],
    "forward_kl": [{"name": "lm_kd", "weight": 0.5, "params": {"beta": 0.0}}],
    "reverse_kl": [{"name": "lm_kd", "weight": 0.5, "params": {"beta": 1.0}}],
    "jsd": [{"name": "lm_kd", "weight": 0.5, "params": {"beta": 0.5}}],
    "gkd": [{"name": "gkd", "weight": 0.5,
             "params": {"lmbda": 0.5, "beta": 0.5, "max_new_tokens": 4}}],
}  # fmt: skip
GENERAL = ["sft", "forward_kl", "reverse_kl"]
SHARED_NOTE = (
    "run while other jobs shared the machine's cores: accuracy and losses are unaffected, "
    "tokens_per_s and wall_s are not comparable with an idle machine or with each other"
)


def prepare_trec(root: Path, limit: dict | None = None) -> Path:
    """``root/trec_t2t/{train,test}.json`` (alpaca fields) from the shared TREC files."""
    out = root / "trec_t2t"
    out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        lines = (data_root() / "trec" / f"{split}.txt").read_text(encoding="latin-1").splitlines()
        records = []
        for line in lines:
            label, text = line.split(" ", 1)
            records.append({"instruction": PROMPT.format(q=text.strip()), "input": "",
                            "output": WORDS[label.split(":")[0]]})  # fmt: skip
        records = records[: (limit or {}).get(split, len(records))]
        (out / f"{split}.json").write_text(json.dumps(records))
    return root


def label_word_accuracy(model_dir: Path, records: list[dict]) -> float:
    """Share of test records whose gold word has the highest log-likelihood of the six words, each
    record scored as training rendered it: the library's label-word scoring
    (``tunesmith.train.scoring.evaluate_text_to_text``; alpaca records in the plain template,
    ``instruction + "\\n" + word + </s>``, the prompt shared by the six words), in the dtype the
    model loads in."""
    tok = load_tokenizer(str(model_dir))
    model = load_model(str(model_dir), "causal_lm").eval()
    model.to("cuda" if torch.cuda.is_available() else "cpu")
    gold = [r["output"] for r in records]
    scores = evaluate_text_to_text(
        model, tok, records, gold, list(WORDS.values()), template="plain", batch_size=64
    )
    return round(scores["accuracy"], 4)


def recipe_for(config: str, overrides: list[str], patch: dict | None = None):
    raw = yaml.safe_load((CONFIGS / config).read_text())
    for key, value in (patch or {}).items():
        raw[key] = value
    return parse_recipe(raw, overrides)


def run(recipe, run_dir: Path) -> dict:
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    summary = train(recipe, run_dir)
    summary["bench_wall_s"] = round(time.perf_counter() - t0, 1)
    return summary


def curve(run_dir: Path) -> list[list[float]]:
    """[[step, dev loss], ...] from the run's metrics.jsonl."""
    out = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("split") in ("dev", "dev_at_start") and "loss" in rec:
            out.append([rec["step"], round(rec["loss"], 4)])
    return out


def row(method, dataset, blocks, summary, variant="", **extra) -> dict:
    d = summary.get("distill", {})
    return {
        "method": method, "dataset": dataset, "student_blocks": blocks, "variant": variant,
        "steps": summary["steps"], "tokens_per_s": summary.get("tokens_per_s"),
        "wall_s": summary["wall_s"], "cached": bool(d.get("cache_bytes_per_token")),
        "cache_bytes_per_token": d.get("cache_bytes_per_token"),
        "student_loss_before_training": d.get("student_loss_before_training"),
        "student_choices": d.get("student_choices"), "student_layers": d.get("student_layers"),
    } | extra  # fmt: skip


class Rows:
    """results.json's runs, this benchmark's rows replaced by (dataset, method, blocks, variant)."""

    def __init__(self, path: Path, note: str | None = None):
        self.path, self.note = path, note
        self.body = json.loads(path.read_text()) if path.is_file() else {"runs": []}

    def put(self, r: dict) -> None:
        if self.note:  # --shared: these rows' timings came from a shared machine
            r = {**r, "timing_note": self.note}
        key = lambda x: (x["dataset"], x["method"], x.get("student_blocks"), x.get("variant"))  # noqa: E731
        self.body["runs"] = [x for x in self.body["runs"] if key(x) != key(r)] + [r]
        self.path.write_text(json.dumps(self.body, indent=2))
        print(json.dumps({k: r.get(k) for k in ("dataset", "method", "student_blocks", "variant",
              "accuracy", "eval_loss", "tokens_per_s")}), flush=True)  # fmt: skip


def task_part(args, out: Path, rows: Rows, base: list[str]) -> None:
    data = ["data.root=" + str(out / "data")]
    test = json.loads((out / "data" / "trec_t2t" / "test.json").read_text())
    teachers = []
    for seed in (13, 14) if args.multi_teacher else (13,):
        t_dir = out / f"trec_teacher_s{seed}"
        teacher_over = base + data + [f"seed={seed}"] + args.teacher_over
        if args.reuse_teachers and (t_dir / "best").is_dir() and (t_dir / "summary.json").is_file():
            s = json.loads((t_dir / "summary.json").read_text())  # a finished earlier run
        else:
            s = run(recipe_for("trec_teacher.yaml", teacher_over), t_dir)
        acc = label_word_accuracy(t_dir / "best", test)
        rows.put(row("teacher", "trec_t2t", None, s, f"seed{seed}", accuracy=acc))
        teachers.append((t_dir, acc))
    if args.multi_teacher:  # first: the students below reuse its teacher runs, not vice versa
        over = base + data + [f"student.from_teacher.n={args.blocks[0]}", "distill.cache=true"]
        patch = {"task_weight": 0.5, "objectives": KD["forward_kl"],
                 "distill": {"teachers": [{"model": str(t)} for t, _ in teachers], "cache": True,
                             "top_k": 64}}  # fmt: skip
        r_dir = out / "trec_multi_teacher"
        s = run(recipe_for("trec_student.yaml", over, patch), r_dir)
        rows.put(row("forward_kl", "trec_t2t", args.blocks[0], s, "multi_teacher_mixture",
                     accuracy=label_word_accuracy(r_dir / "best", test),
                     teacher_accuracy=[a for _, a in teachers]))  # fmt: skip
    (teacher, t_acc) = teachers[0]
    for blocks in args.blocks:
        for method in args.methods:
            over = base + data + [f"distill.teacher={teacher}", f"student.from_teacher.n={blocks}"]
            patch = {"task_weight": 0.5 if KD[method] else 1.0, "objectives": KD[method]}
            variants = [("", [])]
            if method == "forward_kl":
                variants.append(("cache", ["distill.cache=true"]))
            for variant, extra in variants:
                r_dir = out / f"trec_{method}_b{blocks}{'_' + variant if variant else ''}"
                s = run(recipe_for("trec_student.yaml", over + extra, patch), r_dir)
                acc = label_word_accuracy(r_dir / "best", test)
                rows.put(row(method, "trec_t2t", blocks, s, variant, accuracy=acc,
                             teacher_accuracy=t_acc))  # fmt: skip


def speed_part(args, out: Path, rows: Rows, base: list[str]) -> None:
    """Training tokens/s of forward-KL KD with the live teacher vs the top-k + tail cache, measured
    apart from the accuracy runs (which may share the machine): ``--speed-steps`` steps per run,
    no evaluation until the last step, live, cached and SFT alternating for 2 repeats; tokens/s =
    the median of the logged 10-step windows after the first (warm-up). The SFT runs (the same
    student, gold words only, no teacher at all) are the ceiling of any teacher cache: cached KD
    can be at most SFT / live times faster than the live teacher. Needs the task part's teacher
    (and reuses its cache). Run it alone on the machine."""
    data = ["data.root=" + str(out / "data")]
    teacher = out / "trec_teacher_s13"
    if not (teacher / "best").is_dir():
        sys.exit(f"--part speed needs the task part's teacher at {teacher}")
    steps = args.speed_steps
    over = base + data + [
        f"distill.teacher={teacher}", f"student.from_teacher.n={args.blocks[0]}",
        "student.from_teacher.report_choices=false", f"train.max_steps={steps}",
        f"train.eval_every={steps}", "train.log_every=10",
    ]  # fmt: skip
    kd = {"task_weight": 0.5, "objectives": KD["forward_kl"]}
    sft = {"task_weight": 1.0, "objectives": []}  # no teacher pass: the cache's ceiling
    windows: dict[str, list[float]] = {"live": [], "cache": [], "sft": []}
    for rep in range(2):
        for variant in ("live", "cache", "sft") if rep % 2 == 0 else ("sft", "cache", "live"):
            extra = ["distill.cache=true"] if variant == "cache" else []
            r_dir = out / f"speed_forward_kl_{variant}"
            patch = sft if variant == "sft" else kd
            run(recipe_for("trec_student.yaml", over + extra, patch), r_dir)
            logged = [json.loads(x) for x in (r_dir / "metrics.jsonl").read_text().splitlines()]
            windows[variant] += [x["tokens_per_s"] for x in logged if x.get("split") == "train"][1:]
            shutil.rmtree(r_dir, ignore_errors=True)
    for variant, values in windows.items():
        rows.put({
            "method": "sft" if variant == "sft" else "forward_kl", "dataset": "trec_t2t",
            "student_blocks": args.blocks[0], "variant": f"speed_{variant}", "steps": steps,
            "repeats": 2, "tokens_per_s": round(statistics.median(values), 1), "windows": len(values),
            "threads": torch.get_num_threads(),
        })  # fmt: skip


def general_part(args, out: Path, rows: Rows, base: list[str]) -> None:
    for blocks in args.blocks:
        for method in GENERAL:
            over = base + [f"student.from_teacher.n={blocks}"] + args.general_over
            patch = {"task_weight": 0.5 if KD[method] else 1.0, "objectives": KD[method]}
            r_dir = out / f"alpaca_{method}_b{blocks}"
            s = run(recipe_for("alpaca_student.yaml", over, patch), r_dir)
            rows.put(row(method, "alpaca_2k", blocks, s, "", eval_loss=s["dev"]["loss"],
                         perplexity=s["dev"].get("perplexity"), curve=curve(r_dir),
                         teacher_eval_loss=s["distill"]["teacher"]["dev"]["loss"]))  # fmt: skip


def cross_part(args, out: Path, rows: Rows, base: list[str]) -> None:
    data = ["data.root=" + str(out / "data")]
    test = json.loads((out / "data" / "trec_t2t" / "test.json").read_text())
    t_dir = out / "trec_gemma3_teacher"
    s = run(recipe_for("trec_gemma3_teacher.yaml", base + data + args.cross_teacher_over), t_dir)
    t_acc = label_word_accuracy(t_dir / "best", test)
    rows.put(row("teacher", "trec_t2t", None, s, "gemma3", accuracy=t_acc))
    over = base + data + args.cross_student_over
    uld = [f"distill.teacher={t_dir}"]
    for method, extra, patch in (
        ("uld", uld, {}),
        ("sft", [], {"objectives": [], "distill": None}),
    ):
        r_dir = out / f"trec_cross_{method}"
        s = run(recipe_for("trec_uld_student.yaml", over + extra, patch), r_dir)
        rows.put(
            row(
                method,
                "trec_t2t",
                30,
                s,
                "cross_tokenizer",
                accuracy=label_word_accuracy(r_dir / "best", test),
                teacher_accuracy=t_acc,
            )
        )


def quick_models(out: Path) -> dict[str, str]:
    """Tiny random Llamas for --quick: a 6-block teacher and one with another tokenizer."""
    from transformers import AutoModelForCausalLM

    from tunesmith.testing import tiny_config, tiny_tokenizer

    paths = {}
    for name, words, layers in (("teacher", None, 6), ("other", ["trec", "zebra"], 2)):
        tok = tiny_tokenizer(words, kind="causal")
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(
            tiny_config("llama", len(tok), num_hidden_layers=layers)
        )
        model.save_pretrained(out / name)
        tok.save_pretrained(out / name)
        paths[name] = str(out / name)
    return paths


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", nargs="+", choices=["task", "general", "cross", "speed"],
                   default=["task", "speed", "general", "cross"])  # fmt: skip
    p.add_argument("--blocks", nargs="+", type=int, default=[15, 20])
    p.add_argument("--methods", nargs="*", choices=list(KD), default=list(KD),
                   help="task students per --blocks (none: teachers and multi-teacher only)")  # fmt: skip
    p.add_argument("--reuse-teachers", action="store_true",
                   help="keep task teachers whose runs finished (summary.json + best/)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="tiny random models, a few steps (CPU)")
    p.add_argument("--runs-dir", help="default runs/bench_distill_lm (quick: ..._quick)")
    p.add_argument("--no-multi-teacher", dest="multi_teacher", action="store_false",
                   help="one teacher (seed 13), no multi-teacher row")  # fmt: skip
    p.add_argument("--tables-only", action="store_true",
                   help="rewrite results_lm.md and the README section from results.json, then exit")  # fmt: skip
    p.add_argument("--shared", action="store_true",
                   help="the machine was shared: note it on every row written (or merged)")  # fmt: skip
    p.add_argument("--speed-steps", type=int, default=40, help="steps per --part speed run")
    p.add_argument("--results", help="write rows here instead of results.json (parallel runs)")
    p.add_argument("--merge", nargs="+", metavar="JSON",
                   help="fold these results files' rows into results.json, then exit")  # fmt: skip
    p.add_argument("--over", nargs="+", default=[], metavar="KEY=VALUE",
                   help="recipe overrides for every run, e.g. train.max_steps=300 (CPU budget)")  # fmt: skip
    return p.parse_args()


def main() -> None:
    args = parse_args()
    suffix = "_quick" if args.quick else ""
    out = Path(args.runs_dir or ROOT / "runs" / f"bench_distill_lm{suffix}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    note = SHARED_NOTE if args.shared else None
    rows = Rows(Path(args.results) if args.results else HERE / f"results{suffix}.json", note)
    # a parallel run's table goes beside its own results file, never over the committed one
    md = Path(args.results).with_suffix(".md") if args.results else HERE / f"results_lm{suffix}.md"
    readme = None if args.quick or args.results else ROOT / "README.md"
    if args.merge or args.tables_only:
        for path in args.merge or []:
            for r in json.loads(Path(path).read_text())["runs"]:
                rows.put(r)
        print(write_tables(rows.body["runs"], md, readme))
        return
    args.teacher_over, args.general_over = [], []
    args.cross_teacher_over, args.cross_student_over = [], []
    base: list[str] = list(args.over)
    limit = None
    if args.quick:
        tiny = quick_models(out)
        args.blocks = [3, 4]
        steps = ["train.max_steps=2", "train.eval_every=2", "train.batch_size=4",
                 "train.eval_batch_size=4", "train.precision=fp32"]  # fmt: skip
        base = steps + ["data.limit={train: 16, dev: 4}"] + args.over
        limit = {"train": 64, "test": 8}
        args.teacher_over = [f"model={tiny['teacher']}"]
        args.general_over = [f"distill.teacher={tiny['teacher']}", "data.max_length=48"]
        args.cross_teacher_over = [f"model={tiny['other']}"]
        args.cross_student_over = [f"model={tiny['teacher']}"]
    if {"task", "cross"} & set(args.part):
        prepare_trec(out / "data", limit)
    if not (data_root() / "trec").is_dir():
        sys.exit(f"shared data not found at {data_root()} (set TUNESMITH_DATA)")
    parts = {"task": task_part, "general": general_part, "cross": cross_part, "speed": speed_part}
    for part in args.part:
        parts[part](args, out, rows, base)
        print(write_tables(rows.body["runs"], md, readme))


if __name__ == "__main__":
    main()

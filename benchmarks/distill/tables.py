"""Derived numbers (% of teacher, speed-up), the issue's expectations, and the markdown tables."""

from __future__ import annotations

from pathlib import Path

from tunesmith.report import replace_marked_section

CLASSIFIER_METHODS = [
    "teacher",
    "student_hard",
    "student_kd_T2",
    "student_kd_T4",
    "student_kd_hidden",
    "student_kd_T2_nocache",
]
LM_METHODS = ["lm_student_sft", "lm_student_kd"]
KD_STUDENTS = ["student_kd_T2", "student_kd_T4", "student_kd_hidden"]  # nocache = kd_T2 again


def _ratio(a, b, scale: float = 1.0, digits: int = 2):
    return round(scale * a / b, digits) if a is not None and b else None


def derive(runs: list[dict]) -> None:
    """Fill ``pct_of_teacher`` and ``speedup_vs_teacher`` from each dataset's teacher, in place."""
    teachers = {r["dataset"]: r for r in runs if r["method"] == "teacher"}
    for r in runs:
        t = teachers.get(r["dataset"], {})
        r["pct_of_teacher"] = _ratio(r.get("accuracy"), t.get("accuracy"), 100.0)
        r["speedup_vs_teacher"] = _ratio(r.get("examples_per_s"), t.get("examples_per_s"))


def checks(runs: list[dict]) -> dict[str, dict]:
    """Per classification dataset: does the best KD student keep >= 97% of the teacher's
    accuracy, beat the hard-label student, and run >= 1.8x faster?"""
    out = {}
    for ds in dict.fromkeys(r["dataset"] for r in runs if r.get("accuracy") is not None):
        by = {r["method"]: r for r in runs if r["dataset"] == ds}
        kd = [by[m] for m in KD_STUDENTS if m in by]
        if "teacher" not in by or not kd:
            continue
        best = max(kd, key=lambda r: r["accuracy"])
        hard = by.get("student_hard")
        c = {
            "best_student": best["method"],
            "pct_of_teacher": best["pct_of_teacher"],
            "keeps_97pct": best["pct_of_teacher"] >= 97.0,
            "beats_hard": hard is not None and best["accuracy"] > hard["accuracy"],
            "speedup": best["speedup_vs_teacher"],
            "faster_1_8x": (best["speedup_vs_teacher"] or 0) >= 1.8,
        }
        cached, live = by.get("student_kd_T2"), by.get("student_kd_T2_nocache")
        if cached and live:
            c["cache_train_speedup"] = _ratio(live["train_wall_s"], cached["train_wall_s"])
        out[ds] = c
    return out


def _f(value, fmt: str, missing: str = "–") -> str:
    return missing if value is None else format(value, fmt)


def classifier_table(runs: list[dict], ds: str) -> list[str]:
    teacher = next((r for r in runs if r["dataset"] == ds and r["method"] == "teacher"), {})
    origin = f"; teacher copied from `{teacher['copied_from']}`" if "copied_from" in teacher else ""
    lines = [
        f"**{ds}** (test accuracy; examples/s: forward passes over the test set, batch 64, "
        f"median of 3, all models in one process{origin})",
        "",
        "| method | loss | test acc | % of teacher | params | examples/s | speed-up "
        "| train s | cached |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        if r["dataset"] == ds:
            lines.append(
                f"| {r['method']} | {r.get('loss', '')} | {100 * r['accuracy']:.2f} "
                f"| {_f(r['pct_of_teacher'], '.1f')} | {r['params'] / 1e6:.1f}M "
                f"| {_f(r['examples_per_s'], '.0f')} | {_f(r['speedup_vs_teacher'], '.2f')}x "
                f"| {_f(r['train_wall_s'], '.0f')} | {'yes' if r['cached'] else 'no'} |"
            )
    return lines


def check_lines(runs: list[dict], ds: str, c: dict) -> list[str]:
    by = {r["method"]: r for r in runs if r["dataset"] == ds}
    yes = {True: "**yes**", False: "**no**"}
    hard = by.get("student_hard", {}).get("accuracy")
    lines = [
        "",
        f"Expectations (issue 4), best KD student = `{c['best_student']}`: keeps >= 97% of the "
        f"teacher's accuracy: {yes[c['keeps_97pct']]} ({c['pct_of_teacher']:.1f}%); beats the "
        f"hard-label student: {yes[c['beats_hard']]} "
        f"({100 * by[c['best_student']]['accuracy']:.2f} vs {_f(hard and 100 * hard, '.2f')}); "
        f">= 1.8x faster: {yes[c['faster_1_8x']]} ({_f(c['speedup'], '.2f')}x).",
    ]
    if "cache_train_speedup" in c:
        cached = by["student_kd_T2"]
        lines.append(
            f"Teacher cache: KD T=2 trains in {cached['train_wall_s']:.0f} s with cached teacher "
            f"logits vs {by['student_kd_T2_nocache']['train_wall_s']:.0f} s with the live "
            f"teacher ({c['cache_train_speedup']:.2f}x); the one-time teacher pass over the train "
            f"set took {_f(cached.get('cache_build_s'), '.0f')} s and is shared by every cached "
            "run on the same teacher and data."
        )
    return lines


def lm_table(runs: list[dict]) -> list[str]:
    lm = [r for r in runs if r["dataset"] == "alpaca_2k"]
    if not lm:
        return []
    lines = [
        "**alpaca_2k** (SmolLM2-135M-Instruct, 30 blocks -> 15-block student; held-out loss on "
        f"{lm[0].get('eval_examples', '?')} examples, responses only; examples/s: forward passes "
        "over them, batch 8, not generation)",
        "",
        "| method | loss | params | held-out loss before | after | ppl after | examples/s "
        "| speed-up | train s | cached |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in lm:
        lines.append(
            f"| {r['method']} | {r.get('loss', '')} | {r['params'] / 1e6:.1f}M "
            f"| {_f(r['eval_loss_before'], '.3f')} | {_f(r['eval_loss_after'], '.3f')} "
            f"| {_f(r.get('ppl_after'), '.2f')} | {_f(r['examples_per_s'], '.1f')} "
            f"| {_f(r['speedup_vs_teacher'], '.2f')}x | {_f(r['train_wall_s'], '.0f')} "
            f"| {'yes' if r['cached'] else 'no'} |"
        )
    return lines


def markdown(runs: list[dict], found: dict[str, dict]) -> str:
    runs = [r for r in runs if "variant" not in r]  # lm_kd.py's rows: lm_tables.py
    lines: list[str] = []
    for ds in dict.fromkeys(r["dataset"] for r in runs if r.get("accuracy") is not None):
        lines += classifier_table(runs, ds)
        if ds in found:
            lines += check_lines(runs, ds, found[ds])
        lines.append("")
    lines += lm_table(runs)
    return "\n".join(lines).strip()


def samples_md(runs: list[dict]) -> str:
    out = []
    for r in runs:
        for s in r.get("samples", []):
            out.append(f"- `{r['method']}` **{s['prompt']}** → {s['generated']!r}")
    return "\n\nSamples (greedy, 40 new tokens):\n" + "\n".join(out) if out else ""


def write_tables(runs: list[dict], found: dict[str, dict], md_path: Path, readme: Path | None):
    """results(.md) beside the JSON; the README table between the markers unless ``readme`` is
    None (quick runs never touch it)."""
    md = markdown(runs, found)
    md_path.write_text(md + samples_md(runs) + "\n")
    if readme is not None:
        replace_marked_section(readme, "distill-table", md)
    print(md)

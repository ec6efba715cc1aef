"""Tables and verdicts of the LM-distillation benchmark (lm_kd.py rows of results.json).

Rows are told from run.py's classifier and old LM rows by their ``variant`` key. Verdicts follow
issue 17's targets: task KD — the best KD student >= 2 points above the SFT student with the same
blocks and steps and >= 90% of the teacher's accuracy; general — a KD student's held-out loss below
the SFT student's; cache — cached top-k + tail KD within 0.5 points (task) / 0.02 nats (general) of
the live teacher's at >= 2x its training tokens/s.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.report import replace_marked_section

KD_METHODS = ("forward_kl", "reverse_kl", "jsd", "gkd")
MARKER = "distill-lm-table"


def lm_kd_rows(runs: list[dict]) -> list[dict]:
    return [r for r in runs if "variant" in r]


def _f(value, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _pct(x) -> str:
    return _f(None if x is None else 100 * x, ".2f")


def _key(r: dict) -> tuple:
    return r["dataset"], r["student_blocks"]


def _comparisons(rows: list[dict], metric: str):
    """(key, {method: row}, the SFT row, the KD rows) per (dataset, student blocks) whose plain
    rows (no variant) with ``metric`` include SFT and at least one KD method."""
    plain = [r for r in rows if r.get(metric) is not None and r["variant"] == ""]
    for key in dict.fromkeys(_key(r) for r in plain):
        group = {r["method"]: r for r in plain if _key(r) == key}
        kd = [group[m] for m in KD_METHODS if m in group]
        if "sft" in group and kd:
            yield key, group, group["sft"], kd


def task_verdicts(rows: list[dict]) -> list[str]:
    """One line per (dataset, student blocks) with an SFT row and KD rows: issue 17's targets."""
    out = []
    for key, group, sft, kd in _comparisons(rows, "accuracy"):
        best = max(kd, key=lambda r: r["accuracy"])
        gain = 100 * (best["accuracy"] - sft["accuracy"])
        share = 100 * best["accuracy"] / best["teacher_accuracy"]
        out.append(
            f"- {key[0]}, {key[1]}-block students: best KD `{best['method']}` "
            f"{_pct(best['accuracy'])} vs SFT {_pct(sft['accuracy'])} (**{gain:+.2f}** points, "
            f"target >= +2: **{'met' if gain >= 2 else 'missed'}**); {share:.1f}% of the teacher's "
            f"{_pct(best['teacher_accuracy'])} (target >= 90%: "
            f"**{'met' if share >= 90 else 'missed'}**)." + _headroom(sft)
        )
        cached = next((r for r in rows if r["variant"] == "cache" and r["method"] == "forward_kl"
                       and _key(r) == key), None)  # fmt: skip
        live = group.get("forward_kl")
        timed = {r["variant"]: r for r in rows
                 if r["variant"].startswith("speed_") and _key(r) == key}  # fmt: skip
        if {"speed_live", "speed_cache"} <= timed.keys():  # measured apart (--part speed)
            pair, how = (timed["speed_cache"], timed["speed_live"]), "measured alone, alternating"
        else:
            pair, how = (cached or {}, live or {}), "from the accuracy runs"
        if cached and live and pair[0].get("tokens_per_s") and pair[1].get("tokens_per_s"):
            diff = 100 * (cached["accuracy"] - live["accuracy"])
            speed = pair[0]["tokens_per_s"] / pair[1]["tokens_per_s"]
            out.append(
                f"- cache (forward KL on the top-k + tail cache vs the live teacher): {diff:+.2f} "
                f"points (target within 0.5: **{'met' if abs(diff) <= 0.5 else 'missed'}**), "
                f"{speed:.2f}x training tokens/s ({how}; target >= 2x: "
                f"**{'met' if speed >= 2 else 'missed'}**), "
                f"{_f(cached.get('cache_bytes_per_token'), '.0f')} bytes per cached token."
            )
        if {"speed_live", "speed_cache", "speed_sft"} <= timed.keys():
            live_s, cache_s, sft_s = (timed[f"speed_{v}"]["tokens_per_s"]
                                      for v in ("live", "cache", "sft"))  # fmt: skip
            out.append(
                f"- the ceiling of any teacher cache, the same student's SFT step (no teacher): "
                f"{sft_s:.0f} tokens/s = {sft_s / live_s:.2f}x the live teacher's {live_s:.0f}; "
                f"cached KD runs at {100 * cache_s / sft_s:.0f}% of it."
            )
        out += _multi_teacher(rows, key, sft, cached)
    return out + cross_verdicts(rows)


def _headroom(sft: dict) -> str:
    """A note when the SFT student is already within 2 points of its teacher (no room for +2)."""
    room = 100 * (sft["teacher_accuracy"] - sft["accuracy"])
    if room >= 2:
        return ""
    return (
        f" The SFT student is {-room:+.2f} points from the teacher: +2 would put a student "
        f"{2 - room:.2f} points above its teacher."
    )


def _multi_teacher(rows: list[dict], key: tuple, sft: dict, cached: dict | None) -> list[str]:
    """The multi-teacher row of ``key`` against SFT and the one-teacher cached forward KL."""
    multi = next((r for r in rows if r["variant"] == "multi_teacher_mixture"
                  and _key(r) == key and r.get("accuracy") is not None), None)  # fmt: skip
    if multi is None:
        return []
    accs = multi.get("teacher_accuracy") or []
    line = (
        f"- multi-teacher (the mixture of {len(accs)} teachers, "
        f"{', '.join(_pct(t) for t in accs)}; cached forward KL): {_pct(multi['accuracy'])}, "
        f"{100 * (multi['accuracy'] - sft['accuracy']):+.2f} points vs SFT"
    )
    if cached is not None:
        line += f", {100 * (multi['accuracy'] - cached['accuracy']):+.2f} vs one cached teacher"
    return [line + "."]


def cross_verdicts(rows: list[dict]) -> list[str]:
    """The cross-tokenizer pair (``variant`` cross_tokenizer): ULD against SFT-only, same steps."""
    pair = {r["method"]: r for r in rows
            if r["variant"] == "cross_tokenizer" and r.get("accuracy") is not None}  # fmt: skip
    if not {"uld", "sft"} <= pair.keys():
        return []
    uld, sft = pair["uld"], pair["sft"]
    return [
        f"- cross-tokenizer ({uld['dataset']}, teacher {_pct(uld.get('teacher_accuracy'))} with "
        f"another tokenizer, {uld['student_blocks']}-block student, {uld['steps']} steps): ULD "
        f"{_pct(uld['accuracy'])} vs SFT only {_pct(sft['accuracy'])} "
        f"({100 * (uld['accuracy'] - sft['accuracy']):+.2f} points)."
    ]


def general_verdicts(rows: list[dict]) -> list[str]:
    out = []
    for key, _, sft, kd in _comparisons(rows, "eval_loss"):
        best = min(kd, key=lambda r: r["eval_loss"])
        met = best["eval_loss"] < sft["eval_loss"]
        out.append(
            f"- {key[0]}, {key[1]}-block students: best KD `{best['method']}` held-out loss "
            f"{best['eval_loss']:.3f} vs SFT {sft['eval_loss']:.3f} (target: below SFT: "
            f"**{'met' if met else 'missed'}**); gap to the teacher's "
            f"{_f(best.get('teacher_eval_loss'), '.3f')}: "
            f"{best['eval_loss'] - (best.get('teacher_eval_loss') or 0):.3f} nats."
        )
    return out


def task_table(rows: list[dict]) -> list[str]:
    rows = [r for r in rows if r.get("accuracy") is not None]
    if not rows:
        return []
    lines = [
        "| dataset | method | variant | student blocks | steps | label-word acc | teacher acc "
        "| loss before training | tokens/s | cached bytes/token |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        teacher = r.get("teacher_accuracy")
        teacher = (
            ", ".join(_pct(t) for t in teacher) if isinstance(teacher, list) else _pct(teacher)
        )
        lines.append(
            f"| {r['dataset']} | {r['method']} | {r['variant'] or '–'} "
            f"| {_f(r['student_blocks'], 'd')} | {r['steps']} | {_pct(r['accuracy'])} | {teacher} "
            f"| {_f(r.get('student_loss_before_training'), '.3f')} "
            f"| {_f(r.get('tokens_per_s'), '.0f')} | {_f(r.get('cache_bytes_per_token'), '.0f')} |"
        )
    return lines


def general_table(rows: list[dict]) -> list[str]:
    rows = [r for r in rows if r.get("eval_loss") is not None]
    if not rows:
        return []
    lines = [
        "| dataset | method | student blocks | steps | held-out loss | perplexity | teacher loss "
        "| loss before training | tokens/s | dev loss curve (step: loss) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        curve = ", ".join(f"{s}: {v:.2f}" for s, v in r.get("curve") or [])
        lines.append(
            f"| {r['dataset']} | {r['method']} | {_f(r['student_blocks'], 'd')} | {r['steps']} "
            f"| {r['eval_loss']:.3f} | {_f(r.get('perplexity'), '.1f')} "
            f"| {_f(r.get('teacher_eval_loss'), '.3f')} "
            f"| {_f(r.get('student_loss_before_training'), '.3f')} "
            f"| {_f(r.get('tokens_per_s'), '.0f')} | {curve} |"
        )
    return lines


def markdown(runs: list[dict]) -> str:
    rows = lm_kd_rows(runs)
    parts: list[str] = []
    for table, verdicts in ((task_table, task_verdicts), (general_table, general_verdicts)):
        lines = table(rows)
        if lines:
            parts += lines + [""] + verdicts(rows) + [""]
    return "\n".join(parts).strip() or "(no LM distillation rows yet)"


def write(runs: list[dict], md_path: Path, readme: Path | None) -> str:
    """results_lm.md beside the JSON; the README section between the markers unless ``readme``
    is None (quick and parallel runs never touch it)."""
    md = markdown(runs)
    md_path.write_text(md + "\n")
    if readme is not None:
        replace_marked_section(readme, MARKER, md)
    return md

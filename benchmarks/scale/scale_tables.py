"""The scale benchmark's README table and target verdicts, generated from results.json."""

from __future__ import annotations

import statistics
from pathlib import Path

from tunesmith.report import replace_marked_section

HERE = Path(__file__).resolve().parent
ROOT_README = HERE.parents[1] / "README.md"
# The README's summary: SmolLM2 LoRA, tunesmith's configurations and the Trainer at the same one.
SUMMARY = (
    ("fp32", "fp32"),
    ("bf16 frozen base (`model.dtype: bf16`)", "bf16base"),
    ("+ chunked loss (`train.loss_chunk_tokens: 512`)", "bf16base+chunk"),
    ("+ gradient checkpointing", "bf16base+ckpt"),
    ("+ checkpointing + chunked loss", "bf16base+ckpt+chunk"),
)
BEST = "bf16base+ckpt+chunk"  # tunesmith's memory/speed configuration the targets name
FAST = "bf16base+chunk"  # the fastest configuration that still halves fp32's memory (no ckpt)
SPEED_VS_FP32, SPEED_VS_TRAINER = 2.0, 1.3
RSS_VS_FP32, RSS_VS_TRAINER = 0.5, 0.7
CASE_ORDER = ("smollm2_lora", "smollm2_full", "gemma3_lora", "smollm2_lora_fsdp")


def _median(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def group(runs: list[dict]) -> dict[tuple[str, str, str], dict]:
    """(case, impl, config) -> medians over the repeats (losses from the first repeat)."""
    out: dict[tuple[str, str, str], dict] = {}
    for r in runs:
        if "strategy" in r:  # the FSDP case has its own lines
            continue
        g = out.setdefault((r["case"], r["impl"], r["config"]), {"runs": []})
        g["runs"].append(r)
    for g in out.values():
        ok = [r for r in g["runs"] if "error" not in r]
        g["n"], g["errors"] = len(ok), len(g["runs"]) - len(ok)
        for key in ("tokens_per_s", "peak_rss_mb", "peak_rss_steady_mb", "mfu"):
            g[key] = _median([r.get(key) for r in ok])
        g["loss_at_steps"] = ok[0]["loss_at_steps"] if ok else {}
        g["error"] = next((r["error"] for r in g["runs"] if "error" in r), None)
    return out


def _fmt(x: float | None, spec: str = ".0f") -> str:
    return "–" if x is None else format(x, spec)


def table(groups: dict) -> str:
    lines = [
        "| case | impl | config | runs | tokens/s | peak RSS MB | steady peak MB | MFU "
        "| loss @1 / 5 / 10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    keys = sorted(groups, key=lambda k: (_case_rank(k[0]), k[2].split("+")[0], k[2], k[1]))
    for case, impl, config in keys:
        g = groups[(case, impl, config)]
        if not g["n"]:
            lines.append(f"| {case} | {impl} | {config} | 0 | error: {g['error'][:80]} |||||")
            continue
        losses = " / ".join(_fmt(g["loss_at_steps"].get(s), ".3f") for s in ("1", "5", "10"))
        mfu = "–" if g["mfu"] is None else f"{100 * g['mfu']:.1f}%"
        lines.append(
            f"| {case} | {impl} | {config} | {g['n']} | {_fmt(g['tokens_per_s'], '.1f')} "
            f"| {_fmt(g['peak_rss_mb'])} | {_fmt(g['peak_rss_steady_mb'])} | {mfu} | {losses} |"
        )
    return "\n".join(lines)


def _case_rank(case: str) -> int:
    return CASE_ORDER.index(case) if case in CASE_ORDER else len(CASE_ORDER)


def _ratio(a: dict | None, b: dict | None, key: str) -> float | None:
    if not a or not b or a.get(key) is None or not b.get(key):
        return None
    return a[key] / b[key]


def verdicts(groups: dict) -> list[str]:
    """The issue's targets, each with its numbers (or why it cannot be judged)."""
    g = {k: v for k, v in groups.items() if v["n"]}
    lines = []
    fp32, best = (
        g.get(("smollm2_lora", "tunesmith", "fp32")),
        g.get(("smollm2_lora", "tunesmith", BEST)),
    )
    trainer = g.get(("smollm2_lora", "trainer", BEST.replace("+chunk", "")))
    checks = [
        ("tokens/s vs tunesmith fp32", _ratio(best, fp32, "tokens_per_s"), SPEED_VS_FP32, ">="),
        ("tokens/s vs Trainer bf16base+ckpt", _ratio(best, trainer, "tokens_per_s"), SPEED_VS_TRAINER, ">="),
        ("peak RSS vs tunesmith fp32", _ratio(best, fp32, "peak_rss_mb"), RSS_VS_FP32, "<="),
        ("peak RSS vs Trainer bf16base+ckpt", _ratio(best, trainer, "peak_rss_mb"), RSS_VS_TRAINER, "<="),
    ]  # fmt: skip
    for what, ratio, target, op in checks:
        if ratio is None:
            lines.append(f"- smollm2_lora {BEST}: {what}: not measured")
            continue
        ok = ratio >= target if op == ">=" else ratio <= target
        lines.append(
            f"- smollm2_lora {BEST}: {what} = {ratio:.2f}x "
            f"({'meets' if ok else 'MISSES'} the {op} {target}x target)"
        )
    lines += _speed_lines(g, fp32) + _loss_lines(g) + _gemma_lines(g)
    return lines


def _speed_lines(g: dict, fp32: dict | None) -> list[str]:
    """The speed targets for the fastest configuration (no checkpointing), against the Trainer
    configured the same way (bf16 base, no checkpointing), when those rows were measured."""
    fast = g.get(("smollm2_lora", "tunesmith", FAST))
    trainer = g.get(("smollm2_lora", "trainer", FAST.replace("+chunk", "")))
    lines = []
    for what, other, target in (
        ("tokens/s vs tunesmith fp32", fp32, SPEED_VS_FP32),
        ("tokens/s vs Trainer bf16base", trainer, SPEED_VS_TRAINER),
        ("peak RSS vs tunesmith fp32", fp32, None),
    ):
        key = "peak_rss_mb" if target is None else "tokens_per_s"
        ratio = _ratio(fast, other, key)
        if ratio is None:
            continue
        verdict = (
            "" if target is None
            else f" ({'meets' if ratio >= target else 'MISSES'} the >= {target}x target)"
        )  # fmt: skip
        lines.append(f"- smollm2_lora {FAST}: {what} = {ratio:.2f}x{verdict}")
    return lines


def _loss_lines(g: dict) -> list[str]:
    """bf16 configurations vs fp32 (same seed, same batches): largest loss gap at steps 1/5/10."""
    out = []
    for case in CASE_ORDER:
        for impl in ("tunesmith", "trainer"):
            ref = g.get((case, impl, "fp32"))
            if not ref:
                continue
            gaps = {
                cfg: max(
                    abs(v["loss_at_steps"][s] - ref["loss_at_steps"][s])
                    for s in v["loss_at_steps"]
                    if s in ref["loss_at_steps"]
                )  # fmt: skip
                for (c, i, cfg), v in g.items()
                if c == case and i == impl and cfg != "fp32" and v["loss_at_steps"]
            }
            if gaps:
                worst = max(gaps, key=gaps.get)
                out.append(
                    f"- {case} {impl}: largest |loss - fp32 loss| at steps 1/5/10 over "
                    f"{len(gaps)} other configs = {gaps[worst]:.3f} ({worst})"
                )
    return out


def _gemma_lines(g: dict) -> list[str]:
    out = []
    for config in sorted({k[2] for k in g if k[0] == "gemma3_lora" and k[2].endswith("+chunk")}):
        chunked = g[("gemma3_lora", "tunesmith", config)]
        plain = g.get(("gemma3_lora", "tunesmith", config.removesuffix("+chunk")))
        if plain:
            out.append(
                f"- gemma3_lora {config.removesuffix('+chunk')}: peak RSS "
                f"{plain['peak_rss_mb']:.0f} MB unchunked vs {chunked['peak_rss_mb']:.0f} MB "
                f"chunked ({chunked['peak_rss_mb'] / plain['peak_rss_mb']:.2f}x)"
            )
    return out


def fsdp_lines(runs: list[dict]) -> list[str]:
    by = {r["strategy"]: r for r in runs if "strategy" in r and "error" not in r}
    if "ddp" not in by or "fsdp" not in by:
        errs = [r["error"] for r in runs if "strategy" in r and "error" in r]
        return [f"- FSDP case: not measured{': ' + errs[0] if errs else ''}"] if errs else []
    d, f = (_rank0_total(by[k]["state_bytes_per_rank"]) for k in ("ddp", "fsdp"))
    if d is None or f is None:
        return [f"- FSDP vs DDP (2 processes): state bytes per rank {f} vs {d}"]
    return [
        f"- FSDP vs DDP (2 processes): parameter + gradient + optimizer bytes per rank "
        f"{f / 2**20:,.1f} MiB vs {d / 2**20:,.1f} MiB ({f / d:.2f}x)"
    ]


def _rank0_total(value) -> float | None:
    """``state_bytes_per_rank`` as summary.json writes it (a list of per-rank dicts) or a number."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0].get("total")
    return value if isinstance(value, int | float) else None


def render(data: dict) -> str:
    meta, runs = data.get("meta", {}), data["runs"]
    groups = group(runs)
    head = []
    if meta:
        s, e = meta.get("gemm_gflops_start", {}), meta.get("gemm_gflops_end", {})
        head.append(
            f"{meta.get('machine', '')}, torch {meta.get('torch')}, {meta.get('threads')} threads, "
            f"{meta.get('steps')} steps of {meta.get('rows_x_tokens')} tokens. GEMM limit "
            f"(torch.mm 2048²): fp32 {s.get('fp32')} / bf16 {s.get('bf16')} GFLOP/s at start"
            + (f", {e.get('fp32')} / {e.get('bf16')} at end" if e else "")
            + (f"; total {meta['total_s'] / 60:.0f} min" if "total_s" in meta else "")
            + "."
        )
        if "--quick" in meta.get("command", ""):
            head.append(
                "\n_Smoke test (`--quick`: 3 short steps): it checks the harness, it does not "
                "measure the targets; `python benchmarks/scale/run.py` replaces it._"
            )
        if meta.get("timing_note"):
            head.append(f"\n_Timing note: {meta['timing_note']}._")
    return "\n".join(head + ["", table(groups), ""] + verdicts(groups) + fsdp_lines(runs))


def summary(data: dict) -> str:
    """The README's table (SmolLM2 LoRA, medians; the Trainer where it has the configuration)
    with the verdicts, from the same groups as the benchmark's own table."""
    groups = {k: v for k, v in group(data["runs"]).items() if v["n"]}
    lines = [
        "| config (tunesmith) | tokens/s | peak RSS | Trainer + PEFT, same config |",
        "|---|---|---|---|",
    ]
    for label, config in SUMMARY:
        ours = groups.get(("smollm2_lora", "tunesmith", config))
        if ours is None:
            continue
        theirs = groups.get(("smollm2_lora", "trainer", config))
        other = (
            f"{theirs['tokens_per_s']:.0f} tok/s, {theirs['peak_rss_mb'] / 1024:.1f} GiB"
            if theirs
            else ""
        )
        lines.append(
            f"| {label} | {ours['tokens_per_s']:.0f} | {ours['peak_rss_mb'] / 1024:.1f} GiB "
            f"| {other} |"
        )
    return "\n".join([*lines, "", *verdicts(groups), *fsdp_lines(data["runs"])])


def write_tables(data: dict, results: Path) -> str:
    md = render(data)
    readme = results.parent / "README.md"
    if readme.is_file() and results.name == "results.json":
        replace_marked_section(readme, "scale-table", md)
        if ROOT_README.is_file() and "--quick" not in data.get("meta", {}).get("command", ""):
            replace_marked_section(ROOT_README, "scale-table", summary(data))
    print(md)
    return md

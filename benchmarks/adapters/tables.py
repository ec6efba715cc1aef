"""results.json -> the summary numbers, results.md and the README table of the adapter benchmark."""

from __future__ import annotations

from pathlib import Path

from tunesmith.report import replace_marked_section

HERE = Path(__file__).resolve().parent
README = HERE.parents[1] / "README.md"
DATASETS = {"sst2": "SST-2 test", "rte": "RTE dev", "trec": "TREC test"}
METHODS = ["full", "houlsby", "pfeiffer", "lora", "ia3"]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(runs: list[dict]) -> dict:
    """Per method: mean accuracy over the datasets it ran on (and how many), mean % trainable,
    and the mean difference to full fine-tuning in accuracy points over the datasets both ran on;
    Houlsby's gap to full fine-tuning (full - houlsby, points)."""
    by = {(r["dataset"], r["method"]): r for r in runs}
    out: dict = {"methods": {}}
    for m in METHODS:
        rows = [by[d, m] for d in DATASETS if (d, m) in by]
        if not rows:
            continue
        shared = [d for d in DATASETS if (d, m) in by and (d, "full") in by]
        diffs = [by[d, m]["accuracy"] - by[d, "full"]["accuracy"] for d in shared]
        out["methods"][m] = {
            "mean_accuracy": round(_mean([r["accuracy"] for r in rows]), 4),
            "datasets": len(rows),
            "mean_trainable_pct": round(_mean([r["trainable_pct"] for r in rows]), 4),
            "vs_full_points": round(100 * _mean(diffs), 2) if diffs else None,
            "vs_full_datasets": shared,
        }
    houlsby = out["methods"].get("houlsby", {})
    if houlsby.get("vs_full_points") is not None:
        out["houlsby_gap_to_full_points"] = -houlsby["vs_full_points"]
        out["houlsby_gap_datasets"] = houlsby["vs_full_datasets"]
    return out


def _size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 2**10:.0f} KB"


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def matrix_table(runs: list[dict], summary: dict) -> list[str]:
    by = {(r["dataset"], r["method"]): r for r in runs}
    lines = [
        "| method | " + " | ".join(DATASETS.values()) + " | mean | vs full | trainable (mean) | "
        "checkpoint (SST-2) | wall s (sum) | peak RSS MB (max) |",
        "|---|" + "---|" * (len(DATASETS) + 6),
    ]
    for m in METHODS:
        rows = [by[d, m] for d in DATASETS if (d, m) in by]
        if not rows:
            continue
        s = summary["methods"][m]
        delta = "" if m == "full" or s["vs_full_points"] is None else f"{s['vs_full_points']:+.2f}"
        sst2 = by.get(("sst2", m), rows[0])
        lines.append(
            f"| {m} | "
            + " | ".join(_pct(by[d, m]["accuracy"] if (d, m) in by else None) for d in DATASETS)
            + f" | {_pct(s['mean_accuracy'])} | {delta} | {s['mean_trainable_pct']:.2f}% | "
            f"{_size(sst2['checkpoint_bytes'])} | {sum(r['wall_s'] for r in rows):.0f} | "
            f"{max(r['peak_rss_mb'] for r in rows):.0f} |"
        )
    gap = summary.get("houlsby_gap_to_full_points")
    if gap is not None:
        hp = summary["methods"]["houlsby"]["mean_trainable_pct"]
        lines += [
            "",
            f"Houlsby vs full fine-tuning: {abs(gap):.2f} points {'below' if gap > 0 else 'above'} "
            f"on average over "
            f"{', '.join(summary['houlsby_gap_datasets'])} with {hp:.2f}% trainable parameters "
            "(paper, BERT-Large on GLUE: 0.4 points with 3.6%; target here: within 1.0 with <= 5%).",
        ]
    return lines


def peft_table(runs: list[dict]) -> list[str]:
    by = {(r["dataset"], r["method"]): r for r in runs}
    pair = [
        ("tunesmith loop", by.get(("sst2", "lora"))),
        ("peft + Trainer", by.get(("sst2", "peft_lora"))),
    ]
    pair = [(name, r) for name, r in pair if r]
    if not pair:
        return []
    lines = [
        "| SST-2 LoRA r=8 alpha=16 on query,value | test acc | trainable | adapter files | "
        "train s | wall s | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in pair:
        lines.append(
            f"| {name} | {_pct(r['accuracy'])} | {r['trainable_params']:,} "
            f"({r['trainable_pct']:.2f}%) | {_size(r['checkpoint_bytes'])} | "
            f"{r['train_wall_s']:.0f} | {r['wall_s']:.0f} | {r['peak_rss_mb']:.0f} |"
        )
    return lines


def smollm2_table(runs: list[dict]) -> list[str]:
    r = next((r for r in runs if r["method"] == "smollm2_lora"), None)
    if r is None:
        return []
    return [
        "| SmolLM2-135M LoRA r=16 on q,k,v,o (alpaca_2k, held-out) | loss before | loss after | "
        "ppl before | ppl after | trainable | adapter file | steps | wall s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| lr {r['lr']:g}, batch 8 | {r['eval_loss_before']:.3f} | {r['eval_loss_after']:.3f} | "
        f"{r['ppl_before']:.2f} | {r['ppl_after']:.2f} | {r['trainable_params']:,} "
        f"({r['trainable_pct']:.2f}%) | {_size(r['adapter_bytes'])} | {r['steps']} | "
        f"{r['wall_s']:.0f} | {r['peak_rss_mb']:.0f} |",
    ]


def detail_table(runs: list[dict]) -> list[str]:
    lines = [
        "| dataset | method | accuracy | split | trainable params | checkpoint bytes | lr | "
        "steps | train s | wall s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['dataset']} | {r['method']} | {_pct(r['accuracy'])} | {r['split']} | "
            f"{r['trainable_params']:,} ({r['trainable_pct']:.2f}%) | {r['checkpoint_bytes']:,} | "
            f"{r['lr']:g} | {r['steps']} | {r['train_wall_s']:.0f} | {r['wall_s']:.0f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    return lines


def readme_text(results: dict) -> str:
    runs = results["runs"]
    parts = [matrix_table(runs, summarise(runs)), peft_table(runs), smollm2_table(runs)]
    return "\n\n".join("\n".join(p) for p in parts if p)


def update_readme(text: str) -> None:
    replace_marked_section(README, "adapters-table", text)


def write_tables(results: dict, publish: bool) -> None:
    """Print the tables; with ``publish``, also write results.md and the README section."""
    main = readme_text(results)
    runs = results["runs"]
    samples = [
        f"- **{s['prompt']}** → {s['generated']!r}" for r in runs for s in r.get("samples", [])
    ]
    md = "\n\n".join(
        [
            main,
            "All runs:\n\n" + "\n".join(detail_table(runs)),
            *(["SmolLM2 samples after LoRA tuning:\n\n" + "\n".join(samples)] if samples else []),
            f"Machine: {results['meta']['machine']} ({results['meta']['device']}); "
            f"command: `{results['meta']['command']}`.",
        ]
    )
    if publish:
        (HERE / "results.md").write_text(md + "\n")
        update_readme(main)
    print(md)

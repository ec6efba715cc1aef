"""results.json -> the summary numbers, results.md and the README table of the adapter benchmark.

python benchmarks/adapters/tables.py --sweep LABEL=FILE ...   # a sweep's table (markdown)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cases import METHODS

from tunesmith.report import replace_marked_section

HERE = Path(__file__).resolve().parent
README = HERE.parents[1] / "README.md"
DATASETS = {"sst2": "SST-2 test", "rte": "RTE dev", "trec": "TREC test"}


# rows written before the benchmark recorded seeds ran the dataset configs' seed
LEGACY_SEED = 13


def seed_of(row: dict) -> int:
    return row.get("seed", LEGACY_SEED)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _std(values: list[float]) -> float:
    """Sample standard deviation (0 for a single value)."""
    if len(values) < 2:
        return 0.0
    m = _mean(values)
    return (sum((v - m) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def by_cell(runs: list[dict]) -> dict[tuple[str, str], dict]:
    """(dataset, method) -> the mean over that cell's seeds: accuracy, its std, the seeds, and
    the first seed's row for sizes and counts (identical across seeds)."""
    cells: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        cells.setdefault((r["dataset"], r["method"]), []).append(r)
    out = {}
    for key, rows in cells.items():
        acc = [r["accuracy"] for r in rows if r.get("accuracy") is not None]
        out[key] = {
            **rows[0],
            "accuracy": _mean(acc),
            "accuracy_std": _std(acc),
            "seeds": [seed_of(r) for r in rows],
            "wall_s": _mean([r["wall_s"] for r in rows]),
            "train_wall_s": _mean([r["train_wall_s"] for r in rows]),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rows),
        }
    return out


def summarise(runs: list[dict]) -> dict:
    """Per method: mean accuracy over the datasets it ran on (each dataset first averaged over its
    seeds), mean % trainable, and the mean difference to full fine-tuning in accuracy points over
    the datasets both ran on; Houlsby's gap to full fine-tuning (full - houlsby, points)."""
    by = by_cell(runs)
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
            "per_dataset": {
                d: {
                    "accuracy": round(by[d, m]["accuracy"], 4),
                    "seeds": by[d, m]["seeds"],
                    "std": round(by[d, m]["accuracy_std"], 4),
                }
                for d in DATASETS
                if (d, m) in by
            },
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


def _cell(r: dict | None) -> str:
    """Accuracy in %, with ± std over seeds where there were several."""
    if r is None or r["accuracy"] is None:
        return "–"
    spread = f" ± {100 * r['accuracy_std']:.2f}" if len(r["seeds"]) > 1 else ""
    return _pct(r["accuracy"]) + spread


def _dataset_header(runs: list[dict]) -> list[str]:
    seeds = {d: len({seed_of(r) for r in runs if r["dataset"] == d}) for d in DATASETS}
    return [name + (f" ({seeds[d]} seeds)" if seeds[d] > 1 else "") for d, name in DATASETS.items()]


def matrix_table(runs: list[dict], summary: dict) -> list[str]:
    by = by_cell(runs)
    lines = [
        "| method | "
        + " | ".join(_dataset_header(runs))
        + " | mean | vs full | trainable (mean) | "
        "checkpoint (SST-2) | wall s (sum of datasets) | peak RSS MB (max) |",
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
            + " | ".join(_cell(by.get((d, m))) for d in DATASETS)
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
    """tunesmith's SST-2 LoRA next to the same config through peft + Trainer, on the seeds the
    PEFT side ran (seed for seed)."""
    seeds = {seed_of(r) for r in runs if r["method"] == "peft_lora"}
    by = by_cell([r for r in runs if r["dataset"] == "sst2" and seed_of(r) in seeds])
    pair = [
        ("tunesmith loop", by.get(("sst2", "lora"))),
        ("peft + Trainer", by.get(("sst2", "peft_lora"))),
    ]
    pair = [(name, r) for name, r in pair if r]
    if not pair:
        return []
    lines = [
        f"| SST-2 LoRA r=8 alpha=16 on query,value (seed {', '.join(map(str, sorted(seeds)))}) | "
        "test acc | trainable | adapter files | "
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
        "| dataset | method | seed | accuracy | split | trainable params | checkpoint bytes | lr | "
        "steps | train s | wall s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['dataset']} | {r['method']} | {r.get('seed', 13)} | {_pct(r['accuracy'])} | "
            f"{r['split']} | "
            f"{r['trainable_params']:,} ({r['trainable_pct']:.2f}%) | {r['checkpoint_bytes']:,} | "
            f"{r['lr']:g} | {r['steps']} | {r['train_wall_s']:.0f} | {r['wall_s']:.0f} | "
            f"{r['peak_rss_mb']:.0f} |"
        )
    return lines


PRESET = HERE / "houlsby_preset.json"  # run.py --only houlsby --set adapter.reduction_factor=16


def preset_table(results: dict) -> list[str]:
    """The benchmark's Houlsby (bottleneck picked on dev) next to the paper preset, if that was
    run (``PRESET``), each against this results file's full fine-tuning."""
    if not PRESET.is_file():
        return []
    preset = _load(PRESET)
    # seed for seed: the benchmark's rows on the (dataset, seed) pairs the preset ran
    pairs = {(r["dataset"], seed_of(r)) for r in preset["runs"]}
    same = {"runs": [r for r in results["runs"] if (r["dataset"], seed_of(r)) in pairs]}
    files = [(_reduction(results), same), (_reduction(preset) + " (paper preset)", preset)]
    lines = sweep_table(files, same, methods=["houlsby"])
    head = "| Houlsby (on the preset's runs' seeds)"
    return [head + lines[0][len("| runs") :], *lines[1:]]


def _reduction(results: dict) -> str:
    factors = {
        (r.get("adapter") or {}).get("reduction_factor")
        for r in results["runs"]
        if r["method"] == "houlsby"
    }
    return "reduction_factor " + ", ".join(f"{f:g}" for f in factors if f is not None)


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def readme_text(results: dict) -> str:
    runs = results["runs"]
    parts = [
        matrix_table(runs, summarise(runs)),
        preset_table(results),
        peft_table(runs),
        smollm2_table(runs),
    ]
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


def sweep_table(
    files: list[tuple[str, dict]], reference: dict, methods: list[str] = METHODS
) -> list[str]:
    """One row per (label, method) of several results files (e.g. a sweep over budgets or adapter
    sizes), each dataset averaged over its seeds; "vs full" compares with the full fine-tuning
    rows of the same file, or of ``reference`` where the file has none."""
    ref = by_cell(reference["runs"])
    lines = [
        "| runs | method | " + " | ".join(DATASETS.values()) + " | mean | vs full | trainable |",
        "|---|---|" + "---|" * (len(DATASETS) + 3),
    ]
    for label, results in files:
        by = by_cell(results["runs"])
        full = {d: by.get((d, "full"), ref.get((d, "full"))) for d in DATASETS}
        for m in methods:
            cells = {d: by[d, m] for d in DATASETS if (d, m) in by}
            if not cells:
                continue
            diffs = [cells[d]["accuracy"] - full[d]["accuracy"] for d in cells if full[d]]
            # a mean over fewer datasets is not comparable with the others: only the difference
            mean = (
                _mean([c["accuracy"] for c in cells.values()])
                if len(cells) == len(DATASETS)
                else None
            )
            delta = "" if m == "full" or not diffs else f"{100 * _mean(diffs):+.2f}"
            if delta and len(cells) < len(DATASETS):
                delta += f" ({', '.join(DATASETS[d].split()[0] for d in cells)})"
            pct = _mean([c["trainable_pct"] for c in cells.values()])
            lines.append(
                f"| {label} | {m} | "
                + " | ".join(_cell(cells.get(d)) for d in DATASETS)
                + f" | {_pct(mean)} | {delta} | {pct:.2f}% |"
            )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", nargs="+", required=True, metavar="LABEL=FILE")
    p.add_argument("--reference", help="results file whose full rows files without any use")
    args = p.parse_args()
    files = []
    for item in args.sweep:
        label, _, path = item.partition("=")
        files.append((label, _load(Path(path))))
    reference = _load(Path(args.reference)) if args.reference else {"runs": []}
    print("\n".join(sweep_table(files, reference)))


if __name__ == "__main__":
    main()

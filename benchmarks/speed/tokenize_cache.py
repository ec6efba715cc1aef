"""Tokenisation cache (issue 15): data-preparation time of a first and a second run on SmolLM2 +
alpaca_2k (recipes/alpaca_smollm2_lora.yaml: chat template, max_length 256, 5% dev carved).

Each measurement is a fresh process that loads the tokenizer (not timed) and, for dataset
sources, imports ``datasets`` (timed apart), then times ``build_datasets`` — read, check, split,
tokenise — for the recipe's data:

- ``file``:        data.train as the recipe has it (``path:``, tunesmith's json reader, tokenised
                   in memory on every run; the small-data path);
- ``dataset cold``: data.train as ``{dataset: <same file>}`` with empty caches (datasets converts
                   the JSON to Arrow, ``Dataset.map`` tokenises and writes the cache);
- ``dataset warm``: the same again: the token ids are read from ``<cache>/tokenized``.

    python benchmarks/speed/tokenize_cache.py            # ~1 min on 2 cores
    python benchmarks/speed/tokenize_cache.py --repeats 5

Writes benchmarks/speed/tokenize_cache.json (all timings and the medians).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
RECIPE = ROOT / "recipes" / "alpaca_smollm2_lora.yaml"


def worker(kind: str, cache: str) -> None:
    """One measurement (in its own process); prints {"seconds", "train", "dev"} as JSON."""
    from tunesmith.config import SplitSource, load_recipe
    from tunesmith.data.pipeline import build_datasets
    from tunesmith.models import load_tokenizer

    recipe = load_recipe(RECIPE)
    tokenizer = load_tokenizer(recipe.model_source)  # before the cache is redirected
    os.environ["TUNESMITH_CACHE"] = cache  # the datasets and tokenisation caches only
    importing = 0.0
    if kind != "file":
        path = recipe.data.root_path() / recipe.data.train.path
        recipe.data.train = SplitSource(dataset=str(path))
        start = time.perf_counter()
        import datasets  # noqa: F401  (a dataset source's fixed cost, timed apart)

        importing = time.perf_counter() - start
    start = time.perf_counter()
    data = build_datasets(recipe, tokenizer)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "seconds": seconds,
                "import_datasets_seconds": importing,
                "train": len(data.train),
                "dev": len(data.dev),
            }
        )
    )


def measure(kind: str, cache: Path) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", kind, "--cache", str(cache)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--worker")
    ap.add_argument("--cache")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.cache)
        return
    runs: dict[str, list[dict]] = {"file": [], "dataset cold": [], "dataset warm": []}
    for _ in range(args.repeats):
        cache = Path(tempfile.mkdtemp(prefix="tokcache-bench-"))
        runs["file"].append(measure("file", cache))
        runs["dataset cold"].append(measure("dataset", cache))  # empty caches
        runs["dataset warm"].append(measure("dataset", cache))  # the second run
        shutil.rmtree(cache)
    medians = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
    imports = statistics.median(r["import_datasets_seconds"] for r in runs["dataset warm"])
    result = {
        "recipe": str(RECIPE.relative_to(ROOT)),
        "examples": {k: runs["file"][0][k] for k in ("train", "dev")},
        "repeats": args.repeats,
        "median_seconds": medians,  # build_datasets: read, check, split, tokenise
        "median_import_datasets_seconds": imports,  # paid once per process by dataset sources
        "saved_vs_cold_seconds": medians["dataset cold"] - medians["dataset warm"],
        "saved_vs_file_seconds": medians["file"] - medians["dataset warm"],
        "runs": runs,
        "cpus": os.cpu_count(),
    }
    (HERE / "tokenize_cache.json").write_text(json.dumps(result, indent=2) + "\n")
    for k, v in medians.items():
        print(f"{k:>13}: {v:6.2f} s (median of {args.repeats})")
    print(f"import datasets: {imports:.2f} s (dataset sources, once per process)")


if __name__ == "__main__":
    main()

"""The benchmark's cases: a dataset base recipe + a method's overrides, composed in code.

``configs/<dataset>.yaml`` holds everything a dataset's runs share (data, epochs, batch, seed);
``configs/methods.yaml`` holds what each method changes (``adapter:`` and ``optim.lr``). A case is
``dataset/method``; its recipe is the base with the method's section deep-merged on top, parsed
and validated exactly like a recipe file. ``quick=True`` shrinks any case to a smoke test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tunesmith.config import Recipe, check_files, parse_recipe
from tunesmith.configschema import deep_merge

CONFIGS = Path(__file__).resolve().parent / "configs"
DATASETS = ["sst2", "rte", "trec"]
METHODS = ["full", "houlsby", "pfeiffer", "lora", "ia3"]
PEFT_CASE = "sst2/peft_lora"  # the same LoRA config through peft + transformers' Trainer
SMOLLM2_CASE = "alpaca_2k/smollm2_lora"
MATRIX = [f"{d}/{m}" for d in DATASETS for m in METHODS]
ALL_CASES = MATRIX + [PEFT_CASE, SMOLLM2_CASE]

# --quick: enough to run every code path (train, dev selection, test, save) in seconds
QUICK_LIMITS = {"train": 64, "dev": 32, "test": 32}
QUICK_STEPS = 4
# SmolLM2: one step without warmup (a warmup step has lr 0 and would leave the loss unchanged)
QUICK_LM = {
    "data": {"limit": {"train": 64, "dev": 4}},
    "optim": {"warmup_steps": 0},
    "train": {"max_steps": 1, "eval_every": None},
}


def _read(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))


def method_overrides(method: str) -> dict[str, Any]:
    methods = _read("methods.yaml")
    if method not in methods:
        raise SystemExit(f"unknown method {method!r}; configs/methods.yaml has {sorted(methods)}")
    return methods[method]


def recipe_dict(case: str, quick: bool = False) -> dict[str, Any]:
    """The plain-dict recipe of ``case`` (``dataset/method``), before validation."""
    dataset, method = split_case(case)
    if case == SMOLLM2_CASE:
        data = _read("smollm2_lora.yaml")
        return deep_merge(data, QUICK_LM) if quick else data
    base = _read(f"{dataset}.yaml")
    # the PEFT baseline reads the recipe of tunesmith's LoRA case, so both share one config
    data = deep_merge(base, method_overrides("lora" if method == "peft_lora" else method))
    if quick:
        d = data["data"]
        splits = ["train"] + [s for s in ("dev", "test") if s in d or s in d.get("split", {})]
        data = deep_merge(
            data,
            {
                "data": {"limit": {s: QUICK_LIMITS[s] for s in splits}},
                "train": {"max_steps": QUICK_STEPS, "eval_batch_size": 32},
            },
        )
    return data


def build_recipe(case: str, quick: bool = False) -> Recipe:
    """The validated recipe of ``case`` (unknown keys, wrong types and missing files fail here)."""
    recipe = parse_recipe(recipe_dict(case, quick))
    check_files(recipe)
    return recipe


def split_case(case: str) -> tuple[str, str]:
    if case not in ALL_CASES:
        raise SystemExit(f"unknown case {case!r}; cases: {', '.join(ALL_CASES)}")
    dataset, method = case.split("/")
    return dataset, method


def select(filters: list[str] | None) -> list[str]:
    """Cases matching any filter: a case (``sst2/lora``), a dataset (``rte``) or a method."""
    if not filters:
        return list(ALL_CASES)
    chosen = [c for c in ALL_CASES if any(f in (c, *c.split("/")) for f in filters)]
    unknown = [f for f in filters if not any(f in (c, *c.split("/")) for c in ALL_CASES)]
    if unknown:
        raise SystemExit(f"--only {unknown}: no such case, dataset or method; cases: {ALL_CASES}")
    return chosen

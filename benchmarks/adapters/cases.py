"""The benchmark's cases: a dataset base recipe + a method's overrides, composed in code.

``configs/<dataset>.yaml`` holds everything a dataset's runs share (data, epochs, batch, seed);
``configs/methods.yaml`` holds what each method changes (``adapter:`` and ``optim.lr``). A case is
``dataset/method``; its recipe is the base with the method's section deep-merged on top, parsed
and validated exactly like a recipe file. ``quick=True`` shrinks any case to a smoke test.

A *job* is a case run with one seed: ``configs/seeds.yaml`` says which seeds each dataset runs
(small dev sets such as RTE's need several). ``Overrides`` change a budget or the model for a
whole invocation (``run.py --epochs rte=6 --model /path``), e.g. for a sweep on another machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunesmith.config import Recipe, check_files, parse_recipe
from tunesmith.configschema import deep_merge

CONFIGS = Path(__file__).resolve().parent / "configs"
DATASETS = ["sst2", "rte", "trec"]
# the methods, in table order: the sections of configs/methods.yaml (a new method is a new section)
METHODS = list(yaml.safe_load((CONFIGS / "methods.yaml").read_text(encoding="utf-8")))
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


@dataclass(frozen=True)
class Overrides:
    """Changes to every case of one invocation: epochs per dataset, the model (hub id or path)."""

    epochs: dict[str, int] = field(default_factory=dict)
    model: str | None = None
    sets: tuple[str, ...] = ()  # "optim.lr=3e-4": merged over the method's section

    def args(self) -> list[str]:
        """The command-line flags that rebuild these overrides in a subprocess."""
        out = ["--epochs", *(f"{d}={e}" for d, e in self.epochs.items())] if self.epochs else []
        out += ["--set", *self.sets] if self.sets else []
        return out + (["--model", self.model] if self.model else [])

    @classmethod
    def from_args(cls, args) -> Overrides:
        """The overrides of parsed flags added by :func:`add_override_args`."""
        return cls(parse_epochs(args.epochs), args.model, tuple(args.set or ()))

    def changes(self) -> dict[str, Any]:
        """``sets`` as a nested dict (values parsed as YAML: ``3e-4`` is a float)."""
        out: dict[str, Any] = {}
        for item in self.sets:
            path, sep, value = item.partition("=")
            if not sep or not path:
                raise SystemExit(f"--set {item!r}: expected KEY.PATH=VALUE, e.g. optim.lr=3e-4")
            *parents, leaf = path.split(".")
            node = out
            for key in parents:
                node = node.setdefault(key, {})
            node[leaf] = _scalar(value)
        return out


def add_override_args(p) -> None:
    """The flags that build :class:`Overrides` (run.py and peft_baseline.py take the same)."""
    p.add_argument("--epochs", nargs="+", metavar="DATASET=N", help="change a dataset's epochs")
    p.add_argument("--set", nargs="+", metavar="KEY=VALUE", help="recipe keys over the method's")
    p.add_argument("--model", help="another model (hub id or folder) instead of the embedded one")


def _scalar(text: str) -> Any:
    """YAML's reading of ``text``, but ``3e-4`` as a float (YAML 1.1 wants ``3.0e-4``)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _read(name: str) -> dict[str, Any]:
    return yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))


def default_seeds(case: str) -> list[int]:
    """The seeds ``case`` runs with (configs/seeds.yaml; the dataset config's seed otherwise,
    and always for the PEFT side-by-side, which is compared seed for seed)."""
    dataset, _ = split_case(case)
    seeds = None if case == PEFT_CASE else _read("seeds.yaml").get(dataset)
    return list(seeds) if seeds else [recipe_dict(case)["seed"]]


def method_overrides(method: str) -> dict[str, Any]:
    methods = _read("methods.yaml")
    if method not in methods:
        raise SystemExit(f"unknown method {method!r}; configs/methods.yaml has {sorted(methods)}")
    return methods[method]


def recipe_dict(
    case: str, quick: bool = False, seed: int | None = None, over: Overrides | None = None
) -> dict[str, Any]:
    """The plain-dict recipe of ``case`` (``dataset/method``) with ``seed`` and ``over``
    applied, before validation."""
    dataset, method = split_case(case)
    changes: dict[str, Any] = {} if seed is None else {"seed": seed}
    if over and over.model:
        changes["model"] = over.model
    if over and dataset in over.epochs:
        changes["train"] = {"epochs": over.epochs[dataset]}
    if case == SMOLLM2_CASE:  # its own model and budget: only the seed applies
        data = deep_merge(_read("smollm2_lora.yaml"), {"seed": seed} if seed is not None else {})
        return deep_merge(data, QUICK_LM) if quick else data
    base = deep_merge(_read(f"{dataset}.yaml"), changes)
    # the PEFT baseline reads the recipe of tunesmith's LoRA case, so both share one config
    data = deep_merge(base, method_overrides("lora" if method == "peft_lora" else method))
    if over and over.sets:
        data = deep_merge(data, over.changes())
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


def build_recipe(
    case: str, quick: bool = False, seed: int | None = None, over: Overrides | None = None
) -> Recipe:
    """The validated recipe of ``case`` (unknown keys, wrong types and missing files fail here)."""
    recipe = parse_recipe(recipe_dict(case, quick, seed, over))
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


def parse_epochs(items: list[str] | None) -> dict[str, int]:
    """``["rte=6", "sst2=3"]`` -> ``{"rte": 6, "sst2": 3}`` (datasets checked)."""
    out: dict[str, int] = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if name not in DATASETS or not value.isdigit() or int(value) < 1:
            raise SystemExit(f"--epochs {item!r}: expected DATASET=N with DATASET in {DATASETS}")
        out[name] = int(value)
    return out

"""Seeded generator of bad (and a few valid) recipes for ``tunesmith validate``.

Each case is the recipe text and ``must_fail``: True when ``train`` could not run it as meant
(so ``validate`` saying ok is a silent wrong), False for a valid recipe, None when either answer
is fine (a truncation that may still be a valid, smaller recipe). A ``!!python/...`` tag must be
refused and never run (its payload only creates the marker file).
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path

import yaml

NAN, INF = float("nan"), float("inf")

# (key path, values, must_fail)
VALUES: list[tuple[str, list, bool | None]] = [
    ("optim.lr", [NAN, INF, -INF, -1e-3, 0.0, "abc", [1e-3], {"v": 1}], True),
    ("train.max_steps", [-5, 0, 2.5, "ten", True, NAN], True),
    ("train.batch_size", [0, -8, "eight", 8.5, None, [8]], True),
    ("train.epochs", [-1, 0, NAN, "three", INF], True),
    ("train.eval_every", [0, -3, "x", 1.5], True),
    ("train.save_every", [0, -1], True),
    ("train.log_every", [0, -2], True),
    ("train.keep_checkpoints", [-1, "all"], True),
    ("optim.warmup_steps", [-1, "x", NAN], True),
    ("seed", ["abc", 1.5, None, [3]], True),
    ("data.split", [{"dev": 1.5}, {"dev": -0.1}, {"dev": NAN}, {"train": 0.5}, "0.2"], True),
    ("data.limit", [{"train": -3}, {"nosplit": 3}, {"train": "x"}], True),
    ("data.train.path", ["missing.txt", "", "/nonexistent/dir/train.txt"], True),
    ("data.train.format", ["xml", "", 3], True),
    ("data.train.encoding", ["utf-99", ""], True),
    ("data.max_length", [0, -1, "long"], True),
    ("data.labels", [["neg"], ["neg", "pos", "neg"], "neg,pos", [], [["neg"]]], True),
    ("task", ["sequence_clasification", "", None, 3], True),
    ("model", ["", "./no-such-model", None], True),
    ("optim.lrr", [1e-3], True),
    ("trian", [{"batch_size": 8}], True),
    ("train.batchsize", [8], True),
    ("data.train.paht", ["train.txt"], True),
    ("train", [[1, 2], "fast", 3], True),
    ("data", ["train.txt", [1]], True),
    ("optim.lr", [5e-4, 1e-5], False),
    ("train.batch_size", [4, 16], False),
    ("seed", [7, 0], False),
    ("data.labels", [["neg", "pos"], ["pos", "neg"]], False),
]

TEXT = [
    "duplicate key",
    "tab indentation",
    "truncated",
    "BOM at start (valid)",
    "invalid utf-8",
    "empty",
    "top-level list",
    "python tag",
    "anchors (valid)",
    "NUL byte",
]


@dataclass
class RecipeCase:
    name: str
    text: bytes
    must_fail: bool | None


def base_recipe(model: Path, data_root: Path) -> dict:
    return {
        "model": str(model),
        "task": "sequence_classification",
        "seed": 3,
        "data": {
            "root": str(data_root),
            "train": {"path": "train.txt", "format": "label_text"},
            "dev": {"path": "dev.txt", "format": "label_text"},
        },
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "train": {"batch_size": 8, "max_steps": 16, "eval_every": 4, "progress": False},
    }


def set_path(recipe: dict, path: str, value) -> dict:
    out = copy.deepcopy(recipe)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[last] = value
    return out


def dump(recipe: dict) -> str:
    return yaml.safe_dump(recipe, sort_keys=False)


def text_case(rng: random.Random, name: str, clean: str, marker: Path) -> RecipeCase:
    raw = clean.encode()
    if name == "duplicate key":
        anchor, dup = rng.choice(
            [("  lr: 0.001\n", "  lr: 5.0\n"), ("  batch_size: 8\n", "  batch_size: 2\n"),
             ("seed: 3\n", "seed: 4\n")]
        )  # fmt: skip
        return RecipeCase(name, clean.replace(anchor, anchor + dup, 1).encode(), True)
    if name == "tab indentation":
        lines = clean.splitlines(keepends=True)
        i = rng.choice([k for k, line in enumerate(lines) if line.startswith("  ")])
        lines[i] = "\t" + lines[i][2:]
        return RecipeCase(name, "".join(lines).encode(), True)
    if name == "truncated":
        return RecipeCase(name, raw[: rng.randrange(len(raw))], None)
    if name == "BOM at start (valid)":
        return RecipeCase(name, "\ufeff".encode() + raw, False)
    if name == "invalid utf-8":
        at = rng.randrange(len(raw))
        return RecipeCase(name, raw[:at] + rng.choice([b"\xff", b"\xc3", b"\x80"]) + raw[at:], True)
    if name == "empty":
        return RecipeCase(name, rng.choice([b"", b"# only a comment\n", b"\n\n", b"~\n"]), True)
    if name == "top-level list":
        return RecipeCase(name, rng.choice([b"- model: x\n", b"3\n", b"just text\n"]), True)
    if name == "python tag":
        tag = f"!!python/object/apply:builtins.open [{str(marker)!r}, w]"
        key = rng.choice(["seed", "model", "  lr"])
        lines = [
            f"{key}: {tag}" if line.startswith(key + ":") else line for line in clean.split("\n")
        ]
        return RecipeCase(name, "\n".join(lines).encode(), True)
    if name == "anchors (valid)":
        text = clean.replace("  batch_size: 8", "  batch_size: &bs 8\n  eval_batch_size: *bs")
        return RecipeCase(name, text.encode(), False)
    at = rng.randrange(len(raw))  # NUL byte
    return RecipeCase(name, raw[:at] + b"\x00" + raw[at:], True)


def generate_recipes(count: int, seed: int, model: Path, data_root: Path, marker: Path):
    """``count`` recipe cases: value mutations and text mutations in turn."""
    rng = random.Random(f"{seed}:recipe")
    base = base_recipe(model, data_root)
    clean = dump(base)
    kinds = [("value", i) for i in range(len(VALUES))] + [("text", n) for n in TEXT]
    cases = []
    for i in range(count):
        kind, what = kinds[i % len(kinds)]
        if kind == "text":
            cases.append(text_case(rng, what, clean, marker))
            continue
        path, values, must_fail = VALUES[what]
        value = rng.choice(values)
        text = dump(set_path(base, path, value))
        cases.append(RecipeCase(f"{path}={value!r:.30}", text.encode(), must_fail))
    return cases

"""Probe (b): the fuzz corpus, run in process for speed.

Data inputs: ``tunesmith validate`` first (``cli.main`` in process: once validate runs every
check train does, a bad file stops there); when it says ok, the data path train takes (read,
split, label vocabulary, encode — ``build_datasets`` — and every batch collated). An accepted
input is ``exact`` when the task it defines is the one it holds (no foreign label, every split
the expected size, every train example labelled), else ``silent_wrong``. Recipes: ``validate``
alone; ok on a recipe that must fail is ``silent_wrong``. A SIGALRM time limit turns a hang into
a verdict.
"""

from __future__ import annotations

import contextlib
import io
import signal
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fuzzdata
import harness as h
from fuzzrecipe import generate_recipes
from verdicts import Finished, Tally, task_change, verdict

LIMIT_S = 20


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang()


def call(fn: Callable[[], Any], limit: float = LIMIT_S) -> tuple[Finished, Any]:
    """Run ``fn`` with stdout/stderr captured and a time limit: (what happened, its result)."""
    from tunesmith.errors import TunesmithError

    err, out = io.StringIO(), io.StringIO()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, limit)
    result, done = None, None
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            result = fn()
        code = result if isinstance(result, int) else 0
        done = Finished(code, err.getvalue(), out.getvalue())
    except _Hang:
        done = Finished(None, err.getvalue(), timed_out=True)
    except SystemExit as e:  # argparse
        done = Finished(e.code if isinstance(e.code, int) else 1, err.getvalue())
    except TunesmithError as e:
        one_line = "\n" not in str(e).strip()
        done = Finished(2, err.getvalue(), exception=repr(e)[:200], clear=one_line)
    except Exception as e:  # noqa: BLE001 - any other exception is what the probe counts
        text = err.getvalue() + "".join(traceback.format_exception(e))
        done = Finished(1, text, exception=repr(e)[:200])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return done, result


def why(done: Finished) -> str:
    if done.exception:
        return done.exception
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    return (lines[-1] if lines else f"exit {done.code}")[:160]


def validate(recipe: Path) -> Finished:
    from tunesmith.cli import main

    done, _ = call(lambda: main(["validate", str(recipe)]))
    return done


def data_recipe(fmt: str, model: Path, root: Path) -> dict:
    ext = fuzzdata.FORMAT_FILES[fmt]
    names = {s: f"{s}.{ext}" if ext else s for s in ("train", "dev")}
    task = "token_classification" if fmt == "conll" else "sequence_classification"
    return {
        "model": str(model),
        "task": task,
        "seed": 3,
        "data": {
            "root": str(root),
            "train": {"path": names["train"], "format": fmt},
            "dev": {"path": names["dev"], "format": fmt},
        },
        "train": {"batch_size": 8, "max_steps": 2, "progress": False, "tensorboard": False},
    }


def write_input(root: Path, name: str, content: bytes | dict[str, bytes]) -> None:
    import shutil

    target = root / name
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    if isinstance(content, bytes):
        target.write_bytes(content)
        return
    target.mkdir()
    for rel, data in content.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(data)


def pipeline(recipe_path: Path, tokenizer) -> dict:
    """What train does with the data short of the model: labels and labelled split sizes."""
    from tunesmith.config import load_recipe
    from tunesmith.data.collate import Collator
    from tunesmith.data.pipeline import build_datasets

    recipe = load_recipe(str(recipe_path))
    ds = build_datasets(recipe, tokenizer)
    collate = Collator(pad_token_id=tokenizer.pad_token_id)
    sizes = {}
    for split in ("train", "dev"):
        examples = getattr(ds, split) or []  # the recipe names a dev file: none read is 0
        for start in range(0, len(examples), 8):
            collate(examples[start : start + 8])
        sizes[split] = sum("labels" in ex for ex in examples)
    return {"labels": ds.vocab.labels if ds.vocab else None, "sizes": sizes}


def fuzz_format(fmt: str, models: dict, work: Path, count: int, seed: int) -> Tally:
    from tunesmith.models import load_tokenizer

    tally = Tally(f"b: fuzz {fmt} files")
    model = models["tok" if fmt == "conll" else "cls"]
    tokenizer = load_tokenizer(str(model))
    root = work / f"fuzz-{fmt}"
    root.mkdir(parents=True, exist_ok=True)
    recipe_path = root / "recipe.yaml"
    h.write_recipe(recipe_path, data_recipe(fmt, model, root))
    ext = fuzzdata.FORMAT_FILES[fmt]
    for case in fuzzdata.generate(fmt, count, seed):
        write_input(root, f"train.{ext}" if ext else "train", case.train)
        write_input(root, f"dev.{ext}" if ext else "dev", case.dev)
        done = validate(recipe_path)
        if done.code != 0 or done.timed_out or done.exception:
            tally.add(verdict(done), f"{case.name}: {why(done)}")
            continue
        done, result = call(lambda: pipeline(recipe_path, tokenizer))
        wrong = task_change(result["labels"], result["sizes"], case.expect) if result else None
        tally.add(verdict(done, wrong=wrong), f"{case.name}: {wrong or why(done)}")
    return tally


def fuzz_recipes(models: dict, work: Path, count: int, seed: int) -> Tally:
    tally = Tally("b: fuzz recipes (validate)")
    root = work / "fuzz-recipe"
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "data" / "train.txt").write_text("\n".join(h.label_lines(24, 0)) + "\n")
    (root / "data" / "dev.txt").write_text("\n".join(h.label_lines(8, 1)) + "\n")
    marker = root / "PAYLOAD_RAN"
    for case in generate_recipes(count, seed, models["cls"], root / "data", marker):
        path = root / "recipe.yaml"
        path.write_bytes(case.text)
        done = validate(path)
        wrong = "validate accepted a recipe train cannot run as written" if case.must_fail else None
        tally.add(verdict(done, code_ran=marker.exists(), wrong=wrong), f"{case.name}: {why(done)}")
        marker.unlink(missing_ok=True)
    return tally


def probe_fuzz(work: Path, count: int, seed: int) -> list[Tally]:
    from tunesmith.testing import save_tiny_model

    models = {
        "cls": save_tiny_model(work / "fuzz-models" / "cls", "bert", "sequence_classification"),
        "tok": save_tiny_model(
            work / "fuzz-models" / "tok", "bert", "token_classification", num_labels=2
        ),
    }
    tallies = [fuzz_format(fmt, models, work, count, seed) for fmt in fuzzdata.FORMAT_FILES]
    tallies.append(fuzz_recipes(models, work, count, seed))
    return tallies

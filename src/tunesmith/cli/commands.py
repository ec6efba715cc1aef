"""The subcommands' handlers: each takes the parsed arguments, runs one driver and prints its result.

``args.writes`` names the folder a handler writes to, so a full disk is reported against it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from tunesmith.adapters import ADAPTERS
from tunesmith.config import dump_recipe, load_recipe
from tunesmith.configschema import to_dict
from tunesmith.continual import load_sequence, run_sequence
from tunesmith.data.pipeline import check_data
from tunesmith.data.readers import FORMATS
from tunesmith.errors import TunesmithError, reading
from tunesmith.metrics import METRICS
from tunesmith.models import EMBEDDED
from tunesmith.objectives import OBJECTIVES
from tunesmith.objectives.continual import METHODS as CONTINUAL_METHODS
from tunesmith.optim import SCHEDULES
from tunesmith.predict import evaluate_run, merge_run, predict_texts
from tunesmith.push import push_run
from tunesmith.report import write_report
from tunesmith.tasks import TASKS
from tunesmith.train.loop import train
from tunesmith.tuner import is_sequence


def cmd_train(args) -> None:
    recipe = load_recipe(args.recipe, args.overrides)
    args.writes = str(args.output_dir or recipe.output_dir)  # named if the disk fills up
    summary = train(recipe, args.output_dir, resume=args.resume)
    if os.environ.get("RANK", "0") == "0":  # torchrun / accelerate launch: print once
        print_summary(summary, Path(args.output_dir or recipe.output_dir))


def print_summary(summary: dict, run_dir: Path) -> None:
    for split in ("dev", "test"):
        if split in summary:
            shown = ", ".join(f"{k}={v:.4f}" for k, v in summary[split].items())
            print(f"{split}: {shown}")
    print(f"run dir: {run_dir}  (report: {run_dir / 'report.md'})")


def cmd_eval(args) -> None:
    print(json.dumps(evaluate_run(args.run_dir, tuple(args.split)), indent=2))


def cmd_predict(args) -> None:
    texts = list(args.texts)
    if args.file:
        with reading(args.file):
            lines = Path(args.file).read_text(encoding="utf-8").splitlines()
        texts += [t for t in lines if t.strip()]
    if not texts:
        raise TunesmithError("give texts to predict on the command line or with --file")
    for text, result in zip(
        texts, predict_texts(args.run_dir, texts, args.max_new_tokens, args.task), strict=True
    ):
        print(json.dumps({"input": text, "prediction": result}, ensure_ascii=False))


def cmd_continual(args) -> None:
    seq = load_sequence(args.recipe, args.overrides)
    if args.output_dir:
        seq.output_dir = Path(args.output_dir)
    args.writes = str(seq.output_dir)
    report = run_sequence(seq, stop_after=args.stop_after)
    if "matrix" in report:
        print((Path(seq.output_dir) / "matrix.md").read_text())


def cmd_validate(args) -> None:
    if is_sequence(args.recipe):
        seq = load_sequence(args.recipe, args.overrides)
        if args.show:
            print(dump_stages(seq))
        print(
            f"ok: {args.recipe} is a valid continual-learning sequence ({len(seq.stages)} stages)"
        )
        return
    recipe = load_recipe(args.recipe, args.overrides)
    data = check_data(recipe)  # every data file read fully and checked as train will
    if args.show:
        print(dump_recipe(recipe))
    print(f"ok: {args.recipe} is a valid {recipe.task} recipe for {recipe.model_source}")
    for line in data:
        print(f"  {line}")


def dump_stages(seq) -> str:
    """The resolved continual settings and each stage's task, data and method, as YAML."""
    stages = [
        {"name": s.name, "task": s.recipe.task, "method": seq.continual.method}
        | {
            "data": to_dict(s.recipe.data)
            if s.recipe.data
            else [to_dict(t) for t in s.recipe.tasks]
        }
        for s in seq.stages
    ]
    shown = {"continual": seq.continual.resolved(), "stages": stages}
    return yaml.safe_dump(shown, sort_keys=False, allow_unicode=True)


def cmd_list(args) -> None:
    for title, reg in [
        ("embedded models", EMBEDDED),
        ("task types", TASKS),
        ("adapter methods", ADAPTERS),
        ("objective terms", OBJECTIVES),
        ("continual methods", CONTINUAL_METHODS),
        ("lr schedules", SCHEDULES),
        ("data formats", FORMATS),
        ("metrics", METRICS),
    ]:
        print(f"{title}:")
        for entry in reg:
            print(f"  {entry.name:<26} {entry.help}")
    print(
        "transfer controls: freeze_embeddings, freeze_layers, freeze_patterns, linear_probe, "
        "gradual_unfreeze, layerwise_lr_decay"
    )


def cmd_merge(args) -> None:
    out = merge_run(args.run_dir, args.output or Path(args.run_dir) / "merged")
    print(f"merged model written to {out}")


def cmd_report(args) -> None:
    print(write_report(Path(args.run_dir)))


def cmd_push(args) -> None:
    url = push_run(args.run_dir, args.repo_id, private=args.private, revision=args.revision)
    print(f"pushed {Path(args.run_dir) / 'best'} to {args.repo_id}: {url}")

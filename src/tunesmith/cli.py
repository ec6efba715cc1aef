"""Command line: ``tunesmith train|continual|eval|predict|validate|list|merge|report|push``.

Every subcommand's ``--help`` describes each argument and ends with examples.

Every failure caused by the user's input or the environment (a bad recipe or file, a refused
model, a full disk) prints as one line (``error: ...``, exit 2); ``--debug`` shows the traceback.
Anything else is a bug: its traceback is shown with a request to report it (exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import textwrap
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import yaml

from tunesmith.adapters import ADAPTERS
from tunesmith.config import dump_recipe, load_recipe
from tunesmith.configschema import to_dict
from tunesmith.continual import load_sequence, run_sequence
from tunesmith.data.pipeline import check_data
from tunesmith.data.readers import FORMATS
from tunesmith.errors import TunesmithError, describe_failure, reading
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


def is_sequence(path: str) -> bool:
    """A continual-learning recipe has a top-level ``stages:`` list."""

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return False  # load_recipe reports it properly
    return isinstance(data, dict) and "stages" in data


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


EXAMPLES = {
    "train": """examples:
  tunesmith train recipes/sst2_minilm.yaml
  tunesmith train recipes/sst2_minilm.yaml optim.lr=5e-5 train.epochs=2 --output-dir runs/try
  tunesmith train recipes/sst2_minilm.yaml --resume      # continue a stopped or killed run""",
    "eval": """examples:
  tunesmith eval runs/sst2
  tunesmith eval runs/sst2 --split test""",
    "predict": """examples:
  tunesmith predict runs/sst2 "a gorgeous, witty film" "a dull mess"
  tunesmith predict runs/sst2 --file sentences.txt
  tunesmith predict runs/multitask --task trec "Who wrote Hamlet ?"
  tunesmith predict runs/rte "A man is sleeping.<TAB>Nobody sleeps."   # a pair task""",
    "validate": """examples:
  tunesmith validate recipes/sst2_minilm.yaml
  tunesmith validate recipes/sst2_minilm.yaml adapter.type=lora --show""",
    "continual": """examples:
  tunesmith continual recipes/continual/agnews_sst2_trec_ewc.yaml
  tunesmith continual recipes/continual/agnews_sst2_trec_ewc.yaml continual.method=naive \\
      --output-dir runs/naive --stop-after 1""",
    "list": """example:
  tunesmith list""",
    "merge": """examples:
  tunesmith merge runs/sst2_lora
  tunesmith merge runs/sst2_lora --output models/sst2_merged""",
    "report": """example:
  tunesmith report runs/sst2""",
    "push": """examples:
  tunesmith push runs/sst2-lora --repo-id you/minilm-sst2-lora --private
  tunesmith push runs/sst2-lora --repo-id you/minilm-sst2-lora --revision v2""",
}
OVERRIDES_HELP = (
    "recipe overrides as key.sub=value (YAML values), e.g. optim.lr=5e-5 train.epochs=2"
)
RUN_DIR_HELP = "a finished run folder (the output_dir of tunesmith train)"


def add_command(sub, name: str, summary: str, description: str) -> argparse.ArgumentParser:
    """One subcommand with its one-line summary, a description and its examples."""
    return sub.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, 88),
        epilog=EXAMPLES[name],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tunesmith",
        description=textwrap.fill(
            "tunesmith: fine-tune language models from a YAML recipe (transfer learning, "
            "adapters, distillation, continual and multi-task learning).",
            88,
        ),
        epilog="examples:\n  tunesmith train recipes/sst2_minilm.yaml\n  tunesmith train --help"
        "\n\nSee README.md and docs/ for the recipe keys; tunesmith list shows every method.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--debug", action="store_true", help="show full tracebacks instead of one-line errors"
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = add_command(
        sub,
        "train",
        "train a recipe",
        "Train a recipe: checkpoints, best/, metrics.jsonl, summary.json and report.md go to "
        "the run folder (the recipe's output_dir).",
    )
    t.add_argument("recipe", help="the recipe YAML file")
    t.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in the folder from its last checkpoint",
    )
    t.add_argument("--output-dir", help="run folder (default: the recipe's output_dir)")
    t.set_defaults(func=cmd_train)

    e = add_command(
        sub,
        "eval",
        "evaluate a run's best model on dev/test",
        "Evaluate a run's best/ model on the data splits of its recipe; prints JSON metrics.",
    )
    e.add_argument("run_dir", help=RUN_DIR_HELP)
    e.add_argument(
        "--split",
        nargs="+",
        default=["dev", "test"],
        choices=["train", "dev", "test"],
        help="the splits to evaluate (default: dev test)",
    )
    e.set_defaults(func=cmd_eval)

    r = add_command(
        sub,
        "predict",
        "labels (classification) or generations for texts",
        "Predict with a run's best/ model: one JSON line per input (a label and its score, "
        "tags per word, or a generation).",
    )
    r.add_argument("run_dir", help=RUN_DIR_HELP)
    r.add_argument(
        "texts", nargs="*", help="inputs; for a pair task (RTE) write 'first<TAB>second'"
    )
    r.add_argument("--file", help="a text file with one input per line (blank lines skipped)")
    r.add_argument(
        "--max-new-tokens",
        type=int,
        default=None,
        help="generative tasks: tokens to generate (default: the recipe's "
        "train.generate_max_new_tokens)",
    )
    r.add_argument("--task", help="multi-task runs: the task whose head predicts")
    r.set_defaults(func=cmd_predict)

    v = add_command(
        sub,
        "validate",
        "check a recipe without loading any model",
        "Check a recipe (keys, types, combinations, data files read and checked as train "
        "will) without loading model weights.",
    )
    v.add_argument("recipe", help="the recipe YAML file (or a continual sequence)")
    v.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    v.add_argument("--show", action="store_true", help="print the resolved recipe, every key")
    v.set_defaults(func=cmd_validate)

    c = add_command(
        sub,
        "continual",
        "train a sequence of tasks (stages:) and report the accuracy matrix, ACC, BWT and "
        "forgetting",
        "Train the stages of a continual-learning recipe in order and score every task after "
        "every stage; finished stages are kept, so running it again continues.",
    )
    c.add_argument("recipe", help="a sequence recipe YAML file (with stages:)")
    c.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    c.add_argument("--output-dir", help="sequence folder (default: the recipe's output_dir)")
    c.add_argument(
        "--stop-after", type=int, default=None, help="stop after N stages (run again to continue)"
    )
    c.set_defaults(func=cmd_continual)

    add_command(
        sub,
        "list",
        "embedded models, task types, methods",
        "List the embedded models, task types, adapter methods, objective terms, continual "
        "methods, schedules, data formats and metrics.",
    ).set_defaults(func=cmd_list)

    m = add_command(
        sub,
        "merge",
        "fold a run's LoRA/IA3 adapter into the base (HF folder)",
        "Fold a run's LoRA/IA3 adapter into its base model and save a plain Hugging Face folder.",
    )
    m.add_argument("run_dir", help="a finished adapter run folder")
    m.add_argument("--output", help="output folder (default: RUN_DIR/merged)")
    m.set_defaults(func=cmd_merge)

    rep = add_command(
        sub,
        "report",
        "(re)write a run's report.md and curves.png",
        "Write a run's report.md and curves.png again from its metrics.jsonl and summary.json.",
    )
    rep.add_argument("run_dir", help="a run folder (finished or not)")
    rep.set_defaults(func=cmd_report)

    pu = add_command(
        sub,
        "push",
        "upload a run's best/ (model card included) to the Hugging Face hub",
        "Upload RUN_DIR/best/ (model, or adapter + tokenizer, and the README.md model card) to a "
        "model repo on the Hugging Face hub, creating the repo when missing. Needs a token (hf "
        "auth login, or HF_TOKEN) and HF_HUB_OFFLINE unset.",
    )
    pu.add_argument("run_dir", help="a finished run folder (the output_dir of tunesmith train)")
    pu.add_argument("--repo-id", required=True, help="the hub repo, e.g. you/minilm-sst2-lora")
    pu.add_argument("--private", action="store_true", help="create the repo as private")
    pu.add_argument("--revision", help="branch to push to (created when missing; default main)")
    pu.set_defaults(func=cmd_push)
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse, letting ``key=value`` overrides come after options too (``train R --resume a.b=1``)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any(x.startswith("-") or "=" not in x for x in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    return args


class StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record, not the stream of the
    first ``main`` call (which a test harness or notebook may have closed since)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(debug: bool) -> None:
    """``tunesmith: ...`` log lines on stderr; one handler however often ``main`` is called."""
    log = logging.getLogger("tunesmith")
    for old in [h for h in log.handlers if getattr(h, "tunesmith_cli", False)]:
        log.removeHandler(old)
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("tunesmith: %(message)s"))
    handler.tunesmith_cli = True
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if debug else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    setup_logging(args.debug)
    with plain_output():
        try:
            args.func(args)
        except KeyboardInterrupt:
            print(f"interrupted{RESUME_HINT.get(args.command, '')}", file=sys.stderr)
            return 130
        except Exception as exc:
            if args.debug:
                raise
            message = describe_failure(exc, where=getattr(args, "writes", None))
            if message is None:  # not a failure tunesmith expects: show where it happened
                traceback.print_exc()
                print(BUG_HINT, file=sys.stderr)
                return 1
            print(f"error: {message}", file=sys.stderr)
            return 2
    return 0


RESUME_HINT = {
    "train": "; the last complete checkpoint is kept: continue with `tunesmith train RECIPE "
    "--resume`",
    "continual": "; finished stages and the last complete checkpoint are kept: run the same "
    "`tunesmith continual RECIPE` again to continue",
}
BUG_HINT = (
    "tunesmith: this looks like a bug in tunesmith, not in your input; please report it with the "
    "traceback above and the command you ran"
)


@contextlib.contextmanager
def plain_output() -> Iterator[None]:
    """Output fit for a terminal or a log file: tunesmith's warnings as one ``tunesmith: warning:``
    line (no Python source line); no per-load/per-save progress bars from transformers, and none
    at all (hub downloads included) when stderr is not a terminal."""
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as hf_logging

    hub_was_off, hf_was_on = are_progress_bars_disabled(), hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # also turns off the hub's bars
    if sys.stderr.isatty() and not hub_was_off:
        enable_progress_bars()  # downloads keep their bar on a terminal
    shown = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        yield
    finally:
        warnings.showwarning = shown
        if hf_was_on:
            hf_logging.enable_progress_bar()
        if hub_was_off:
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()


_PACKAGE_DIR = str(Path(__file__).parent)
_python_show_warning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """tunesmith's own warnings as one line; other packages' warnings as Python prints them."""
    if not str(filename).startswith(_PACKAGE_DIR):
        _python_show_warning(message, category, filename, lineno, file, line)
        return
    print(f"tunesmith: warning: {message}", file=file or sys.stderr)


if __name__ == "__main__":
    sys.exit(main())

"""The argument parser: every subcommand with its arguments, help text and examples.

``key=value`` recipe overrides may come after options too (:func:`parse_args`).
"""

from __future__ import annotations

import argparse
import textwrap

from tunesmith.cli.commands import (
    cmd_continual,
    cmd_eval,
    cmd_list,
    cmd_merge,
    cmd_predict,
    cmd_push,
    cmd_report,
    cmd_train,
    cmd_validate,
)

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

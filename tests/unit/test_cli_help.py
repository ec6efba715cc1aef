"""CLI polish (issue 15 item 7): ``python -m tunesmith`` runs the CLI; every subcommand's
``--help`` describes each argument, ends with an example and has no RST backticks."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunesmith.cli.parser import build_parser

SRC = Path(__file__).resolve().parents[2] / "src"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_every_command_has_a_help_line():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert {c.dest for c in sub._choices_actions} == set(subcommands())
    assert all(c.help for c in sub._choices_actions)


@pytest.mark.parametrize("name", sorted(subcommands()))
def test_subcommand_help_describes_every_argument_and_shows_an_example(name):
    parser = subcommands()[name]
    for action in parser._actions:
        if not isinstance(action, argparse._HelpAction):
            assert action.help, f"tunesmith {name}: {action.dest} has no help text"
    text = parser.format_help()
    assert parser.description and "example" in text
    assert f"tunesmith {name}" in (parser.epilog or "")
    assert "`" not in text, f"tunesmith {name} --help has RST backticks"


def test_top_level_help_has_no_backticks_and_an_example():
    text = build_parser().format_help()
    assert "`" not in text and "example" in text


def test_python_dash_m_tunesmith_runs_the_cli():
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "tunesmith", "train", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: tunesmith train") and "examples:" in done.stdout

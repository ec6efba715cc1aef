"""Command line: ``tunesmith train|continual|eval|predict|validate|list|merge|report|push``.

Every subcommand's ``--help`` describes each argument and ends with examples.

Every failure caused by the user's input or the environment (a bad recipe or file, a refused
model, a full disk) prints as one line (``error: ...``, exit 2); ``--debug`` shows the traceback.
Anything else is a bug: its traceback is shown with a request to report it (exit 1).
"""

from __future__ import annotations

import os
import sys
import traceback

from tunesmith.cli.output import plain_output, setup_logging
from tunesmith.cli.parser import parse_args
from tunesmith.errors import describe_failure

__all__ = ["main"]


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

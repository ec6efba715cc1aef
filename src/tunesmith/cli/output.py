"""What the command line prints besides results: ``tunesmith: ...`` log lines, tunesmith's warnings
as one line each, and progress bars only where they help (a terminal)."""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path


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


_PACKAGE_DIR = str(Path(__file__).parents[1])  # the tunesmith package
_python_show_warning = warnings.showwarning


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """tunesmith's own warnings as one line; other packages' warnings as Python prints them."""
    if not str(filename).startswith(_PACKAGE_DIR):
        _python_show_warning(message, category, filename, lineno, file, line)
        return
    print(f"tunesmith: warning: {message}", file=file or sys.stderr)

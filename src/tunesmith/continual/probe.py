"""A fixed general-capability probe of a causal-LM task sequence: held-out perplexity per stage.

Fine-tuning a language model on a few narrow tasks can cost it what it knew before. The probe
(``continual.probe:``, a ``data:`` section of held-out text such as instruction data the sequence
never trains on) measures that: its perplexity on the initial model and after every stage, and the
drift ``ppl_k - ppl_initial`` (positive = the model got worse at general text). The probe reads
its ``test`` split when it has one (given or carved with ``split: {test: f}``), else its
``train`` split; each measurement is one file (``rows/probe-initial.json``, ``rows/probe-<k>.json``)
so a resumed sequence measures only what is missing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunesmith.config import Recipe
from tunesmith.data.pipeline import build_datasets
from tunesmith.train.evaluation import evaluate

__all__ = ["Probe", "probe_markdown", "probe_summary"]

METRIC = "perplexity"


class Probe:
    """Measures one probe recipe's held-out perplexity with the sequence's models."""

    def __init__(self, recipe: Recipe, ctx: Any):
        self.recipe, self.ctx = recipe, ctx
        self._examples: list[dict] | None = None

    def examples(self) -> list[dict]:
        if self._examples is None:
            data = build_datasets(self.recipe, self.ctx.tokenizer)
            self._examples = data.test or data.train
        return self._examples

    def path(self, name: str) -> Path:
        return self.ctx.out / "rows" / f"probe-{name}.json"

    def measure(self, name: str, model: Callable[[], Any]) -> float:
        """The probe's perplexity under ``model()`` (called only when ``probe-<name>.json`` is
        missing), written to that file."""
        path = self.path(name)
        if path.is_file():
            return float(json.loads(path.read_text())["metrics"][METRIC])
        ctx = self.ctx
        batch = self.recipe.train.eval_batch_size
        examples = self.examples()
        with ctx.scoring():
            metrics = evaluate(
                model(), examples, ctx.collator(), "causal_lm", None, ctx.accelerator, batch
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"metrics": metrics, "examples": len(examples)}))
        return float(metrics[METRIC])

    def summary(self, stages: int) -> dict[str, Any]:
        """From the measurement files only (a resumed sequence need not re-read the probe)."""
        values = [self.measure(str(k), _missing) for k in range(stages)]
        examples = json.loads(self.path("initial").read_text())["examples"]
        return probe_summary(self.measure("initial", _missing), values, examples)


def _missing():
    raise FileNotFoundError("a probe measurement is missing")


def probe_summary(initial: float, after: list[float], examples: int) -> dict[str, Any]:
    """``matrix.json``'s ``probe``: the initial and per-stage perplexities and their drift."""
    drift = [round(v - initial, 6) for v in after]
    return {
        "metric": METRIC,
        "examples": examples,
        "initial": round(initial, 6),
        "after_stage": [round(v, 6) for v in after],
        "drift": drift,
        "final_drift": drift[-1] if drift else None,
        "final_drift_pct": round(100 * (after[-1] / initial - 1), 3) if after else None,
    }


def probe_markdown(summary: dict[str, Any], stages: list[str]) -> str:
    """The probe's section of ``matrix.md``: one line per stage with its drift."""
    lines = [
        "",
        f"## General-capability probe (held-out {summary['metric']}, "
        f"{summary['examples']} examples)",
        "",
        f"| after | {summary['metric']} | drift vs initial |",
        "|---|---|---|",
        f"| initial model | {summary['initial']:.4f} | |",
    ]
    for k, (name, value, drift) in enumerate(
        zip(stages, summary["after_stage"], summary["drift"], strict=True)
    ):
        lines.append(f"| stage {k} ({name}) | {value:.4f} | {drift:+.4f} |")
    return "\n".join(lines) + "\n"

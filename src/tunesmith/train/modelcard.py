"""``best/README.md``: a model card, so a run's ``best/`` explains itself on the model hub.

The card is written at the end of every run (:func:`write_model_card`, from the files the run
leaves: ``config.yaml``, ``summary.json``, ``best/``), and again by ``tunesmith push`` for runs
older than the card. It holds YAML front matter the hub reads (``base_model`` -- an embedded
model's hub id --, ``library_name``: ``transformers`` for a full model, ``peft`` for a PEFT-format
adapter, ``tunesmith`` for the other adapters; ``pipeline_tag``, ``tags``, ``datasets``,
``metrics`` and a ``model-index`` with the final dev/test scores), then the recipe (what differs
from the defaults), the metrics table and how to load the folder with transformers, peft and
tunesmith, with the run's real folder names.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import yaml

from tunesmith.atomic import atomic_write_text
from tunesmith.config import Recipe, load_recipe
from tunesmith.embedded import hub_id
from tunesmith.errors import ModelError, reading
from tunesmith.objectives.continual.term import ContinualTerm
from tunesmith.registry import OBJECTIVES
from tunesmith.tasks import TASKS

__all__ = ["CARD_FILE", "card_metadata", "model_card", "write_model_card"]

CARD_FILE = "README.md"

PIPELINE_TAGS = {  # task kind -> the hub's pipeline tag
    "sequence_classification": "text-classification",
    "token_classification": "token-classification",
    "causal_lm": "text-generation",
    "seq2seq": "text2text-generation",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # owner/name: what the hub can link to


@dataclasses.dataclass
class RunFacts:
    """What the card says about a run, read once from its files."""

    run_dir: Path
    recipe: Recipe
    summary: dict[str, Any]
    best: dict[str, Any]  # best/tunesmith.json
    adapter: dict[str, Any] | None  # best/tunesmith_adapter.json of an adapter run
    peft: bool  # best/ holds PEFT's adapter_config.json

    @property
    def base_model(self) -> str:
        """The base's hub id where it has one (embedded models), else the recipe's source."""
        if self.adapter and self.adapter.get("base_model"):
            return str(self.adapter["base_model"])
        return hub_id(self.recipe.model_source) or self.recipe.model_source

    @property
    def id2label(self) -> dict[int, str] | None:
        saved = (self.adapter or {}).get("id2label")
        if saved:
            return {int(k): str(v) for k, v in saved.items()}
        config = self.run_dir / "best" / "config.json"
        if config.is_file() and self.recipe.task in _LABELLED:
            with reading(config, ModelError):
                labels = json.loads(config.read_text()).get("id2label")
            return {int(k): str(v) for k, v in (labels or {}).items()} or None
        return None


_LABELLED = {"sequence_classification", "token_classification"}


def read_facts(run_dir: str | Path, recipe: Recipe | None = None) -> RunFacts:
    run_dir = Path(run_dir)
    best = run_dir / "best"

    def read_json(path: Path) -> dict[str, Any]:
        with reading(path, ModelError):
            return json.loads(path.read_text(encoding="utf-8"))

    if recipe is None:
        recipe = load_recipe(run_dir / "config.yaml", check_paths=False)
    summary_path = run_dir / "summary.json"
    return RunFacts(
        run_dir=run_dir,
        recipe=recipe,
        summary=read_json(summary_path) if summary_path.is_file() else {},
        best=read_json(best / "tunesmith.json") if (best / "tunesmith.json").is_file() else {},
        adapter=read_json(best / "tunesmith_adapter.json")
        if (best / "tunesmith_adapter.json").is_file()
        else None,
        peft=(best / "adapter_config.json").is_file(),
    )


# ---------------------------------------------------------------------------------------------
# Front matter


def _adapter_type(recipe: Recipe) -> str | None:
    return recipe.adapter_settings()[2].type if recipe.adapter is not None else None


def _datasets(recipe: Recipe) -> list[str]:
    """The data each split names (a dataset name, or a file path as the recipe gives it)."""
    sections = [t.data for t in recipe.tasks] if recipe.tasks else [recipe.data]
    names: list[str] = []
    for data in sections:
        for split in ("train", "dev", "test"):
            source = getattr(data, split, None) if data is not None else None
            name = getattr(source, "dataset", None) or getattr(source, "path", None)
            if name:
                name = str(name).removeprefix("embedded:")
                names += [name] if name not in names else []
    return names


def _tags(facts: RunFacts) -> list[str]:
    recipe = facts.recipe
    tags = ["tunesmith", recipe.task]
    if recipe.tasks:
        tags += [t.name for t in recipe.tasks]
    kind = _adapter_type(recipe)
    tags += [kind, "adapter"] if kind else []
    if recipe.distill is not None or recipe.student is not None:
        tags.append("distillation")
    continual = [
        o.name
        for o in recipe.objectives
        if o.name in OBJECTIVES and issubclass(OBJECTIVES.get(o.name), ContinualTerm)
    ]
    tags += ["continual", *continual] if continual else []
    return list(dict.fromkeys(tags))


def _final_metrics(summary: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {
        split: {k: v for k, v in summary[split].items() if isinstance(v, int | float)}
        for split in ("dev", "test")
        if isinstance(summary.get(split), dict)
    }


def _model_index(facts: RunFacts, name: str) -> list[dict[str, Any]]:
    """The hub's ``model-index``: one result per scored split."""
    task = facts.recipe.task
    datasets = _datasets(facts.recipe)
    dataset = datasets[0] if datasets else "custom"
    results = [
        {
            "task": {"type": PIPELINE_TAGS.get(task, task), "name": task},
            "dataset": {"name": dataset, "type": dataset, "split": split},
            "metrics": [
                {"type": k, "value": round(float(v), 6), "name": f"{split} {k}"}
                for k, v in values.items()
            ],
        }
        for split, values in _final_metrics(facts.summary).items()
        if values
    ]
    return [{"name": name, "results": results}] if results else []


def card_metadata(facts: RunFacts) -> dict[str, Any]:
    """The card's YAML front matter."""
    base = facts.base_model
    library = "transformers" if facts.adapter is None else "peft" if facts.peft else "tunesmith"
    meta: dict[str, Any] = {}
    if _HUB_ID.match(base) and not Path(base).exists():
        meta["base_model"] = base
    meta["library_name"] = library
    if facts.recipe.task in PIPELINE_TAGS:
        meta["pipeline_tag"] = PIPELINE_TAGS[facts.recipe.task]
    meta["tags"] = _tags(facts)
    meta["datasets"] = _datasets(facts.recipe)
    metrics = _final_metrics(facts.summary)
    meta["metrics"] = list(dict.fromkeys(k for values in metrics.values() for k in values))
    meta["model-index"] = _model_index(facts, facts.run_dir.resolve().name)
    return meta


# ---------------------------------------------------------------------------------------------
# Body


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING  # required: always shown


def compact(obj: Any) -> Any:
    """A recipe (or section) as a dict of what differs from the defaults: the recipe as a user
    would write it, not the hundred resolved keys of ``config.yaml``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {}
        for field in dataclasses.fields(obj):
            value, default = getattr(obj, field.name), _default(field)
            if field.name == "type" or default is dataclasses.MISSING or value != default:
                out[field.name] = compact(value)
        return out
    if isinstance(obj, list | tuple):
        return [compact(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): compact(v) for k, v in obj.items()}
    return obj


def _method(facts: RunFacts) -> str:
    recipe, summary = facts.recipe, facts.summary
    kind = _adapter_type(recipe)
    what = f"the `{kind}` adapter" if kind else "full fine-tuning"
    if recipe.transfer.linear_probe:
        what = "a linear probe (frozen encoder)"
    params = ""
    if summary.get("trainable_params") and summary.get("total_params"):
        t, n = summary["trainable_params"], summary["total_params"]
        params = f" ({t:,} of {n:,} parameters trained, {100 * t / n:.2f}%)"
    return what + params


def _summary_lines(facts: RunFacts) -> list[str]:
    recipe, s = facts.recipe, facts.summary
    lines = [
        f"`{facts.base_model}` fine-tuned for **{recipe.task}** with "
        f"tunesmith through {_method(facts)}."
    ]
    if s.get("steps") is not None:
        best = (
            f"; the kept weights are from step {s['best_step']}, chosen by dev "
            f"`{s.get('metric', '?')}`"
            if s.get("best_step")
            else "; the kept weights are the last step's"
        )
        lines.append(
            f"Trained {s['steps']:,} steps ({s.get('epochs', '?')} epochs) on "
            f"{s.get('train_examples', 0):,} examples{best}."
        )
    if recipe.distill is not None:
        lines.append(f"Distilled from the teacher `{recipe.distill.teacher}`.")
    if recipe.model_source == "smollm2":
        lines.append(
            "The base weights are tunesmith's embedded SmolLM2-135M-Instruct: the release's Q4_1 "
            "GGUF dequantised to float32, close to but not bit-identical with the hub weights."
        )
    pooling = facts.best.get("pooling")
    if pooling in ("cls", "mean"):
        lines.append(
            f"**The classifier reads the {pooling} of the token states** (`head.pooling`), which "
            "plain transformers / peft loading does not rebuild (it feeds BERT's pooler output): "
            "load with tunesmith to get this run's scores."
        )
    return lines


def _metrics_table(facts: RunFacts) -> list[str]:
    metrics = _final_metrics(facts.summary)
    if not metrics:
        return ["No dev or test set was scored."]
    rows = ["| split | metric | value |", "|---|---|---|"]
    for split, values in metrics.items():
        rows += [f"| {split} | {k} | {v:.4f} |" for k, v in values.items()]
    return rows


def _labels_table(id2label: dict[int, str] | None) -> list[str]:
    if not id2label:
        return []
    rows = ["## Labels", "", "| id | label |", "|---|---|"]
    return rows + [f"| {i} | {label} |" for i, label in sorted(id2label.items())] + [""]


def _load_hf(facts: RunFacts, path: str) -> list[str]:
    """How transformers (full model) or peft (PEFT-format adapter) loads ``path``."""
    task, best = facts.recipe.task, facts.run_dir / "best"
    if task not in TASKS or (best / "multitask.json").is_file():
        return []  # a multi-head model: only tunesmith rebuilds it
    auto = TASKS.get(task).auto_class.__name__  # AutoModelForSequenceClassification, ...
    labels = facts.id2label if task in _LABELLED else None
    kwargs = ""
    if facts.adapter is not None and labels:  # the hub base has no labels: name them
        label2id = {v: k for k, v in labels.items()}
        kwargs = f"\n    path,\n    id2label={labels!r},\n    label2id={label2id!r},\n"
    if facts.adapter is None:
        cls, module, what = auto, "transformers", "transformers"
    elif facts.peft:
        cls = auto.replace("AutoModel", "AutoPeftModel")
        module, what = "peft", f"peft (it fetches the base `{facts.base_model}`)"
    else:
        return []
    return [
        f"With {what}:",
        "",
        "```python",
        f"from {module} import {cls}",
        "from transformers import AutoTokenizer",
        "",
        f'path = "{path}"  # or the hub repo id after `tunesmith push`',
        f"model = {cls}.from_pretrained({kwargs or 'path'})",
        "tokenizer = AutoTokenizer.from_pretrained(path)",
        "```",
        "",
    ]


def _load_tunesmith(facts: RunFacts, run: str, path: str) -> list[str]:
    task = facts.recipe.task
    example = "Some text to score." if task in _LABELLED else "Write a haiku about autumn."
    return [
        "With tunesmith (offline too), from the run folder or from this folder:",
        "",
        "```bash",
        f'tunesmith predict {run} "{example}"',
        f"tunesmith eval {run}",
        "```",
        "",
        "```python",
        "from tunesmith.adapters import load_model_or_adapter",
        "from tunesmith.models import load_tokenizer",
        "",
        "# any copy of this folder; an embedded base loads from its package",
        f'model = load_model_or_adapter("{path}", "{task}")',
        f'tokenizer = load_tokenizer("{path}")',
        "```",
        "",
    ]


def model_card(facts: RunFacts) -> str:
    """The card's text: front matter, summary, labels, metrics, recipe, loading."""
    run = str(facts.run_dir)
    path = str(facts.run_dir / "best")
    front = yaml.safe_dump(card_metadata(facts), sort_keys=False, allow_unicode=True)
    recipe = yaml.safe_dump(compact(facts.recipe), sort_keys=False, allow_unicode=True)
    lines = [
        "---",
        front.rstrip("\n"),
        "---",
        "",
        f"# {facts.run_dir.resolve().name}",
        "",
        *[line + "\n" for line in _summary_lines(facts)],
        *_labels_table(facts.id2label),
        "## Metrics",
        "",
        *_metrics_table(facts),
        "",
        "## Recipe",
        "",
        "What differs from tunesmith's defaults (the run's `config.yaml` has every key):",
        "",
        "```yaml",
        recipe.rstrip("\n"),
        "```",
        "",
        "## How to load it",
        "",
        *_load_hf(facts, path),
        *_load_tunesmith(facts, run, path),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_model_card(run_dir: str | Path, recipe: Recipe | None = None) -> Path:
    """Write ``run_dir/best/README.md`` from the run's files; returns its path."""
    facts = read_facts(run_dir, recipe)
    path = facts.run_dir / "best" / CARD_FILE
    atomic_write_text(path, model_card(facts))
    return path

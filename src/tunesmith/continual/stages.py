"""Run a task sequence through the one training loop: stage after stage, scoring every task.

Each stage is an ordinary run of :func:`tunesmith.train.loop.train` (its own run dir, resumable
checkpoints, ``best/``). What makes it continual is only what the runner puts in the stage's
recipe: the previous stage's run dir as ``model``, the method's objective terms reading a state
file (``objectives: [{name: ewc, weight: lambda, params: {state: ...}}]``) and, for replay with a
shared head, a training file with replayed records mixed in. Between stages the hooks of
:mod:`tunesmith.continual.hooks` run. Layout of the sequence directory::

    sequence.yaml                  resolved settings (a resume must use the same)
    data/<task>/{train,dev,test}.jsonl   each task's splits, frozen once
    stages/<k>-<task>/             the stage's tunesmith run dir (summary.json = finished)
    heads/<task>.safetensors       separate heads: each task's label projection
    state/stage-<k>.safetensors    the ContinualState handed to stage k
    replay/after-<k>.json          the reservoir after stage k
    rows/initial.json, rows/<k>.json   row k of R (and the initial model's scores)
    matrix.json, matrix.png, matrix.md   R, ACC, BWT, forgetting, FWT

A sequence run again with the same settings skips finished stages and redoes only missing
files; a stage killed mid-way resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from tunesmith.adapters import load_model_or_adapter
from tunesmith.config import Recipe, parse_recipe
from tunesmith.configschema import to_dict
from tunesmith.continual.config import (
    ContinualConfig,
    Stage,
    TaskSequence,
    check_sequence,
    probe_recipe,
    same_settings,
)
from tunesmith.continual.data import materialize, stage_recipe, write_jsonl
from tunesmith.continual.hooks import (
    SequenceContext,
    build_state,
    load_stage_model,
    save_head,
    score_row,
    write_row,
)
from tunesmith.continual.labelwords import LABEL_METRICS, label_words
from tunesmith.continual.metrics import matrix_report
from tunesmith.continual.probe import Probe, probe_markdown
from tunesmith.continual.starts import write_adapter_start
from tunesmith.errors import ConfigError
from tunesmith.heads import fresh_head
from tunesmith.metrics import LOWER_IS_BETTER
from tunesmith.models import load_tokenizer
from tunesmith.train.callbacks import CallbackList
from tunesmith.train.loop import train

__all__ = ["run_sequence"]


def run_sequence(
    stages: TaskSequence | Sequence[Stage] | Sequence[tuple[str, Recipe]],
    method: str | ContinualConfig | None = None,
    out_dir: str | Path | None = None,
    *,
    stop_after: int | None = None,
    callbacks: Iterable[Any] = (),
) -> dict[str, Any]:
    """Train the stages in order with ``method`` and score every task after every stage.

    ``stages``: a :class:`TaskSequence` (from :func:`load_sequence`), or ``[(name, recipe)]`` /
    ``[Stage]``; ``method``: a method name (defaults for everything else) or a
    :class:`ContinualConfig` (default: the sequence's, else ``naive``); ``out_dir``: the
    sequence directory (default: the sequence's ``output_dir``). ``stop_after=n`` returns after
    the first n stages (run again without it to continue). ``callbacks`` get every stage's
    training hooks and ``on_stage_end(name, report)``; one that stops training (or returns True
    from ``on_stage_end``) ends the sequence there (run it again to continue).

    Returns the content of ``matrix.json`` (tasks, matrix, initial, acc, bwt, forgetting,
    forgetting_per_task, fwt, method, stages) once every stage is done, else
    ``{"completed_stages": n, "rows": [...]}``.
    """
    if isinstance(stages, TaskSequence):
        cfg = method if method is not None else stages.continual
        out_dir = out_dir if out_dir is not None else stages.output_dir
        stages = stages.stages
    else:
        cfg = method if method is not None else "naive"
    if isinstance(cfg, str):
        cfg = ContinualConfig.parse({"method": cfg})
    stages = [s if isinstance(s, Stage) else Stage(*s) for s in stages]
    if out_dir is None:
        raise ConfigError("output_dir", "a task sequence needs an output directory")
    check_sequence(stages, cfg)
    return _Runner(stages, cfg, Path(out_dir), list(callbacks)).run(stop_after)


class _Runner:
    def __init__(
        self, stages: list[Stage], cfg: ContinualConfig, out: Path, callbacks: list[Any] = ()
    ):
        self.stages, self.cfg, self.out = stages, cfg, out.expanduser().resolve()
        self.callbacks = list(callbacks)
        first = stages[0].recipe
        classification = first.task == "sequence_classification"
        # joint training with separate heads trains one shared encoder with a head per task
        # (task: multi_head), the upper bound of the separate-head methods
        shared = cfg.heads == "shared" or not classification
        self._guard()
        prefix = shared and classification and cfg.label_prefix
        data_root = self.out / "data"
        tasks = [materialize(s.name, s.recipe, data_root, prefix) for s in stages]
        union = None
        if shared and classification:
            union = list(dict.fromkeys(label for t in tasks for label in t.labels))
        default_metric = "accuracy" if classification else "perplexity"
        self.method = cfg.create_method()
        self.ctx = SequenceContext(
            out=self.out,
            cfg=cfg,
            method=self.method,
            tasks=tasks,
            task_type=first.task,
            shared=shared,
            seed=cfg.seed if cfg.seed is not None else first.seed,
            tokenizer=load_tokenizer(first.model_source),
            metric=cfg.metric or default_metric,
            union=union,
        )
        if first.task == "causal_lm" and self.ctx.metric in LABEL_METRICS:
            given = cfg.label_words
            split = cfg.eval_split
            self.ctx.words = [label_words(t, given.get(t.name), split) for t in tasks]
        probe = probe_recipe(cfg, first)
        self.probe = Probe(probe, self.ctx) if probe is not None else None
        self.initial_model = first.model_source
        self.joint = self.method.joint

    def _guard(self) -> None:
        """Refuse to continue a sequence directory made with other settings."""
        text = yaml.safe_dump(
            {
                "continual": self.cfg.resolved(),
                "stages": [{"name": s.name, "recipe": to_dict(s.recipe)} for s in self.stages],
            },
            sort_keys=False,
        )
        saved = self.out / "sequence.yaml"
        if saved.is_file() and not same_settings(saved.read_text(), text):
            raise ConfigError(
                "output_dir",
                f"{self.out} holds a task sequence with other settings",
                "choose another output_dir, or delete it to start over",
            )
        self.out.mkdir(parents=True, exist_ok=True)
        saved.write_text(text)

    # -- the sequence -----------------------------------------------------------------------

    def plan(self) -> list[str]:
        return ["joint"] if self.joint else self.ctx.names

    def run(self, stop_after: int | None) -> dict[str, Any]:
        t0 = time.perf_counter()
        loaded: list = []

        def initial_model():  # loaded once, and only when a score is missing
            if not loaded:
                loaded.append(self._initial_model())
            return loaded[0]

        initial = self._initial_row(initial_model) if self.cfg.evaluate_initial else None
        if self.probe is not None:
            self.probe.measure("initial", initial_model)
        del loaded[:]
        plan, rows, stages = self.plan(), [], []
        for k, name in enumerate(plan):
            run_dir = self.ctx.run_dir(k, name)
            if not (run_dir / "summary.json").is_file():
                recipe = self._stage_recipe(k, run_dir)
                resume = (run_dir / "config.yaml").is_file()
                if train(recipe, run_dir, resume=resume, callbacks=self.callbacks).get("stopped"):
                    return {"completed_stages": k, "rows": rows, "stopped": True}
            if not self.cfg.keep_state:  # a finished stage never resumes: its best/ is what counts
                shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
            rows.append(self._after_stage(k, name))
            summary = json.loads((run_dir / "summary.json").read_text())
            stages.append({"name": name, "run_dir": str(run_dir), **_brief(summary)})
            ended = CallbackList(self.callbacks)
            if ended.call("on_stage_end", name, {**stages[-1], "row": rows[-1]}):
                return {"completed_stages": k + 1, "rows": rows, "stopped": True}
            if stop_after is not None and k + 1 >= stop_after and k + 1 < len(plan):
                return {"completed_stages": k + 1, "rows": rows}
        metric = self.ctx.metric
        appendix = ""
        extra: dict[str, Any] = {}
        if self.probe is not None:
            extra["probe"] = self.probe.summary(len(plan))
            appendix = probe_markdown(extra["probe"], plan)
        if self.ctx.words is not None:
            extra["label_words"] = dict(zip(self.ctx.names, self.ctx.words, strict=True))
        extra |= {
            "method": self.cfg.method,
            "heads": "shared" if self.ctx.shared else "separate",
            "seed": self.ctx.seed,
            "stages": stages,
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        return matrix_report(
            rows,
            self.ctx.names,
            self.out,
            initial,
            metric=metric,
            higher_is_better=metric not in LOWER_IS_BETTER,
            extra=extra,
            appendix=appendix,
        )

    def _initial_row(self, model) -> list[float]:
        path = self.out / "rows" / "initial.json"
        if path.is_file():
            return json.loads(path.read_text())["row"]
        return write_row(path, score_row(self.ctx, model(), trained=-1), self.ctx.metric)

    def _initial_model(self):
        ctx, kwargs = self.ctx, {}
        if ctx.classification:  # the head stage 0 starts from (separate: swapped for fresh ones)
            labels = ctx.union if ctx.shared else ctx.tasks[0].labels
            kwargs = dict(id2label=dict(enumerate(labels)))
        first = self.stages[0].recipe
        model = load_model_or_adapter(
            self.initial_model, ctx.task_type, init_seed=first.seed, **kwargs
        )
        return model.to(ctx.accelerator.device).eval()

    def _after_stage(self, k: int, name: str) -> list[float]:
        ctx = self.ctx
        run_dir = ctx.run_dir(k, name)
        best = run_dir / "best"
        cache: list = []

        def model():
            if not cache:
                cache.append(load_stage_model(ctx, best))
            return cache[0]

        separate = ctx.classification and not ctx.shared
        if separate and not self.joint and not ctx.head_path(name).is_file():
            save_head(ctx, model(), name)
        row_path = self.out / "rows" / f"{k}.json"
        if row_path.is_file():
            row = json.loads(row_path.read_text())["row"]
        else:
            trained = len(ctx.tasks) - 1 if self.joint else k
            own = self._own_model(k, model) if self.method.routed else None
            row = write_row(row_path, score_row(ctx, model(), trained, own), ctx.metric)
        if self.probe is not None:
            self.probe.measure(str(k), model)
        if not self.joint and k + 1 < len(ctx.tasks):
            self.method.after_stage(ctx, k)
            if self._terms(k + 1) and not ctx.state_path(k + 1).is_file():
                build_state(ctx, k + 1, model(), best)
        init = self.out / "init" / f"{k}-{name}"
        if init.is_dir() and not self.cfg.keep_state:
            shutil.rmtree(init, ignore_errors=True)
        return row

    def _own_model(self, k: int, current):
        """Task-id routing: task j <= k is scored with stage j's model (its adapter + head)."""
        ctx = self.ctx

        def own(j: int):
            if j == k:
                return current()
            return load_stage_model(ctx, ctx.run_dir(j, ctx.names[j]) / "best")

        return own

    # -- one stage's recipe -----------------------------------------------------------------

    def _terms(self, k: int) -> list[dict[str, Any]]:
        """The method's objective terms for stage k (none at stage 0: nothing to protect)."""
        if k == 0 or self.joint:
            return []
        return self.method.terms(self.ctx, k)

    def _stage_recipe(self, k: int, run_dir: Path) -> Recipe:
        ctx = self.ctx
        if self.joint:
            return self._joint_recipe(run_dir)
        task = ctx.tasks[k]
        return stage_recipe(
            task,
            labels=ctx.labels_for(k),
            train_path=self.method.train_file(ctx, k),
            model=self.initial_model if k == 0 else self._start_model(k),
            output_dir=str(run_dir),
            objectives=[to_dict(o) for o in task.recipe.objectives] + self._terms(k),
            adapter=self._adapter(k),
        )

    def _adapter(self, k: int) -> Any:
        """Stage k's ``adapter:`` section (the method may change it: O-LoRA adds a LoRA)."""
        adapter = self.ctx.tasks[k].recipe.adapter
        return None if adapter is None else self.method.stage_adapter(self.ctx, k, adapter)

    def _start_model(self, k: int) -> str:
        """Stage k starts from stage k-1's best model. Separate heads with as many labels as the
        previous task: the loop would keep the old head, so start from a copy with a fresh one."""
        ctx = self.ctx
        if self.method.routed:  # a fresh adapter (and head) per task, on the initial model
            return self.initial_model
        prev = ctx.run_dir(k - 1, ctx.names[k - 1])
        task, before = ctx.tasks[k], ctx.tasks[k - 1]
        if task.recipe.adapter is not None:
            return self._adapter_start(k, prev)
        if ctx.shared or len(task.labels) != len(before.labels):
            return str(prev)
        init = self.out / "init" / f"{k}-{task.name}"
        if not (init / "config.json").is_file():
            model = load_model_or_adapter(str(prev / "best"), ctx.task_type)
            params = dict(model.named_parameters())
            with torch.no_grad():
                for n, t in fresh_head(model, len(task.labels), ctx.seed + k).items():
                    params[n].copy_(t)
            model.save_pretrained(str(init))
            ctx.tokenizer.save_pretrained(str(init))
        return str(init)

    def _adapter_start(self, k: int, prev: Path) -> str:
        """An adapter stage starts from stage k-1's run as it is (one shared head, the same
        adapter), else from a start folder written from it (:mod:`tunesmith.continual.starts`)."""
        ctx, adapter = self.ctx, self._adapter(k)
        separate = ctx.classification and not ctx.shared
        if not separate and adapter == self._adapter(k - 1):
            return str(prev)
        recipe = dataclasses.replace(ctx.tasks[k].recipe, adapter=adapter)
        init = self.out / "init" / f"{k}-{ctx.names[k]}"
        write_adapter_start(ctx, prev / "best", init, k, recipe.adapter_settings())
        return str(init)

    def _joint_recipe(self, run_dir: Path) -> Recipe:
        """Joint training (the upper bound): every task's data in one stage, one shared head;
        with separate heads, one encoder and a head per task (examples-proportional mixing)."""
        ctx = self.ctx
        if not ctx.shared:
            first = stage_recipe(ctx.tasks[0], labels=ctx.tasks[0].labels)
            data = to_dict(first)
            data.update(
                model=self.initial_model,
                output_dir=str(run_dir),
                task="multi_head",
                data=None,
                mixing={"strategy": "proportional"},
                objectives=[to_dict(o) for o in first.objectives],
                tasks=[
                    {
                        "name": t.name,
                        "head": "sequence_classification",
                        "data": to_dict(stage_recipe(t, labels=t.labels))["data"],
                    }
                    for t in ctx.tasks
                ],
            )
            return parse_recipe(data)
        splits = {}
        for split in ("train", "dev"):
            records = [r for t in ctx.tasks for r in t.splits.get(split, [])]
            if records:
                write_jsonl(self.out / "data" / "joint" / f"{split}.jsonl", records)
                splits[split] = f"joint/{split}.jsonl"
        first = ctx.tasks[0]
        return stage_recipe(
            first,
            labels=ctx.union,
            model=self.initial_model,
            output_dir=str(run_dir),
            objectives=[to_dict(o) for o in first.recipe.objectives],
            splits=splits,
        )


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary.get(k) for k in ("steps", "wall_s", "train_examples", "best_step")}

"""Diagonal Fisher information of a model's trainable parameters, for EWC and online EWC.

    F_i = E_x E_{y ~ q(y|x)} [ (d log p_theta(y|x) / d theta_i)^2 ]

estimated on ``max_examples`` examples, one at a time, so every squared gradient is a
per-example gradient squared (squaring a batch-mean gradient would underestimate F by up to a
factor of the batch size). Two choices of ``q``:

* ``empirical``: the dataset's true labels (the "empirical Fisher"; cheap, and what most EWC
  code does);
* ``sampled``: ``n_samples`` labels drawn from the model's own predictive distribution
  ``p_theta(y|x)`` per example: the true Fisher of Kirkpatrick et al. (2017), an unbiased
  Monte-Carlo estimate of it.

Token-level tasks (causal LM, token classification, seq2seq targets) use the task loss of one
example: the mean next-token (or per-token) negative log-likelihood over its positions whose
label is not -100, the same quantity the training loop minimises, so lambda has the same scale
for classification and language models. ``sampled`` draws one label per kept position from the
model's distribution at that position (teacher forcing on the true prefix).

Only parameters with ``requires_grad`` count: a frozen backbone, a linear probe or a LoRA /
adapter model gets the Fisher of exactly what trains.

:class:`FisherConfig` is the recipe's ``fisher:`` setting of the EWC methods and
:func:`stage_fisher` estimates the Fisher of a finished stage of a task sequence.

Scale: the raw Fisher of a fine-tuned model is tiny (its loss, hence every gradient, is small)
and its size depends on the model, the task and how well the stage fit, so a raw-Fisher lambda
does not transfer (1e3 did nothing on MiniLM where 1e5 worked). ``normalize: mean`` (the
default, :func:`normalize_fisher`) divides each finished task's Fisher by its mean over the
penalised parameters, so the importances average 1 and only their *relative* sizes are kept:
``(lambda/2) sum_i F_i (theta_i - theta*_i)^2`` is then lambda/2 times an importance-weighted
squared distance, and lambda means the same on any model and task (multiplying the loss, or the
Fisher, by c leaves the penalty unchanged). Each earlier task weighs the same in the sum.
``normalize: none`` keeps the raw Fisher (the only behaviour before the option existed).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from tunesmith.configschema import fld
from tunesmith.errors import ConfigError
from tunesmith.objectives.continual.base import SequenceView
from tunesmith.tasks import IGNORE_INDEX, model_inputs, task_kind, task_loss

__all__ = [
    "FisherConfig",
    "diagonal_fisher",
    "empirical",
    "normalize_fisher",
    "online_update",
    "penalised_fisher",
    "sample_labels",
    "sampled",
    "stage_fisher",
]

logger = logging.getLogger(__name__)

FisherKind = Literal["empirical", "sampled"]
FisherNorm = Literal["mean", "none"]


@dataclasses.dataclass
class FisherConfig:
    """How the diagonal Fisher of a finished stage is estimated (EWC, online EWC)."""

    kind: FisherKind = fld(
        "empirical", "empirical: true labels; sampled: labels drawn from the model (true Fisher)"
    )
    n_samples: int = fld(1, "sampled: labels drawn per example")
    max_examples: int = fld(512, "training examples of the finished task used (seeded subset)")
    normalize: FisherNorm = fld(
        "mean",
        "mean: divide each task's Fisher by its mean over the penalised parameters (mean 1, so "
        "the weight lambda transfers across models and tasks); none: the raw Fisher",
    )

    def validate(self, path: str) -> None:
        if self.n_samples < 1 or self.max_examples < 1:
            raise ConfigError(path, "n_samples and max_examples must be >= 1")


def _draw(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One class per row of ``logits`` (N, C), drawn from softmax (fp32, on the CPU generator)."""
    probs = logits.detach().float().softmax(-1).cpu()
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1).to(logits.device)


def sample_labels(
    task: str, logits: torch.Tensor, labels: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """Labels drawn from the model's predictive distribution, shaped and masked like ``labels``.

    logits (B, C) with labels (B,); or (B, T, V) with labels (B, T) (-100 positions stay -100;
    for ``causal_lm`` the label at t+1 is drawn from ``logits[:, t]``).
    """
    kind = task_kind(task)
    if kind.classification and not kind.per_token:  # one label per example
        return _draw(logits, generator)
    out = torch.full_like(labels, IGNORE_INDEX)
    shift = kind.label_shift  # causal LM: the label at t+1 is scored by logits[:, t]
    if shift:
        mask = labels[:, shift:] != IGNORE_INDEX
        out[:, shift:][mask] = _draw(logits[:, :-shift][mask], generator)
    else:  # token classification, seq2seq: label t scores logits[:, t]
        mask = labels != IGNORE_INDEX
        out[mask] = _draw(logits[mask], generator)
    return out


def _has_targets(task: str, labels: torch.Tensor) -> bool:
    kind = task_kind(task)
    if kind.classification and not kind.per_token:
        return True
    return bool((labels[:, kind.label_shift :] != IGNORE_INDEX).any())


def _subset(n: int, max_examples: int | None, seed: int) -> list[int]:
    """A seeded random subset of ``range(n)`` (all of it when ``max_examples`` is None or >= n)."""
    if max_examples is None or max_examples >= n:
        return list(range(n))
    g = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(n, generator=g)[:max_examples].tolist())


def diagonal_fisher(
    model: nn.Module,
    examples: Sequence[Mapping[str, Any]],
    collator: Callable[[list], dict[str, torch.Tensor]],
    task: str,
    *,
    kind: FisherKind = "empirical",
    n_samples: int = 1,
    max_examples: int | None = 512,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher ``{name: tensor shaped like the parameter}`` (fp32, on the CPU) of the
    trainable parameters of ``model``, averaged over ``max_examples`` encoded ``examples``
    (a seeded subset when there are more). See the module docstring for ``kind``.

    The model runs in eval mode (no dropout: the Fisher is taken at the point estimate) and is
    put back in its previous mode. Examples without a single labelled position are skipped.
    """
    if kind not in ("empirical", "sampled"):
        raise ValueError(f"unknown Fisher kind {kind!r}; choose 'empirical' or 'sampled'")
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("the model has no trainable parameters: nothing to estimate a Fisher for")
    device = torch.device(device) if device is not None else named[0][1].device
    params = [p for _, p in named]
    sums = [torch.zeros_like(p, dtype=torch.float32) for p in params]
    generator = torch.Generator().manual_seed(seed)
    draws = 1 if kind == "empirical" else n_samples
    was_training = model.training
    model.eval()
    used = 0
    try:
        for i in _subset(len(examples), max_examples, seed):
            batch = {k: v.to(device) for k, v in collator([examples[i]]).items()}
            if not _has_targets(task, batch["labels"]):
                continue
            logits = model(**model_inputs(task, batch)).logits
            for s in range(draws):
                target = batch["labels"]
                if kind == "sampled":
                    target = sample_labels(task, logits, target, generator)
                loss = task_loss(task, logits, target)
                grads = torch.autograd.grad(
                    loss, params, retain_graph=s < draws - 1, allow_unused=True
                )
                for acc, g in zip(sums, grads, strict=True):
                    if g is not None:
                        acc.add_(g.detach().float().pow(2), alpha=1.0 / draws)
            used += 1
    finally:
        model.train(was_training)
    if used == 0:
        raise ValueError("no example with a labelled position: cannot estimate the Fisher")
    return {n: (acc / used).cpu() for (n, _), acc in zip(named, sums, strict=True)}


def empirical(model, examples, collator, task, **kw) -> dict[str, torch.Tensor]:
    """Empirical Fisher: squared gradients of the loss at the true labels."""
    return diagonal_fisher(model, examples, collator, task, kind="empirical", **kw)


def sampled(model, examples, collator, task, n_samples: int = 1, **kw) -> dict[str, torch.Tensor]:
    """True (sampled-label) Fisher: ``n_samples`` labels per example from the model itself."""
    return diagonal_fisher(
        model, examples, collator, task, kind="sampled", n_samples=n_samples, **kw
    )


def online_update(
    old: Mapping[str, torch.Tensor] | None, new: Mapping[str, torch.Tensor], gamma: float
) -> dict[str, torch.Tensor]:
    """Online EWC's running Fisher (Schwarz et al. 2018, "Progress & Compress"):
    ``F*_k = gamma * F*_{k-1} + F_k``; a parameter new at stage k starts from ``F_k``.

    ``gamma`` in [0, 1] forgets old importances geometrically (1 = plain accumulation).
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    old = old or {}
    return {n: (gamma * old[n] + f) if n in old else f.clone() for n, f in new.items()}


def normalize_fisher(
    fisher: Mapping[str, torch.Tensor], mode: FisherNorm = "mean"
) -> dict[str, torch.Tensor]:
    """``fisher`` scaled so that its mean over all the given entries (every tensor together,
    not tensor by tensor: relative importances across layers are kept) is 1 (``mode="mean"``),
    or unchanged (``"none"``). A Fisher that is zero everywhere is returned unchanged."""
    if mode == "none":
        return dict(fisher)
    if mode != "mean":
        raise ValueError(f"unknown Fisher normalisation {mode!r}; choose 'mean' or 'none'")
    count = sum(f.numel() for f in fisher.values())
    total = sum(float(f.double().sum()) for f in fisher.values())
    if count == 0 or not total > 0.0:
        return dict(fisher)
    mean = total / count
    return {n: (f.double() / mean).to(f.dtype) for n, f in fisher.items()}


def penalised_fisher(
    full: Mapping[str, torch.Tensor], anchor: Mapping[str, torch.Tensor], cfg: FisherConfig
) -> dict[str, torch.Tensor]:
    """The Fisher of the penalised parameters (the names in ``anchor``), normalised as
    ``cfg.normalize`` says; logs the raw mean (the scale a ``none`` lambda would have to fit)."""
    fisher = {n: full[n] for n in anchor}
    count = sum(f.numel() for f in fisher.values())
    raw = sum(float(f.double().sum()) for f in fisher.values()) / max(count, 1)
    logger.info(
        "Fisher: mean %.3g over %d penalised parameters%s",
        raw,
        count,
        " (normalised to mean 1)" if cfg.normalize == "mean" else "",
    )
    return normalize_fisher(fisher, cfg.normalize)


def stage_fisher(
    seq: SequenceView, model: nn.Module, i: int, cfg: FisherConfig
) -> dict[str, torch.Tensor]:
    """Diagonal Fisher of stage i's model on a seeded subset of task i's training records
    (``cfg.max_examples`` of them, drawn with seed ``seq.seed + 1000 + i``)."""
    records = seq.train_records(i)
    rng = random.Random(seq.seed + 1000 + i)
    picked = sorted(rng.sample(range(len(records)), min(cfg.max_examples, len(records))))
    examples = seq.encoded(i, [records[r] for r in picked], f"Fisher data ({seq.names[i]})")
    return diagonal_fisher(
        model,
        examples,
        seq.collator(),
        seq.task_type,
        kind=cfg.kind,
        n_samples=cfg.n_samples,
        max_examples=None,
        seed=seq.seed + i,
    )

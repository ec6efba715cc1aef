"""Optimisation: AdamW parameter groups, LR schedules and gradient clipping.

Parameter groups follow nanoGPT: weight decay on matrices (``ndim >= 2``: linear weights,
embeddings), none on biases and norm weights. Layer-wise LR scales (from
:func:`tunesmith.transfer.layerwise_lr_scales`) split the groups further; each group keeps its
``lr_scale`` and the schedules multiply every group's LR by the same factor, so the scales survive
warmup and decay.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Collection, Iterable

import torch
from torch import nn

from tunesmith.errors import ConfigError
from tunesmith.registry import Registry

__all__ = [
    "SCHEDULES",
    "build_optimizer",
    "build_scheduler",
    "clip_gradients",
    "param_groups",
]


def _no_decay_ids(model: nn.Module) -> set[int]:
    """Parameters of norm modules (any class whose name contains "Norm": LayerNorm, RMSNorm...)."""
    return {
        id(p)
        for m in model.modules()
        if "Norm" in type(m).__name__
        for p in m.parameters(recurse=False)
    }


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    lr_scales: dict[str, float] | None = None,
    include: Callable[[str, nn.Parameter], bool] | None = None,
    no_decay_names: Collection[str] = (),
) -> list[dict]:
    """AdamW parameter groups for the parameters that will train.

    A parameter is in when ``requires_grad`` is set or ``include(name, param)`` says so (gradual
    unfreezing turns parameters on later; they must be in the optimizer from the start). Tied
    tensors appear once, under their ``named_parameters()`` name. Biases, norm weights and all
    ``ndim < 2`` tensors get no weight decay, nor do ``no_decay_names`` (e.g. IA3 scales, which
    start at 1 and must not shrink towards 0). One group per (lr scale, weight decay), each with
    ``lr = lr * lr_scale`` and the extra keys ``lr_scale`` and ``names`` (for inspection).
    """
    if not lr > 0:
        raise ConfigError("optim.lr", f"must be positive, got {lr}")
    if weight_decay < 0:
        raise ConfigError("optim.weight_decay", f"must be >= 0, got {weight_decay}")
    no_decay = _no_decay_ids(model)
    groups: dict[tuple[float, float], dict] = {}
    for name, p in model.named_parameters():  # deduplicates tied tensors
        if not (p.requires_grad or (include is not None and include(name, p))):
            continue
        if lr_scales is None:
            scale = 1.0
        elif name in lr_scales:
            scale = float(lr_scales[name])
        else:
            raise KeyError(f"lr_scales has no entry for {name!r} (computed before it existed?)")
        plain = p.ndim < 2 or id(p) in no_decay or name in no_decay_names
        decay = 0.0 if plain else weight_decay
        group = groups.setdefault(
            (scale, decay),
            {"params": [], "names": [], "lr": lr * scale, "lr_scale": scale, "weight_decay": decay},
        )
        group["params"].append(p)
        group["names"].append(name)
    if not groups:
        raise ConfigError(
            "transfer",
            "no trainable parameters",
            "the freezing settings (freeze_layers, linear_probe, patterns) froze everything",
        )
    return list(groups.values())


def build_optimizer(
    groups: list[dict],
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW over ``groups`` (from :func:`param_groups`).

    ``fused=True`` uses the fused kernel where torch supports it (else warns and uses foreach);
    ``None`` picks fused when every parameter is on CUDA; ``False`` or otherwise the multi-tensor
    (``foreach``) implementation, on CPU too.
    """
    params = [p for g in groups for p in g["params"]]
    if fused is None:
        fused = bool(params) and all(p.is_cuda for p in params)
    if fused:
        try:
            return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
        except RuntimeError as e:  # e.g. a device or dtype without a fused kernel
            warnings.warn(f"fused AdamW unavailable ({e}); using foreach", stacklevel=2)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)


SCHEDULES = Registry("lr schedule")
# Each entry: (warmup_steps, total_steps, min_lr_ratio) -> (step -> LR multiplier). Warmup is
# linear from 0 (HF convention): multiplier step / warmup_steps, reaching 1.0 at step == warmup.


def _warmup(warmup: int, after: Callable[[float], float], total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))  # 0 -> 1 over the decay
        return after(progress)

    return factor


@SCHEDULES("linear", "linear warmup, then linear decay to min_lr_ratio * lr (default 0)")
def _linear(warmup: int, total: int, min_lr_ratio: float) -> Callable[[int], float]:
    return _warmup(warmup, lambda t: min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - t), total)


@SCHEDULES("cosine", "linear warmup, then half-cosine decay to min_lr_ratio * lr")
def _cosine(warmup: int, total: int, min_lr_ratio: float) -> Callable[[int], float]:
    def cos(t: float) -> float:
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))

    return _warmup(warmup, cos, total)


@SCHEDULES("constant", "linear warmup, then constant lr")
def _constant(warmup: int, total: int, min_lr_ratio: float) -> Callable[[int], float]:
    return _warmup(warmup, lambda t: 1.0, total)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    *,
    warmup_steps: int,
    total_steps: int,
    min_lr_ratio: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A multiplicative schedule: group LR at step t = initial group LR * factor(t).

    Call ``scheduler.step()`` after each ``optimizer.step()``; optimizer step ``t`` (from 0) then
    uses factor(t). Past ``total_steps`` the LR stays at its final value.
    """
    make = SCHEDULES.get(name, key="optim.schedule")
    if total_steps < 1:
        raise ConfigError(
            "train.max_steps", f"the run must have at least 1 step, got {total_steps}"
        )
    if not 0 <= warmup_steps <= total_steps:
        raise ConfigError(
            "optim.warmup_steps",
            f"must be between 0 and the total steps ({total_steps}), got {warmup_steps}",
            "a few percent of the total steps is typical",
        )
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ConfigError("optim.min_lr_ratio", f"must be in [0, 1], got {min_lr_ratio}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, make(warmup_steps, total_steps, min_lr_ratio)
    )


def clip_gradients(params: Iterable[torch.Tensor], max_norm: float | None) -> float:
    """Clip the gradients' total L2 norm to ``max_norm`` and return the norm before clipping.

    ``max_norm`` None or 0 only measures. Tensors without a gradient are skipped; a tensor passed
    twice (tied) counts once.
    """
    unique = {id(p): p for p in params if p.grad is not None}
    tensors = list(unique.values())
    if not tensors:
        return 0.0
    if not max_norm:
        return float(torch.nn.utils.get_total_norm([p.grad for p in tensors]))
    if max_norm < 0:
        raise ConfigError(
            "optim.max_grad_norm", f"must be positive (or 0 for none), got {max_norm}"
        )
    return float(torch.nn.utils.clip_grad_norm_(tensors, max_norm))

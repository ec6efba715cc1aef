"""Quadratic penalties of EWC, online EWC and the L2 anchor, as pure functions.

``0.5 * sum_i F_i (theta_i - a_i)^2`` (:func:`quadratic_penalty`), and the folding of one such
quadratic per earlier task into a single one with the same value and gradient
(:func:`merge_quadratics`), so EWC's memory does not grow with the number of tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = ["merge_quadratics", "quadratic_penalty"]


def merge_quadratics(
    pairs: Sequence[tuple[Mapping[str, torch.Tensor] | None, Mapping[str, torch.Tensor]]],
) -> tuple[dict[str, torch.Tensor] | None, dict[str, torch.Tensor], float]:
    """Fold ``sum_t sum_i F_t,i (theta_i - a_t,i)^2`` into ``sum_i A_i (theta_i - m_i)^2 + c``.

    With ``A = sum_t F_t`` and the Fisher-weighted mean anchor ``m = sum_t F_t a_t / A``, the
    two agree for every theta (same value and gradient), and ``c = sum_t F_t a_t^2 - A m^2``
    (computed in float64) does not depend on theta (so ``0.5 * (folded + c)`` is the
    halved EWC sum). One (A, m) pair costs the memory of one
    task, however many tasks came before. ``F = None`` means F = 1 everywhere (all pairs must
    then be None). Where ``A = 0`` the anchor of the last task is kept (its weight is 0).
    """
    if not pairs:
        return None, {}, 0.0
    if len(pairs) == 1:
        fisher, anchor = pairs[0]
        return (dict(fisher) if fisher is not None else None), dict(anchor), 0.0
    uniform = all(f is None for f, _ in pairs)
    A: dict[str, torch.Tensor] = {}
    S: dict[str, torch.Tensor] = {}  # sum_t F_t a_t   (float64)
    Q = 0.0  # sum_t sum_i F_t a_t^2
    last: dict[str, torch.Tensor] = {}
    for fisher, anchor in pairs:
        for name, a in anchor.items():
            f = torch.ones_like(a, dtype=torch.float64) if uniform else fisher[name].double()
            A[name] = A.get(name, 0) + f
            S[name] = S.get(name, 0) + f * a.double()
            Q += float((f * a.double() ** 2).sum())
            last[name] = a
    mean, c = {}, Q
    for name, total in A.items():
        safe = torch.where(total > 0, total, torch.ones_like(total))
        mean[name] = torch.where(total > 0, S[name] / safe, last[name].double()).float()
        c -= float((total * mean[name].double() ** 2).sum())
    # with F = 1 per task, A counts the tasks anchoring each parameter: no longer uniform
    return {n: t.float() for n, t in A.items()}, mean, max(c, 0.0)


def quadratic_penalty(
    model: nn.Module,
    fisher: Mapping[str, torch.Tensor] | None,
    anchor: Mapping[str, torch.Tensor],
) -> torch.Tensor:
    """``0.5 * sum_i F_i (theta_i - anchor_i)^2`` over the names in ``anchor`` (F = 1 if None).

    Computed in fp32 whatever the parameters' dtype; a scalar in the graph.
    """
    params = dict(model.named_parameters())
    total = torch.zeros((), device=next(model.parameters()).device)
    for name, a in anchor.items():
        diff = params[name].float() - a
        sq = diff.pow(2) if fisher is None else fisher[name] * diff.pow(2)
        total = total + sq.sum()
    return 0.5 * total

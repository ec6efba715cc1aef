"""The base of the continual objective terms: a term whose per-stage state is a ContinualState.

The state (anchors, Fishers, old heads, the previous model's folder) is bound in memory with
:meth:`ContinualTerm.bind_state` before ``setup``, or read in ``setup`` from the file named by
``params.state`` (what the sequence runner does). It is built once per stage; a term's
``state_dict`` returns the tensors it uses, so a checkpoint resumes the stage with exactly the
same penalty.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import nn

from tunesmith.errors import ConfigError
from tunesmith.objectives.base import ObjectiveTerm
from tunesmith.objectives.continual.state import ContinualState

__all__ = ["STATE_HELP", "ContinualTerm", "device_of", "usable"]

logger = logging.getLogger(__name__)

STATE_HELP = "continual state file (.safetensors) written by the sequence runner"


def device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class ContinualTerm(ObjectiveTerm):
    """A term whose per-stage state is a :class:`ContinualState`."""

    _state: ContinualState | None = None

    def bind_state(self, state: ContinualState) -> None:
        """Hand the term its state in memory (call before ``setup``; overrides ``params.state``)."""
        self._state = state

    def continual_state(self) -> ContinualState:
        if self._state is None:
            path = getattr(self.params, "state", None)
            if not path:
                raise ConfigError(
                    f"objectives.{self.name}.params.state",
                    "no continual state: this term needs the anchors/Fisher of earlier stages",
                    "run the task sequence with `tunesmith continual`, or give params.state",
                )
            self._state = ContinualState.load(path)
        return self._state


def usable(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], what: str
) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` that name a trainable parameter of the same shape."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    kept = {n: t for n, t in tensors.items() if n in params and params[n].shape == t.shape}
    if len(kept) < len(tensors):
        logger.info(
            "%s: %d of %d stored tensors match no trainable parameter of the same shape "
            "(frozen now, or a task head) and are not penalised",
            what,
            len(tensors) - len(kept),
            len(tensors),
        )
    return kept

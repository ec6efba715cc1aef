"""What changes with depth while training: gradual unfreezing, top group first (ULMFiT, Howard &
Ruder 2018, §3.3), and layer-wise LR decay (Howard & Ruder 2018, §3.2; Sun et al. 2019; ELECTRA)."""

from __future__ import annotations

from torch import nn

from tunesmith.errors import ConfigError
from tunesmith.transfer.layout import LayerLayout, layer_index


class GradualUnfreezer:
    """ULMFiT gradual unfreezing (Howard & Ruder 2018, §3.3): train the top, then go down.

    At construction only the top group (task head, final norm, pooler: group L+1) keeps training;
    every ``every`` calls to :meth:`advance` one more group is unfrozen, top block first, down to
    the embeddings. The caller decides what a call means (a step or an epoch). Parameters already
    frozen when the unfreezer is built (by :func:`apply_freezing`, adapters, ...) are never
    touched. Build the optimizer with ``include=unfreezer.will_train`` so parameters unfrozen later
    are in it from the start.
    """

    def __init__(self, model: nn.Module, layout: LayerLayout, every: int):
        if every < 1:
            raise ConfigError(
                "transfer.gradual_unfreeze.every",
                f"must be a positive number of steps, got {every}",
            )
        self.every = every
        top = layout.num_layers + 1
        # groups[k]: what the k-th unfreezing turns on (k = 0: the top group)
        self.groups: list[list[tuple[str, nn.Parameter]]] = [[] for _ in range(top + 1)]
        for name, p in model.named_parameters():
            if p.requires_grad:
                self.groups[top - layer_index(name, layout)].append((name, p))
        self._managed = {id(p) for g in self.groups for _, p in g}
        self.steps = 0
        self._apply()

    @property
    def num_groups(self) -> int:
        return len(self.groups)

    @property
    def num_unfrozen_groups(self) -> int:
        return min(1 + self.steps // self.every, self.num_groups)

    def will_train(self, name: str, param: nn.Parameter) -> bool:
        """True for parameters this unfreezer trains now or will unfreeze later."""
        return id(param) in self._managed

    def advance(self) -> list[str]:
        """Count one step (or epoch); return the names of parameters unfrozen by it."""
        before = self.num_unfrozen_groups
        self.steps += 1
        self._apply()
        return [n for g in self.groups[before : self.num_unfrozen_groups] for n, _ in g]

    def _apply(self) -> None:
        for k, group in enumerate(self.groups):
            for _, p in group:
                p.requires_grad_(k < self.num_unfrozen_groups)

    def state_dict(self) -> dict[str, int]:
        return {"steps": self.steps, "every": self.every}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore the step count and re-apply ``requires_grad`` (for resuming a run)."""
        if state["every"] != self.every:
            raise ConfigError(
                "transfer.gradual_unfreeze.every",
                f"checkpoint: every {state['every']} steps; recipe: every {self.every}",
                "resume with the value the run started with",
            )
        self.steps = int(state["steps"])
        self._apply()


def layerwise_lr_scales(model: nn.Module, layout: LayerLayout, decay: float) -> dict[str, float]:
    """Layer-wise LR decay: parameter name -> LR multiplier.

    Group L+1 (head, final norm, pooler) gets 1.0, block i (1..L) gets ``decay**(L+1-i)`` and the
    embeddings ``decay**(L+1)``: discriminative fine-tuning (Howard & Ruder 2018, §3.2) with a
    constant factor, as in Sun et al. 2019 and ELECTRA. Keys are ``named_parameters()`` names,
    tied tensors once.
    """
    if not 0.0 < decay <= 1.0:
        raise ConfigError(
            "transfer.layerwise_lr_decay",
            f"must be in (0, 1], got {decay}",
            "0.8-0.95 is typical; 1.0 turns it off",
        )
    top = layout.num_layers + 1
    return {n: decay ** (top - layer_index(n, layout)) for n, _ in model.named_parameters()}

"""Recipe checks that need the core registries or shared logic: a value among registered
choices, the mixture settings, an adapter section built into its method's config."""

from __future__ import annotations

import difflib
import math
from typing import Any

from tunesmith.configschema import build
from tunesmith.errors import ConfigError
from tunesmith.registry import ADAPTERS


def check_choice(path: str, value: str, choices: list[str]) -> None:
    """A ConfigError at ``path`` unless ``value`` is one of ``choices`` (with a did-you-mean)."""
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"choose one of {choices}"
        raise ConfigError(path, f"invalid value {value!r}", hint)


MIXING_STRATEGIES = ("proportional", "temperature", "equal", "explicit")


def check_mixing(
    names: list[str],
    strategy: str,
    *,
    cap: int | None = None,
    temperature: float | None = None,
    weights: dict[str, float] | None = None,
) -> None:
    """Check a mixture's settings (:func:`tunesmith.data.mixing.mixing_rates` takes the same
    arguments and calls this): ConfigError with the key path (``mixing.strategy``, ``mixing.cap``,
    ``mixing.temperature``, ``tasks[].weight``) before any data is read."""
    if strategy not in MIXING_STRATEGIES:
        raise ConfigError(
            "mixing.strategy", f"unknown strategy {strategy!r}", f"one of {MIXING_STRATEGIES}"
        )
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
        raise ConfigError("mixing.cap", f"must be a positive integer or null, got {cap!r}")
    if weights is not None and strategy != "explicit":
        raise ConfigError(
            "tasks[].weight", f"weights are only used by strategy 'explicit', not {strategy!r}"
        )
    if strategy != "temperature" and temperature is not None:
        raise ConfigError(
            "mixing.temperature",
            f"only used by strategy 'temperature', not {strategy!r}",
            "set mixing.strategy: temperature, or remove the temperature",
        )
    if strategy in ("equal", "explicit") and cap is not None:
        raise ConfigError("mixing.cap", f"only used by proportional/temperature, not {strategy!r}")
    if strategy == "explicit":
        check_weights(list(names), weights)
    if temperature is not None and not temperature > 0:  # also rejects nan
        raise ConfigError("mixing.temperature", f"must be > 0, got {temperature}")


def check_weights(names: list[str], weights: dict[str, float] | None) -> None:
    if weights is None:
        raise ConfigError("tasks[].weight", "strategy 'explicit' needs a weight for every task")
    missing = [n for n in names if n not in weights]
    extra = [n for n in weights if n not in names]
    if missing or extra:
        raise ConfigError(
            "tasks[].weight",
            f"weights must name exactly the tasks {names}",
            f"missing {missing}, unknown {extra}" if extra else f"missing {missing}",
        )
    bad = [n for n in names if not (weights[n] >= 0 and math.isfinite(weights[n]))]
    if bad:
        raise ConfigError(
            f"tasks[{bad[0]}].weight", f"must be a finite number >= 0, got {weights[bad[0]]}"
        )
    if float(sum(weights[n] for n in names)) <= 0:
        raise ConfigError("tasks[].weight", "at least one weight must be > 0")


def adapter_config_from_dict(data: Any, key: str = "adapter") -> Any:
    """Build and validate the config of a recipe's ``adapter:`` section.

    ``data`` is a mapping with ``type`` (an :data:`tunesmith.registry.ADAPTERS` name) and that method's fields, or
    just the type name (``adapter: lora``). Unknown keys, wrong types and impossible values fail
    with the key path (``adapter.reduction_factor``) and a hint, before any model loads.
    """
    if isinstance(data, str):
        data = {"type": data}
    if not isinstance(data, dict):
        raise ConfigError(key, f"expected a mapping like {{type: houlsby}}, got {data!r}")
    if "type" not in data:
        raise ConfigError(
            f"{key}.type", "required key is missing", f"choose one of {ADAPTERS.names()}"
        )
    cls = ADAPTERS.get(data["type"], f"{key}.type")
    return build(cls, data, key)

"""The adapter methods' registry: what each method module declares with ONE :func:`register` call.

Two tables, filled when :mod:`tunesmith.adapters` is imported:

* :data:`tunesmith.registry.ADAPTERS` (core): the recipe's ``adapter.type`` name -> the method's
  config dataclass, whose defaults are the paper's preset (``houlsby``, ``pfeiffer``, ``lora``).
  Layers below the adapters (the recipe's validation) look names up there.
* :data:`METHODS` (here): the config class's ``method`` -> its :class:`AdapterMethod`: how to
  inject it, whether it merges into the base weights, which architectures it applies to, and how
  it maps to PEFT's files. ``model.py``, ``peft_format.py``, ``io.py`` and the test matrices read
  only this table, so a new method is one module (its config, layer, ``inject`` and one
  ``register(AdapterMethod(...))``) plus one import line in ``adapters/__init__.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from tunesmith.adapters.base import AdapterInfo
from tunesmith.config import adapter_config_from_dict
from tunesmith.configschema import to_dict
from tunesmith.errors import ConfigError
from tunesmith.registry import ADAPTERS, Registry

__all__ = [
    "ADAPTERS",
    "METHODS",
    "AdapterMethod",
    "PeftMapping",
    "adapter_config_from_dict",
    "adapter_config_to_dict",
    "method_of",
    "register",
]

METHODS = Registry("adapter implementation")
"""Config class ``method`` (``"bottleneck"``, ``"lora"``, ...) -> :class:`AdapterMethod`."""


def _all_architectures(model_type: str | None) -> bool:
    return True


@dataclass(frozen=True)
class PeftMapping:
    """How a method's adapter is written as, and read from, PEFT's ``adapter_config.json``.

    Common fields (``peft_type``, ``target_modules``, ``modules_to_save``, ``fan_in_fan_out``,
    ...) are written by :mod:`tunesmith.adapters.peft_format`; the method adds its own.
    """

    peft_type: str  # PEFT's ``peft_type`` ("LORA", "IA3")
    label: str  # the method's name in messages ("LoRA")
    to_peft: Callable[[nn.Module, AdapterInfo], dict[str, Any]]  # the method's own fields
    from_peft: Callable[[dict[str, Any]], Any]  # adapter_config.json -> our config (unvalidated)
    # PEFT options we do not implement -> the value meaning "not used" (written as such; a file
    # using one is refused, naming it)
    unsupported: Mapping[str, Any] = field(default_factory=dict)
    # fields that pick this method among those sharing a peft_type (DoRA: {"use_dora": True});
    # written as they are
    selects: Mapping[str, Any] = field(default_factory=dict)
    supported_hint: str = ""  # what the method does support, for the refusal message


@dataclass(frozen=True)
class AdapterMethod:
    """One adapter implementation and the recipe presets (paper names) that configure it."""

    name: str  # the ``method`` ClassVar of its config classes
    # (model, adapter name, config) -> modules, or (modules, config as resolved) when injection
    # fills in part of the config (fusion: the fused adapters' configs), which is then stored
    inject: Callable[[nn.Module, str, Any], list[str] | tuple[list[str], Any]]
    presets: Mapping[str, tuple[type, str]]  # recipe ``adapter.type`` -> (config class, help)
    mergeable: bool = False  # a weight delta: its layers implement merge/unmerge
    identity_at_init: bool = True  # the adapted model equals the base model before training
    supports: Callable[[str | None], bool] = _all_architectures  # by ``config.model_type``
    peft: PeftMapping | None = None  # saved in PEFT's format (and read from it)
    # built from other trained adapters (fusion): its config names them, so the method x
    # architecture test matrices leave it out and its own tests cover it
    composite: bool = False


def register(method: AdapterMethod) -> AdapterMethod:
    """Register ``method`` and its presets (the one call each method module makes)."""
    for preset, (cls, _) in method.presets.items():
        if getattr(cls, "method", None) != method.name:
            raise ValueError(f"preset {preset!r}: {cls.__name__}.method is not {method.name!r}")
    METHODS.register(method.name, method)
    for preset, (cls, help) in method.presets.items():
        ADAPTERS.register(preset, cls, help)
    return method


def method_of(config: Any) -> AdapterMethod:
    """The :class:`AdapterMethod` implementing ``config`` (a registered method's config)."""
    name = getattr(type(config), "method", None)
    if not isinstance(name, str) or name not in METHODS:
        raise ConfigError(
            "adapter",
            f"not an adapter config: {config!r}",
            "build one with adapter_config_from_dict",
        )
    return METHODS.get(name)


def adapter_config_to_dict(config: Any) -> dict[str, Any]:
    """The plain-dict form of a config (``type`` included), e.g. for the resolved recipe."""
    return to_dict(config)

"""Numeric precision of a run: which dtype the forward computes in (``train.precision``) and which
dtype frozen weights are stored in (``model.dtype``).

``auto`` (the default) picks bf16 where the hardware computes it natively -- a CUDA GPU of compute
capability >= 8.0 (tensor cores), or a CPU with AMX or AVX512-BF16 -- and fp32 elsewhere. The
probe asks torch and the OS at run time (``torch.cpu`` capability checks, ``/proc/cpuinfo``
flags): nothing about the CPU is assumed. bf16 and fp16 are autocast over fp32 trainable weights;
fp16 also needs a gradient scaler (CUDA only: fp16 on a CPU is refused, use bf16 or fp32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from tunesmith.errors import ConfigError

__all__ = [
    "PRECISIONS",
    "Precision",
    "autocast",
    "frozen_dtype",
    "make_scaler",
    "native_bf16",
    "resolve_precision",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo flags of native bf16 arithmetic


@dataclass(frozen=True)
class Precision:
    """The precision a run computes in: ``name`` (fp32 | bf16 | fp16), its torch ``dtype``, why
    it was chosen (``reason``, printed at start) and what the recipe asked (``requested``)."""

    name: str
    dtype: torch.dtype
    reason: str
    requested: str = "auto"

    @property
    def autocast(self) -> bool:
        return self.name != "fp32"

    def record(self) -> dict[str, str]:
        """What ``summary.json`` records under ``precision``."""
        return {"requested": self.requested, "chosen": self.name, "reason": self.reason}


def _cpu_flags() -> set[str]:
    path = Path("/proc/cpuinfo")
    try:
        text = path.read_text(errors="replace") if path.is_file() else ""
    except OSError:
        return set()
    return {w for line in text.splitlines() if line.startswith("flags") for w in line.split()}


def native_bf16(device: torch.device | str) -> tuple[bool, str]:
    """(does ``device`` compute bf16 natively?, what says so) -- asked of torch and the OS."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        name = torch.cuda.get_device_name(index)
        ok = major >= 8
        return ok, f"{name} has compute capability {major}.{minor} ({'>=' if ok else '<'} 8.0)"
    if device.type != "cpu":
        return False, f"no native bf16 check for device type {device.type!r}"
    probes = {
        "AMX": getattr(torch.cpu, "_is_amx_tile_supported", None),
        "AVX512-BF16": getattr(torch.cpu, "_is_avx512_bf16_supported", None),
    }
    found = [name for name, probe in probes.items() if probe is not None and probe()]
    found += [f for f in CPU_FLAGS if f in _cpu_flags()]
    if found:
        return True, "the CPU has " + " / ".join(dict.fromkeys(found))
    capability = torch.backends.cpu.get_cpu_capability()
    return False, f"the CPU has no AMX or AVX512-BF16 (torch reports {capability})"


def resolve_precision(
    requested: str, device: torch.device | str, *, pinned: str | None = None
) -> Precision:
    """The :class:`Precision` for ``train.precision: requested`` on ``device``.

    ``pinned``: the precision a resumed run chose when it started; ``auto`` keeps it, so a resume
    on another machine computes as the run began (the fingerprint compares the choice). fp16 on a
    CPU is a :class:`~tunesmith.errors.ConfigError`."""
    device = torch.device(device)
    if requested not in PRECISIONS:
        raise ConfigError("train.precision", f"unknown precision {requested!r}", str(PRECISIONS))
    if requested == "fp16" and device.type != "cuda":
        raise ConfigError(
            "train.precision",
            f"fp16 needs a CUDA GPU (loss scaling); this run is on {device.type}",
            "use bf16 (or fp32) on a CPU",
        )
    if requested != "auto":
        return Precision(requested, DTYPES[requested], "set in the recipe", requested)
    if pinned in DTYPES:
        reason = f"auto: kept the {pinned} this run started with (exact resume)"
        return Precision(pinned, DTYPES[pinned], reason, requested)
    native, why = native_bf16(device)
    name = "bf16" if native else "fp32"
    return Precision(name, DTYPES[name], f"auto: {why}", requested)


@contextlib.contextmanager
def autocast(precision: Precision | None, device: torch.device | str) -> Iterator[None]:
    """Autocast to ``precision``'s dtype on ``device`` (nothing for fp32 or None)."""
    if precision is None or not precision.autocast:
        yield
        return
    with torch.autocast(torch.device(device).type, dtype=precision.dtype):
        yield


def make_scaler(precision: Precision, device: torch.device | str) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 on CUDA; None otherwise (bf16 and fp32 need none)."""
    if precision.name != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


def frozen_dtype(requested: str, precision: Precision | None = None) -> torch.dtype:
    """The dtype frozen weights are stored in for ``model.dtype: requested`` (``auto``: the
    run's compute dtype, fp32 without one)."""
    if requested == "auto":
        return precision.dtype if precision is not None else torch.float32
    if requested not in DTYPES:
        raise ConfigError("model.dtype", f"unknown dtype {requested!r}", "fp32, bf16, fp16 or auto")
    return DTYPES[requested]

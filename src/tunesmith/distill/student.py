"""Build a shallower student from a teacher's own layers (DistilBERT's initialisation).

Sanh et al. (2019) initialise DistilBERT from every second layer of BERT; the student starts close
to the teacher and keeps most of its quality. We do the same for any architecture whose blocks
:func:`tunesmith.transfer.layer_layout` finds in one ``nn.ModuleList`` (BERT/RoBERTa encoders,
Llama/Mistral/Qwen2 and GPT-2 decoders): build the same class from a config with fewer layers,
then copy the embeddings, the chosen blocks (renumbered 0..n-1), the final norm / pooler and the
task head by name. Tied weights stay tied because the student is built from the teacher's config.

The chosen teacher layers are recorded in ``config.tunesmith_teacher_layers`` (saved with the
student), so :func:`layer_map` can pair student and teacher hidden states later.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tunesmith.errors import ModelError
from tunesmith.transfer import layer_layout

__all__ = [
    "LAYER_PRESETS",
    "TEACHER_LAYERS_KEY",
    "layer_map",
    "select_layers",
    "student_from_teacher",
    "teacher_depth",
    "uniform_layer_map",
]

TEACHER_LAYERS_KEY = "tunesmith_teacher_layers"


LAYER_PRESETS = {
    "every_other": "every second block, ending with the top one (DistilBERT / TinyBERT)",
    "keep_ends": "the first ceil(n/2) and last floor(n/2) blocks: drop a contiguous middle run",
    "evenly": "n blocks evenly spaced from the first to the last (both kept)",
}


def _preset(num_layers: int, name: str, n: int | None) -> list[int]:
    if name == "every_other":
        return list(range(num_layers - 1, -1, -2))[::-1]
    n = (num_layers + 1) // 2 if n is None else n
    if not 1 <= n <= num_layers:
        raise ModelError(f"student layers {name!r}: n must be in 1..{num_layers}, got {n}")
    if name == "keep_ends":
        front = (n + 1) // 2
        return list(range(front)) + list(range(num_layers - (n - front), num_layers))
    if n == 1:
        return [num_layers - 1]
    return sorted({round(i * (num_layers - 1) / (n - 1)) for i in range(n)})


def select_layers(num_layers: int, layers: str | Sequence[int], n: int | None = None) -> list[int]:
    """Teacher block indices (0-based, ascending) for the student.

    Presets (:data:`LAYER_PRESETS`): ``"every_other"`` keeps every second block *ending with the
    top one* (6 -> [1, 3, 5], 5 -> [0, 2, 4]): the top block feeds the final norm and head, so
    keeping it keeps their input distribution, and it gives TinyBERT's uniform mapping (student
    layer i <-> teacher layer 2i). ``"keep_ends"`` keeps the first and last blocks and drops a
    contiguous run from the middle (30 blocks, n=15: 0..7 and 23..29), where decoders are most
    redundant (Gromov et al. 2024, "The Unreasonable Ineffectiveness of the Deeper Layers"), so
    the student's early features and its head's inputs stay as the teacher's. ``"evenly"`` keeps
    n blocks evenly spaced with both ends. ``n`` (default: half, rounded up) applies to those
    two. For DistilBERT's exact choice on 12 layers pass ``[0, 2, 4, 7, 9, 11]``. Negative indices
    count from the top.
    """
    if isinstance(layers, str):
        if layers not in LAYER_PRESETS:
            raise ModelError(
                f"unknown layer selection {layers!r}; use one of {sorted(LAYER_PRESETS)} or a list"
            )
        return _preset(num_layers, layers, n)
    chosen = [i + num_layers if i < 0 else i for i in layers]
    bad = [i for i in chosen if not 0 <= i < num_layers]
    if bad or not chosen:
        raise ModelError(
            f"student layers {list(layers)} must be a non-empty list of teacher block indices in "
            f"0..{num_layers - 1} (the teacher has {num_layers} blocks)"
        )
    if sorted(set(chosen)) != chosen:
        raise ModelError(f"student layers {list(layers)} must be strictly increasing, no repeats")
    return chosen


def _block_stack(model: nn.Module) -> str:
    """Dotted name of the teacher's one ``nn.ModuleList`` of blocks."""
    stacks = {name.rsplit(".", 1)[0] for name in layer_layout(model).layers}
    if len(stacks) != 1:
        raise ModelError(
            f"cannot build a student from {type(model).__name__}: its blocks are in "
            f"{sorted(stacks)}, not one stack (encoder-decoder models are not supported)"
        )
    return stacks.pop()


def _student_config(config: Any, chosen: list[int]) -> Any:
    config = copy.deepcopy(config)
    config.num_hidden_layers = len(chosen)  # attribute_map covers n_layer (GPT-2) and friends
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list | tuple) and len(layer_types) > max(chosen):
        config.layer_types = [layer_types[i] for i in chosen]  # sliding/full pattern per layer
    setattr(config, TEACHER_LAYERS_KEY, list(chosen))
    return config


def _remap(
    state: dict[str, torch.Tensor], stack: str, chosen: list[int]
) -> dict[str, torch.Tensor]:
    """Teacher state dict -> student's: keep chosen blocks, renumber them 0..n-1, drop the rest."""
    new_index = {old: new for new, old in enumerate(chosen)}
    out = {}
    prefix = stack + "."
    for key, value in state.items():
        if key.startswith(prefix):
            index, rest = key[len(prefix) :].split(".", 1)
            if int(index) not in new_index:
                continue
            key = f"{prefix}{new_index[int(index)]}.{rest}"
        out[key] = value
    return out


def teacher_depth(teacher: nn.Module) -> int:
    """Number of blocks in the teacher's block stack."""
    return len(teacher.get_submodule(_block_stack(teacher)))


def student_from_teacher(
    teacher: nn.Module, layers: str | Sequence[int] = "every_other", n: int | None = None
) -> nn.Module:
    """A copy of ``teacher`` keeping only the blocks ``layers`` (see :func:`select_layers`).

    Same class, config (but ``num_hidden_layers``), dtype and device as the teacher; every weight
    is copied, so nothing is randomly initialised (the global RNG is left untouched). The student
    has ``requires_grad=True`` and is in train mode. ``layers`` = all blocks gives a model whose
    outputs equal the teacher's.
    """
    if hasattr(teacher, "get_base_model") and teacher.get_base_model() is not teacher:
        raise ModelError("build the student from a plain model; merge the teacher's adapters first")
    stack = _block_stack(teacher)
    num_layers = len(teacher.get_submodule(stack))
    chosen = select_layers(num_layers, layers, n)
    config = _student_config(teacher.config, chosen)
    param = next(teacher.parameters())
    with torch.random.fork_rng(devices=[]):
        student = type(teacher)(config)
    student.to(dtype=param.dtype, device=param.device)
    state = _remap(teacher.state_dict(), stack, chosen)
    missing, unexpected = student.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelError(
            f"student weights do not line up with the teacher's (missing {missing[:4]}, "
            f"unexpected {unexpected[:4]}); the architecture is not supported by from_teacher"
        )
    if getattr(teacher, "generation_config", None) is not None:
        student.generation_config = copy.deepcopy(teacher.generation_config)
    for p in student.parameters():
        p.requires_grad_(True)
    return student.train()


def uniform_layer_map(student_layers: int, teacher_layers: int) -> dict[int, int]:
    """TinyBERT's uniform map over hidden-state indices: 0 <-> 0, i <-> round(i * L_t / L_s)."""
    return {i: round(i * teacher_layers / student_layers) for i in range(student_layers + 1)}


def layer_map(student: nn.Module, teacher_layers: int | None = None) -> dict[int, int]:
    """Student hidden-state index -> teacher hidden-state index.

    Index 0 is the embedding output and i the output of block i (as in HF ``hidden_states``; for
    ``attentions`` use block i at tuple index i - 1). A student from :func:`student_from_teacher`
    maps block i to the teacher block it was copied from; any other student needs
    ``teacher_layers`` (the teacher's depth) and gets :func:`uniform_layer_map`.
    """
    config = getattr(student, "config", None)
    chosen = getattr(config, TEACHER_LAYERS_KEY, None)
    if chosen:
        return {0: 0} | {i + 1: k + 1 for i, k in enumerate(chosen)}
    if teacher_layers is None:
        raise ModelError(
            "the student was not built from the teacher's layers; give the teacher's layer count "
            "(or an explicit teacher_layers list) to pair hidden states"
        )
    return uniform_layer_map(config.num_hidden_layers, teacher_layers)

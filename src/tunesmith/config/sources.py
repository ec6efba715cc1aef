"""Checks of a recipe's model sources (``model:``, ``distill.teacher:``) that need no model load.

``tunesmith validate`` runs them with the data-file checks, so a path that does not exist, or a
folder holding only pickle weights (which tunesmith never loads: unpickling can run code), fails
before any weights are read, with the key path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tunesmith.configschema import fld
from tunesmith.errors import ConfigError
from tunesmith.paths import looks_like_path

__all__ = ["PICKLE_SUFFIXES", "ModelConfig", "check_model_source", "only_pickle_weights"]


@dataclass
class ModelConfig:
    """``model:`` as a mapping: the name plus how to load it (``model: minilm`` is short for
    ``model: {name: minilm}``)."""

    name: str = fld(help="embedded name (minilm, smollm2), local folder or hub id")
    revision: str | None = fld(
        None, "hub ids only: branch, tag or commit to load (an error for a local folder)"
    )
    dtype: Literal["fp32", "bf16", "fp16", "auto"] = fld(
        "fp32",
        "storage dtype of FROZEN weights (a base under adapters, frozen layers, a teacher, a "
        "reference model): bf16 halves their memory; trainable weights and optimizer state stay "
        "fp32; auto = the dtype train.precision computes in",
    )
    attn_implementation: str | None = fld(
        None,
        "transformers attention backend, e.g. eager, sdpa, flash_attention_2 (default sdpa; "
        "packed training then attends per example, tunesmith_packed: name sdpa to keep its "
        "block-diagonal mask)",
    )
    trust_remote_code: bool = fld(
        False,
        "allow transformers to run the Python code a hub model ships (its auto_map); refused "
        "unless true",
    )
    quantization: Literal["4bit"] | None = fld(
        None,
        "4bit: load the frozen base in 4-bit NF4 through bitsandbytes (QLoRA; needs CUDA, the "
        "bitsandbytes package and an adapter)",
    )

    @classmethod
    def from_string(cls, name: str) -> ModelConfig:
        return cls(name=name)

    def load_options(self) -> dict[str, Any]:
        """Keywords of ``models.load_model`` besides the dtype (revision, remote code, ...)."""
        return {
            "revision": self.revision,
            "trust_remote_code": self.trust_remote_code,
            "attn_implementation": self.attn_implementation,
            "quantization": self.quantization,
        }

    def validate(self, path: str) -> None:
        if not self.name.strip():
            raise ConfigError(
                f"{path}.name", "is empty", "give an embedded model name, a hub id or a folder"
            )
        if self.revision is not None and not self.revision.strip():
            raise ConfigError(f"{path}.revision", "is empty", "a branch, tag or commit, or null")


# weight or state files that are Python pickles (torch.save; loading one can run code): never
# loaded -- by these checks, by models.load_model and by train.checkpoint
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


def only_pickle_weights(folder: Path) -> list[str]:
    """The pickle weight files of a model/adapter folder that has no safetensors weights, else
    ``[]`` (a folder with ``model.safetensors`` beside a ``pytorch_model.bin`` is fine)."""
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return []
    return sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)


def check_model_source(key: str, name: str | None) -> None:
    """A :class:`ConfigError` at ``key`` when ``name`` is meant as a local path that does not
    exist, or names a folder (or a run folder's ``best/``) with only pickle weights."""
    if name is None:
        return
    if not str(name).strip():
        raise ConfigError(key, "is empty", "give an embedded model name, a hub id or a folder")
    path = Path(name).expanduser()
    if not path.exists():
        if looks_like_path(name):
            raise ConfigError(
                key,
                f"folder not found: {path.resolve()}",
                "give an existing folder (a relative path is looked up beside the recipe file, "
                "then under the data root, then in the current directory), "
                "a tunesmith run folder, an embedded model name or a hub id",
            )
        return  # an embedded name or a hub id: resolved when the model loads
    best = path / "best"
    folder = best if (path / "config.yaml").is_file() and best.is_dir() else path
    pickles = only_pickle_weights(folder)
    if pickles:
        raise ConfigError(
            key,
            f"{folder} holds only pickle weights ({', '.join(pickles[:3])}); tunesmith does not "
            "load pickle files, which can run code when read",
            "convert them once, in an environment you trust, with "
            "AutoModel.from_pretrained(folder).save_pretrained(new_folder) (writes safetensors)",
        )

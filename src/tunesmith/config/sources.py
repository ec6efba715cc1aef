"""Checks of a recipe's model sources (``model:``, ``distill.teacher:``) that need no model load.

``tunesmith validate`` runs them with the data-file checks, so a path that does not exist, or a
folder holding only pickle weights (which tunesmith never loads: unpickling can run code), fails
before any weights are read, with the key path.
"""

from __future__ import annotations

from pathlib import Path

from tunesmith.errors import ConfigError
from tunesmith.paths import looks_like_path

__all__ = ["PICKLE_SUFFIXES", "check_model_source", "only_pickle_weights"]

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

"""``tunesmith push``: upload a run's ``best/`` (with its model card) to the Hugging Face hub.

Through ``huggingface_hub``: ``create_repo`` (``exist_ok``), ``create_branch`` for a
``--revision`` that is not ``main``, then ``upload_folder``. A run finished before model cards
existed gets its ``best/README.md`` written first. Offline (``HF_HUB_OFFLINE``), without a token,
or when the hub refuses, the failure is one :class:`HubError` line.
"""

from __future__ import annotations

import os
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.paths import hub_offline
from tunesmith.train.modelcard import CARD_FILE, write_model_card

__all__ = ["HubError", "push_run"]


class HubError(TunesmithError):
    """The model hub cannot be used: offline, no token, or it refused the request."""


def _best_folder(run_dir: Path) -> Path:
    best = run_dir / "best"
    if not (run_dir / "config.yaml").is_file() or not (best / "tunesmith.json").is_file():
        raise TunesmithError(
            f"{run_dir} is not a finished tunesmith run (no config.yaml or best/tunesmith.json); "
            "pass the output_dir of a `tunesmith train` run"
        )
    return best


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def push_run(
    run_dir: str | os.PathLike[str],
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
) -> str:
    """Upload ``run_dir/best`` to model repo ``repo_id`` (created when missing); returns the
    commit's URL. ``revision``: a branch, created from main when missing."""
    run_dir = Path(run_dir)
    best = _best_folder(run_dir)
    if hub_offline():
        raise HubError(
            f"cannot push {best} to {repo_id}: HF_HUB_OFFLINE is set, so the model hub is not "
            "contacted; unset it (and be online) to push"
        )
    from huggingface_hub import HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError

    token = token or get_token()
    if not token:
        raise HubError(
            f"cannot push {best} to {repo_id}: no Hugging Face token; run `hf auth login` or set "
            "HF_TOKEN to a token with write access"
        )
    if not (best / CARD_FILE).is_file():  # a run finished before model cards existed
        write_model_card(run_dir)
    api = HfApi(token=token)
    # the hub's refusals (HfHubHTTPError, an OSError), network failures (the HTTP client's error
    # class, HfHubHTTPError's other base) and invalid repo ids (ValueError): one line each
    failures = (OSError, ValueError, *HfHubHTTPError.__bases__)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision and revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo_id,
            folder_path=best,
            repo_type="model",
            revision=revision,
            commit_message=f"tunesmith push of {run_dir.resolve().name}",
        )
    except failures as exc:
        raise HubError(f"cannot push {best} to {repo_id}: {_reason(exc)}") from exc
    return str(getattr(commit, "commit_url", None) or commit)

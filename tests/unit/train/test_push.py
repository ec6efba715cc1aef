"""``tunesmith push RUN --repo-id ID``: best/ goes up through huggingface_hub (mocked here: no
network); offline, without a token or when the hub refuses, one ``error:`` line."""

import re

import pytest
from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, HFValidationError

from tunesmith.cli import main
from tunesmith.push import HubError, push_run
from tunesmith.train.loop import train

from .conftest import make_recipe

CLS = "sequence_classification"


@pytest.fixture(scope="module")
def finished_run(tiny_models, tiny_data, tmp_path_factory):
    run = tmp_path_factory.mktemp("push") / "run"
    train(make_recipe(tiny_models["bert", CLS], CLS, tiny_data, run, **{"train.epochs": 1}))
    return run


@pytest.fixture
def online(monkeypatch):
    """The hub switched on, with a token; no request leaves the process (HfApi is mocked)."""
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")


@pytest.fixture
def hub(online, monkeypatch):
    calls = []

    def record(name, result=None):
        def method(self, *args, **kwargs):
            calls.append((name, args, kwargs))
            return result

        return method

    commit = type("Commit", (), {"commit_url": "https://huggingface.co/me/m/commit/abc"})()
    monkeypatch.setattr(HfApi, "create_repo", record("create_repo", "https://huggingface.co/me/m"))
    monkeypatch.setattr(HfApi, "create_branch", record("create_branch"))
    monkeypatch.setattr(HfApi, "upload_folder", record("upload_folder", commit))
    return calls


def test_push_uploads_best_with_its_card(finished_run, hub, capsys):
    card = finished_run / "best" / "README.md"
    card.unlink()  # a run finished before model cards: push writes it first
    rc = main(["push", str(finished_run), "--repo-id", "me/m", "--private", "--revision", "v1"])
    assert rc == 0
    assert card.is_file()
    assert [c[0] for c in hub] == ["create_repo", "create_branch", "upload_folder"]
    _, args, kwargs = hub[0]
    assert args == ("me/m",) and kwargs["private"] is True and kwargs["exist_ok"] is True
    assert hub[1][2]["branch"] == "v1"
    upload = hub[2][2]
    assert upload["repo_id"] == "me/m" and upload["revision"] == "v1"
    assert str(upload["folder_path"]) == str(finished_run / "best")
    assert "https://huggingface.co/me/m/commit/abc" in capsys.readouterr().out


def test_push_to_main_creates_no_branch(finished_run, hub):
    push_run(finished_run, "me/m")
    assert [c[0] for c in hub] == ["create_repo", "upload_folder"]
    assert hub[0][2]["private"] is False


def test_push_offline_is_one_line(finished_run, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["push", str(finished_run), "--repo-id", "me/m"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: cannot push") and "HF_HUB_OFFLINE is set" in err[-1]


def test_push_without_token_is_one_line(finished_run, online, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    assert main(["push", str(finished_run), "--repo-id", "me/m"]) == 2
    assert "no Hugging Face token" in capsys.readouterr().err


def http_client():
    """The hub's HTTP client module (httpx, or requests in older huggingface_hub)."""
    return __import__(HfHubHTTPError.__bases__[0].__module__.split(".")[0])


def network_error(message):
    client = http_client()  # not an OSError in httpx: push must catch it by the client's class
    error = getattr(client, "ConnectError", None) or client.ConnectionError
    return error(message)


def refusal(message):
    """An HfHubHTTPError as the hub raises it (it needs a response with its request)."""
    client = http_client()
    try:
        request = client.Request("POST", "https://huggingface.co/api/repos/create")
        response = client.Response(403, request=request)
    except TypeError:  # requests: a Response takes no arguments
        response = client.Response()
        response.status_code = 403
    return HfHubHTTPError(message, response=response)


@pytest.mark.parametrize(
    "error,shown",
    [
        (lambda: refusal("403 Forbidden: you cannot write to me/m\nmore detail"), "403 Forbidden"),
        (lambda: HFValidationError("Repo id must be in the form 'namespace/name'"), "Repo id"),
        (lambda: ConnectionError("Failed to resolve 'huggingface.co'"), "Failed to resolve"),
        (
            lambda: network_error("[Errno -3] Temporary failure in name resolution"),
            "[Errno -3] Temporary",
        ),
    ],
)
def test_hub_failures_are_one_line(finished_run, hub, monkeypatch, capsys, error, shown):
    def refuse(self, *args, **kwargs):
        raise error()

    monkeypatch.setattr(HfApi, "upload_folder", refuse)
    with pytest.raises(HubError, match=rf"cannot push .* to me/m: {re.escape(shown)}") as err:
        push_run(finished_run, "me/m")
    assert "\n" not in str(err.value)
    assert main(["push", str(finished_run), "--repo-id", "me/m"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: cannot push")


def test_push_of_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(["push", str(tmp_path), "--repo-id", "me/m"]) == 2
    assert "is not a finished tunesmith run" in capsys.readouterr().err

"""Rotated secrets take effect without a restart: in Secret volumes laid out
as the kubelet writes them (`tests.chart.kubelet_secret_volume`: the files are
symlinks through `..data`, swapped to a fresh directory on every update), and
in plain files replaced by a rename."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.registry import CollectorRegistry

from exporter.app import create_app
from exporter.auth import Credentials
from exporter.secret_files import SecretFiles, identity, secret_files
from exporter.settings import Settings
from exporter.stores import open_store
from tests.chart import CHART, install, kubelet_secret_volume, load_values, pod_environment
from tests.servers import eventually, exporter_process, serve_in_thread

BODY = {"events": [{"kind": "delivery", "recipient": "a@rotate.example"}]}
# The product promises a rotation within a minute (the poll is every 5 s).
WITHIN_A_MINUTE = 60


@contextlib.contextmanager
def exporter_with_files(files: dict[str, Path], interval: float = 0.05) -> Iterator[httpx.Client]:
    """The app under a real uvicorn, with its settings read from `files`."""
    environ = {f"CLOUDMAILIN_EXPORTER_{field.upper()}_FILE": str(p) for field, p in files.items()}
    secrets = SecretFiles(secret_files(environ), interval)
    with pytest.MonkeyPatch.context() as env:
        for name, value in environ.items():
            env.setenv(name, value)
        settings = Settings()
    app = create_app(settings, CollectorRegistry(), open_store(settings), secrets=secrets)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def status(client: httpx.Client, **kwargs: object) -> int:
    return client.post("/events", json=BODY, **kwargs).status_code  # type: ignore[arg-type]


def bearer(token: str) -> dict[str, dict[str, str]]:
    return {"headers": {"authorization": f"Bearer {token}"}}


def test_a_rotated_basic_password_replaces_the_old_one(tmp_path: Path) -> None:
    volume = tmp_path / "secret"
    kubelet_secret_volume(volume, {"username": "cm\n", "password": "old-pass\n"})
    files = {"basic_auth_username": volume / "username",
             "basic_auth_password": volume / "password"}  # fmt: skip
    with exporter_with_files(files) as client:
        assert status(client, auth=("cm", "old-pass")) == 200
        assert status(client, auth=("cm", "new-pass")) == 401
        kubelet_secret_volume(volume, {"username": "cm\n", "password": "new-pass\n"})
        assert eventually(lambda: status(client, auth=("cm", "new-pass")) == 200, 10)
        assert status(client, auth=("cm", "old-pass")) == 401


def test_a_rotated_token_and_user_replace_the_old_ones(tmp_path: Path) -> None:
    volume = tmp_path / "secret"
    kubelet_secret_volume(volume, {"username": "cm", "password": "pw", "token": "tok-1"})
    files = {"basic_auth_username": volume / "username",
             "basic_auth_password": volume / "password",
             "bearer_token": volume / "token"}  # fmt: skip
    with exporter_with_files(files) as client:
        assert status(client, **bearer("tok-1")) == 200
        kubelet_secret_volume(volume, {"username": "cm-2", "password": "pw", "token": "tok-2"})
        assert eventually(lambda: status(client, **bearer("tok-2")) == 200, 10)
        assert status(client, **bearer("tok-1")) == 401
        assert status(client, auth=("cm", "pw")) == 401
        assert status(client, auth=("cm-2", "pw")) == 200


def replace_file(path: Path, content: bytes) -> None:
    """Write a new file and rename it over `path`, as one should outside Kubernetes."""
    staged = path.with_name(path.name + ".new")
    staged.write_bytes(content)
    staged.replace(path)


@pytest.mark.parametrize(
    "bad",
    [b"", b"\n", b"\xff\xfe not utf-8"],
    ids=["empty", "only-a-newline", "not-utf-8"],
)
def test_an_unusable_new_file_keeps_the_old_credentials_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bad: bytes
) -> None:
    token = tmp_path / "token"
    token.write_text("tok-1\n")
    with exporter_with_files({"bearer_token": token}) as client:
        with caplog.at_level(logging.INFO, logger="exporter"):
            replace_file(token, bad)
            assert eventually(lambda: "cannot be used" in caplog.text, 10)
            # Many more checks pass (every 0.05 s); still one warning, old token good.
            time.sleep(0.5)
            assert status(client, **bearer("tok-1")) == 200
        warnings = [r for r in caplog.records if "cannot be used" in r.getMessage()]
        assert len(warnings) == 1
        assert "TOKEN_FILE" in str(warnings[0].__dict__.get("variable"))
        # A good file afterwards is taken as usual.
        replace_file(token, b"tok-2\n")
        assert eventually(lambda: status(client, **bearer("tok-2")) == 200, 10)
        assert status(client, **bearer("tok-1")) == 401


def test_a_pair_with_one_bad_file_waits_for_it_then_takes_both(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The username's change must not be used up while the password file is bad:
    # taken alone, the old password would meet the new user.
    username, password = tmp_path / "username", tmp_path / "password"
    username.write_text("cm-1\n")
    password.write_text("pw-1\n")
    files = {"basic_auth_username": username, "basic_auth_password": password}
    with exporter_with_files(files) as client:
        with caplog.at_level(logging.INFO, logger="exporter"):
            replace_file(username, b"cm-2\n")
            replace_file(password, b"")
            assert eventually(lambda: "cannot be used" in caplog.text, 10)
            time.sleep(0.5)  # many more checks (every 0.05 s): still one warning
            assert status(client, auth=("cm-1", "pw-1")) == 200
            assert status(client, auth=("cm-2", "pw-1")) == 401
            replace_file(password, b"pw-2\n")
            assert eventually(lambda: status(client, auth=("cm-2", "pw-2")) == 200, 10)
        warnings = [r for r in caplog.records if "cannot be used" in r.getMessage()]
        assert len(warnings) == 1
        assert "PASSWORD_FILE" in str(warnings[0].__dict__.get("variable"))
        assert status(client, auth=("cm-1", "pw-1")) == 401
        assert status(client, auth=("cm-1", "pw-2")) == 401
        assert status(client, auth=("cm-2", "pw-1")) == 401


def test_a_failed_read_is_tried_again_though_the_file_did_not_change(tmp_path: Path) -> None:
    # A read can fail once and work later on the very same file (caught in
    # the kubelet's swap, or written in place): the change is not used up.
    # Here the file is written in place with bytes that are not UTF-8, then
    # with good bytes of the same length and its old mtime: nothing a stat()
    # shows has moved since the failed read.
    token = tmp_path / "token"
    token.write_text("tok-1\n")
    secrets = SecretFiles({"bearer_token": token}, interval=0.05)
    with exporter_with_files({"bearer_token": token}) as client:
        with token.open("r+b") as f:
            f.write(b"\xff\xfe\xfd\xfc\xfb\n")
        stamp = token.stat()
        assert secrets.changed() == {}
        token.write_bytes(b"tok-2\n")
        os.utime(token, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        assert identity(token) == (stamp.st_ino, stamp.st_mtime_ns, stamp.st_size)
        assert secrets.changed() == {"bearer_token": "tok-2"}
        assert eventually(lambda: status(client, **bearer("tok-2")) == 200, 10)
        assert status(client, **bearer("tok-1")) == 401


def test_a_key_gone_from_the_secret_keeps_the_old_credentials(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volume = tmp_path / "secret"
    kubelet_secret_volume(volume, {"token": "tok-1"})
    with exporter_with_files({"bearer_token": volume / "token"}) as client:
        with caplog.at_level(logging.INFO, logger="exporter"):
            # The Secret lost the key: `token` now points at nothing.
            kubelet_secret_volume(volume, {"other": "x"})
            assert eventually(lambda: "cannot be used" in caplog.text, 10)
        assert status(client, **bearer("tok-1")) == 200


def test_a_changed_state_url_file_says_a_restart_is_needed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = f"sqlite:///{tmp_path / 'one.db'}"
    volume = tmp_path / "secret"
    kubelet_secret_volume(volume, {"url": first, "token": "tok"})
    files = {"state_url": volume / "url", "bearer_token": volume / "token"}
    with exporter_with_files(files) as client:
        with caplog.at_level(logging.INFO, logger="exporter"):
            # A swap that leaves the URL as it was says nothing about it.
            kubelet_secret_volume(volume, {"url": first, "token": "tok-2"})
            assert eventually(lambda: status(client, **bearer("tok-2")) == 200, 10)
            assert "restarts" not in caplog.text
            kubelet_secret_volume(volume, {"url": "redis://127.0.0.1:1/0", "token": "tok-2"})
            assert eventually(lambda: "restarts" in caplog.text, 10)
        assert status(client, **bearer("tok-2")) == 200
        assert client.get("/readyz").json()["state_store"] == "up"
        assert (tmp_path / "one.db").exists()
        logged = [r for r in caplog.records if "restarts" in r.getMessage()]
        assert len(logged) == 1
        assert "redis://" not in caplog.text  # the URL may hold a password


def test_settings_from_the_command_line_or_variables_are_not_watched(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("t")
    env = {"CLOUDMAILIN_EXPORTER_BEARER_TOKEN_FILE": str(token),
           "CLOUDMAILIN_EXPORTER_BASIC_AUTH_PASSWORD_FILE": str(token),
           "CLOUDMAILIN_EXPORTER_BASIC_AUTH_PASSWORD": "in-env"}  # fmt: skip
    assert secret_files(env) == {"bearer_token": token}
    assert secret_files(env, overridden={"bearer_token"}) == {}


def test_the_charts_pod_takes_a_rotated_existing_secret_within_a_minute(tmp_path: Path) -> None:
    """The installed command, with the environment and Secret volume the chart renders
    for `webhook.auth.existingSecret`; the Secret changes, the process stays."""
    release = install(load_values(CHART / "ci/existing-secret-values.yaml"))
    old = {"user": "hooks", "pass": "old-pass-123", "token": "tk"}
    env = pod_environment(release, tmp_path / "pod", {"cloudmailin-webhook": old})
    with exporter_process(tmp_path, env=env) as proc:

        def answer(password: str) -> int:
            auth = ("hooks", password)
            return httpx.post(proc.url + "/events", json=BODY, auth=auth).status_code

        assert answer("old-pass-123") == 200
        # The kubelet projects the changed Secret into the same volumes.
        new = {**old, "pass": "new-pass-456"}
        assert pod_environment(release, tmp_path / "pod", {"cloudmailin-webhook": new}) == env
        assert eventually(lambda: answer("new-pass-456") == 200, WITHIN_A_MINUTE)
        assert answer("old-pass-123") == 401
        assert proc.proc.poll() is None
        logs = proc.logs()
    assert "webhook credentials reloaded" in logs
    assert "CLOUDMAILIN_EXPORTER_BASIC_AUTH_PASSWORD_FILE" in logs
    for secret in ("old-pass-123", "new-pass-456"):
        assert secret not in logs


def test_credentials_never_show_their_secrets() -> None:
    shown = repr(Credentials("cm", "pass-in-repr", "token-in-repr"))
    assert "cm" in shown
    assert "pass-in-repr" not in shown
    assert "token-in-repr" not in shown

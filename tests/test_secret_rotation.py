"""Rotated secrets take effect without a restart, in a directory laid out like
the kubelet's Secret volumes (its AtomicWriter): files are symlinks through
`..data`, which is swapped to a fresh timestamped directory on every update."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.registry import CollectorRegistry

from exporter.app import create_app
from exporter.auth import Credentials
from exporter.secret_files import SecretFiles, secret_files
from exporter.settings import Settings
from exporter.stores import open_store
from tests.servers import exporter_process, serve_in_thread

BODY = {"events": [{"kind": "delivery", "recipient": "a@rotate.example"}]}
# The product promises a rotation within a minute (the poll is every 5 s).
WITHIN_A_MINUTE = 60
_versions = itertools.count()


class SecretVolume:
    """A Secret volume as the kubelet writes it."""

    def __init__(self, root: Path, files: dict[str, bytes]) -> None:
        self.root = root
        root.mkdir()
        self.update(files)
        for name in files:
            (root / name).symlink_to(Path("..data") / name)

    def update(self, files: dict[str, bytes]) -> None:
        """Write a new timestamped directory, then swap `..data` to it atomically."""
        old = (self.root / "..data").resolve() if (self.root / "..data").exists() else None
        stamp = self.root / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{next(_versions)}"
        stamp.mkdir()
        for name, content in files.items():
            (stamp / name).write_bytes(content)
        link = self.root / "..data_tmp"
        link.symlink_to(stamp.name)
        link.replace(self.root / "..data")
        if old is not None:
            for child in old.iterdir():
                child.unlink()
            old.rmdir()

    def path(self, name: str) -> Path:
        return self.root / name


def eventually(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


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
    volume = SecretVolume(tmp_path / "secret", {"username": b"cm\n", "password": b"old-pass\n"})
    files = {"basic_auth_username": volume.path("username"),
             "basic_auth_password": volume.path("password")}  # fmt: skip
    with exporter_with_files(files) as client:
        assert status(client, auth=("cm", "old-pass")) == 200
        assert status(client, auth=("cm", "new-pass")) == 401
        volume.update({"username": b"cm\n", "password": b"new-pass\n"})
        assert eventually(lambda: status(client, auth=("cm", "new-pass")) == 200, 10)
        assert status(client, auth=("cm", "old-pass")) == 401


def test_a_rotated_token_and_user_replace_the_old_ones(tmp_path: Path) -> None:
    volume = SecretVolume(
        tmp_path / "secret", {"username": b"cm", "password": b"pw", "token": b"tok-1"}
    )
    files = {"basic_auth_username": volume.path("username"),
             "basic_auth_password": volume.path("password"),
             "bearer_token": volume.path("token")}  # fmt: skip
    with exporter_with_files(files) as client:
        assert status(client, **bearer("tok-1")) == 200
        volume.update({"username": b"cm-2", "password": b"pw", "token": b"tok-2"})
        assert eventually(lambda: status(client, **bearer("tok-2")) == 200, 10)
        assert status(client, **bearer("tok-1")) == 401
        assert status(client, auth=("cm", "pw")) == 401
        assert status(client, auth=("cm-2", "pw")) == 200


@pytest.mark.parametrize(
    "bad",
    [b"", b"\n", b"\xff\xfe not utf-8"],
    ids=["empty", "only-a-newline", "not-utf-8"],
)
def test_an_unusable_new_file_keeps_the_old_credentials_and_logs_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bad: bytes
) -> None:
    volume = SecretVolume(tmp_path / "secret", {"token": b"tok-1"})
    with exporter_with_files({"bearer_token": volume.path("token")}) as client:
        with caplog.at_level(logging.INFO, logger="exporter"):
            volume.update({"token": bad})
            assert eventually(lambda: "cannot be used" in caplog.text, 10)
            # Many more checks pass; the old token still works, the bad one never does.
            time.sleep(0.5)
            assert status(client, **bearer("tok-1")) == 200
        warnings = [r for r in caplog.records if "cannot be used" in r.getMessage()]
        assert len(warnings) == 1
        # A good file afterwards is taken as usual.
        volume.update({"token": b"tok-2"})
        assert eventually(lambda: status(client, **bearer("tok-2")) == 200, 10)
        assert status(client, **bearer("tok-1")) == 401


def test_a_vanished_file_keeps_the_old_credentials(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volume = SecretVolume(tmp_path / "secret", {"token": b"tok-1"})
    with exporter_with_files({"bearer_token": volume.path("token")}) as client:
        with caplog.at_level(logging.INFO, logger="exporter"):
            # The Secret lost the key: `token` now points at nothing.
            volume.update({"other": b"x"})
            assert eventually(lambda: "cannot be used" in caplog.text, 10)
        assert status(client, **bearer("tok-1")) == 200


def test_a_changed_state_url_file_says_a_restart_is_needed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = f"sqlite:///{tmp_path / 'one.db'}".encode()
    volume = SecretVolume(tmp_path / "secret", {"url": first, "token": b"tok"})
    files = {"state_url": volume.path("url"), "bearer_token": volume.path("token")}
    with exporter_with_files(files) as client:
        with caplog.at_level(logging.INFO, logger="exporter"):
            # A swap that leaves the URL as it was says nothing about it.
            volume.update({"url": first, "token": b"tok-2"})
            assert eventually(lambda: status(client, **bearer("tok-2")) == 200, 10)
            assert "restarts" not in caplog.text
            volume.update({"url": b"redis://127.0.0.1:1/0", "token": b"tok-2"})
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


def test_the_installed_command_takes_a_rotated_password_within_a_minute(tmp_path: Path) -> None:
    volume = SecretVolume(tmp_path / "secret", {"username": b"cm", "password": b"old-pass"})
    env = {
        "CLOUDMAILIN_EXPORTER_BASIC_AUTH_USERNAME_FILE": str(volume.path("username")),
        "CLOUDMAILIN_EXPORTER_BASIC_AUTH_PASSWORD_FILE": str(volume.path("password")),
    }
    with exporter_process(tmp_path, env=env) as proc:

        def answer(password: str) -> int:
            return httpx.post(proc.url + "/events", json=BODY, auth=("cm", password)).status_code

        assert answer("old-pass") == 200
        volume.update({"username": b"cm", "password": b"new-pass"})
        assert eventually(lambda: answer("new-pass") == 200, WITHIN_A_MINUTE)
        assert answer("old-pass") == 401
        logs = proc.logs()
    assert "webhook credentials reloaded" in logs
    assert "CLOUDMAILIN_EXPORTER_BASIC_AUTH_PASSWORD_FILE" in logs
    for secret in ("old-pass", "new-pass"):
        assert secret not in logs
    assert os.path.islink(volume.path("password"))


def test_credentials_never_show_their_secrets() -> None:
    shown = repr(Credentials("cm", "pass-in-repr", "token-in-repr"))
    assert "cm" in shown
    assert "pass-in-repr" not in shown
    assert "token-in-repr" not in shown

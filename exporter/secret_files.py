"""Secrets read from files (CLOUDMAILIN_EXPORTER_<NAME>_FILE), and read again when they change.

Kubernetes updates a mounted Secret in place: the kubelet writes the new
files into a fresh timestamped directory and swaps the `..data` symlink the
mounted names point through. Following the symlinks, each name then leads to
a different file, so a file's identity (inode, modification time, size) tells
a change without reading it. Mounts with `subPath` are never updated by the
kubelet; nothing here can see a rotation through one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

ENV_PREFIX: Final = "CLOUDMAILIN_EXPORTER_"
# Fields that may hold credentials: they can be read from a file named by
# <VARIABLE>_FILE, which is how Kubernetes and Docker mount secrets.
SECRET_FIELDS: Final = (
    "basic_auth_username",
    "basic_auth_password",
    "bearer_token",
    "state_url",
)
# 5 s: the kubelet itself takes up to about a minute to project a changed
# Secret (its sync period plus its cache's TTL), so polling adds little to a
# rotation, while a stat() of a few files every five seconds costs nothing.
POLL_SECONDS: Final = 5.0

# st_ino, st_mtime_ns, st_size of the file a path leads to; None if it leads nowhere.
Identity = tuple[int, int, int] | None
# Not an identity: no file has been warned about yet.
_NEVER: Final = (-1, -1, -1)


def file_variable(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}_FILE"


def read_secret(path: Path) -> str:
    """The secret in `path`: its UTF-8 text without the conventional trailing newline.

    Raises ValueError saying why when the file cannot be read, is not UTF-8
    or holds nothing.
    """
    try:
        text = path.read_text(encoding="utf-8").rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    if not text:
        raise ValueError(f"{path} is empty")
    return text


def secret_files(environ: Mapping[str, str], overridden: Collection[str] = ()) -> dict[str, Path]:
    """Each secret field whose value comes from its file: {field: path}.

    A field set on the command line (`overridden`) or by its own variable
    does not come from its file, so that file is not watched.
    """
    return {
        field: Path(environ[file_variable(field)])
        for field in SECRET_FIELDS
        if environ.get(file_variable(field))
        and field not in overridden
        and f"{ENV_PREFIX}{field.upper()}" not in environ
    }


def identity(path: Path) -> Identity:
    try:
        stat = os.stat(path)  # follows symlinks: the kubelet swaps `..data`
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


class SecretFiles:
    """The secret files a process was started with, watched for changes.

    `interval` is in seconds. Nothing here logs a secret's value.
    """

    def __init__(self, paths: Mapping[str, Path], interval: float = POLL_SECONDS) -> None:
        self.paths = dict(paths)
        self.interval = interval
        self._seen = {field: identity(path) for field, path in self.paths.items()}
        # The identity each unusable file had when it was last warned about.
        self._warned: dict[str, Identity] = {}

    def changed(self) -> dict[str, str]:
        """{field: new value} of the files changed since their last use.

        Empty when none changed, or when a changed file cannot be used
        (unreadable, not UTF-8, empty): then the values in use stay, each
        unusable file is logged once until it changes again, and every
        changed file is read again at the next call. A change is taken
        whole or not at all, so a new username never meets an old password.
        """
        now = {field: identity(path) for field, path in self.paths.items()}
        moved = [field for field in self.paths if now[field] != self._seen[field]]
        values = {}
        failed = False
        for field in moved:
            try:
                values[field] = read_secret(self.paths[field])
            except ValueError as exc:
                failed = True
                if self._warned.get(field, _NEVER) != now[field]:
                    self._warned[field] = now[field]
                    log.warning(
                        "a changed secret file cannot be used; keeping the values in use",
                        extra={"variable": file_variable(field), "error": str(exc)},
                    )
        if failed:
            # Nothing is marked seen: a read that failed (a file caught in
            # the kubelet's swap, a key not yet written) is tried again at
            # the next call, and so are the good files, whose change would
            # otherwise be lost while they wait for the bad one.
            return {}
        for field in moved:
            self._seen[field] = now[field]
            self._warned.pop(field, None)
        return values

    async def watch(self, apply: Callable[[dict[str, str]], None]) -> None:
        """Call `apply` with the new values of each change, every `interval` seconds."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                values = self.changed()
                if values:
                    apply(values)
            except Exception:
                # The loop must outlive any single failure, or rotation would
                # silently stop for the life of the process.
                log.exception("secret file check failed")

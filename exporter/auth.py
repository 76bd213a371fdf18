"""Webhook credentials: HTTP Basic (CloudMailin's URL user:pass) and bearer tokens."""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass, field

from exporter.settings import Settings

REALM = "cloudmailin-exporter"
# Settings (and secret files) that feed Credentials, by Credentials field.
CREDENTIAL_FIELDS = {
    "basic_auth_username": "username",
    "basic_auth_password": "password",
    "bearer_token": "token",
}


@dataclass(frozen=True)
class Credentials:
    """What the webhook accepts: a Basic user and password, a bearer token, both or neither."""

    username: str | None = None
    # Out of repr, so that no log or traceback that shows one shows a secret.
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        password = settings.basic_auth_password
        token = settings.bearer_token
        return cls(
            settings.basic_auth_username,
            None if password is None else password.get_secret_value(),
            None if token is None else token.get_secret_value(),
        )


class WebhookAuth:
    def __init__(self, credentials: Credentials) -> None:
        self.credentials = credentials
        self._basic: bytes | None = None
        if credentials.username is not None and credentials.password is not None:
            self._basic = f"{credentials.username}:{credentials.password}".encode()
        self._token = None if credentials.token is None else credentials.token.encode("utf-8")

    @property
    def enabled(self) -> bool:
        return self._basic is not None or self._token is not None

    def challenges(self) -> list[str]:
        out = []
        if self._basic is not None:
            out.append(f'Basic realm="{REALM}", charset="UTF-8"')
        if self._token is not None:
            out.append(f'Bearer realm="{REALM}"')
        return out

    def allows(self, header: str | None) -> bool:
        """Whether an Authorization header carries the configured credentials.

        Comparisons are constant-time; nothing here logs or keeps the header.
        """
        if not self.enabled:
            return True
        if not header:
            return False
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        value = value.strip()
        if scheme == "basic" and self._basic is not None:
            try:
                given = base64.b64decode(value.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError):
                return False
            return hmac.compare_digest(given, self._basic)
        if scheme == "bearer" and self._token is not None:
            try:
                token = value.encode("utf-8")
            except UnicodeEncodeError:
                return False
            return hmac.compare_digest(token, self._token)
        return False

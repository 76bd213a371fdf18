"""Webhook credentials: HTTP Basic (CloudMailin's URL user:pass) and bearer tokens."""

from __future__ import annotations

import base64
import binascii
import hmac

from exporter.settings import Settings

REALM = "cloudmailin-exporter"


class WebhookAuth:
    def __init__(self, settings: Settings) -> None:
        self._basic: bytes | None = None
        if settings.basic_auth_username is not None and settings.basic_auth_password is not None:
            pair = (
                f"{settings.basic_auth_username}:{settings.basic_auth_password.get_secret_value()}"
            )
            self._basic = pair.encode("utf-8")
        self._token = (
            settings.bearer_token.get_secret_value().encode("utf-8")
            if settings.bearer_token is not None
            else None
        )

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

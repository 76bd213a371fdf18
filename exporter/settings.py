"""The one settings class: environment, secret files and the command line feed it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from exporter.secret_files import ENV_PREFIX, SECRET_FIELDS, file_variable, read_secret

STATE_SCHEMES = ("memory", "sqlite", "redis", "rediss", "redis+sentinel")


class SecretFileSource(PydanticBaseSettingsSource):
    """Reads CLOUDMAILIN_EXPORTER_<NAME>_FILE for the secret fields
    (`exporter.secret_files` reads them again when they change)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = file_variable(field_name)
        path = os.environ.get(variable)
        if not path or field_name not in SECRET_FIELDS:
            return None, field_name, False
        try:
            return read_secret(Path(path)), field_name, False
        except ValueError as exc:
            raise ValueError(f"{variable}: {exc}") from None

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class Settings(BaseSettings):
    """Every setting of the exporter, with its environment variable and CLI flag."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_default=True
    )

    host: str = Field("0.0.0.0", description="Address to listen on.")  # noqa: S104 - a pod must be reachable
    port: int = Field(9878, ge=1, le=65535, description="TCP port to listen on.")
    basic_auth_username: str | None = Field(
        None, description="Webhook HTTP Basic user (as in https://user:pass@host/events)."
    )
    basic_auth_password: SecretStr | None = Field(None, description="Webhook HTTP Basic password.")
    bearer_token: SecretStr | None = Field(
        None, description="Webhook bearer token, accepted besides Basic credentials."
    )
    state_url: str = Field(
        "memory://",
        description="State store: memory://, sqlite:///relative.db, sqlite:////abs.db, "
        "redis://[:password@]host:6379/0, rediss:// for TLS, or "
        "redis+sentinel://h1:26379,h2:26379/<master>/<db> for Sentinel (password as in redis://).",
        # The URL may carry the Redis password: keep it out of every repr
        # (tracebacks, debug logs), as SecretStr does for the webhook's.
        repr=False,
    )
    # 10 MiB: CloudMailin batches are a few hundred bytes per event, so this
    # admits batches of tens of thousands of events while a hostile body is
    # cut off long before it costs real memory.
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, le=1024**3, description="Largest accepted POST body in bytes."
    )
    max_domains: int = Field(
        100, ge=1, le=10_000, description="Distinct domain label values besides the allow-list."
    )
    domain_allowlist: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated domains that always get their own series."
    )
    # 5: the big mailbox providers pass it within seconds, while the long
    # tail of one-off corporate domains never takes a slot of the budget.
    domain_min_events: int = Field(
        5, ge=1, le=1_000_000, description="Events a domain needs before it gets its own series."
    )
    # 3 days: CloudMailin and receiving MTAs give up retrying within that,
    # and it is the top histogram bucket, so a registration older than this
    # could not be timed usefully anyway.
    pending_ttl_seconds: float = Field(
        259_200,
        ge=60,
        le=30 * 86_400,
        description="How long a registration (and the duplicate window) is remembered.",
    )
    # 1M: a day or two of a busy sender; about 90 bytes each in memory over a
    # mixed stream (bench/README.md), so about 90 MB at the cap.
    pending_max_entries: int = Field(
        1_000_000, ge=100, le=100_000_000, description="Most messages remembered at once."
    )
    # 20: CloudMailin has added a handful of kinds over the years; twenty
    # new names is generous while it still bounds the label set.
    max_new_kinds: int = Field(
        20, ge=0, le=200, description="Unknown well-formed kinds counted under their own name."
    )
    # 0.5 s: long enough for a healthy Redis or SQLite write across a busy
    # node, short enough that CloudMailin's webhook never waits on a dead one.
    store_timeout_seconds: float = Field(
        0.5, gt=0, le=30, description="Timeout of one state store call."
    )
    log_level: str = Field("info", description="debug, info, warning or error.")
    access_log: bool = Field(
        False, description="Log every HTTP request (costs about half the throughput)."
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, SecretFileSource(settings_cls))

    @field_validator("domain_allowlist", mode="before")
    @classmethod
    def _split_allowlist(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(
                part.strip().lower().rstrip(".") for part in value.split(",") if part.strip()
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, value: str) -> str:
        level = value.lower()
        if level not in ("debug", "info", "warning", "error"):
            raise ValueError("must be one of debug, info, warning, error")
        return level

    @field_validator("state_url")
    @classmethod
    def _check_state_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in STATE_SCHEMES:
            raise ValueError(f"scheme must be one of {', '.join(STATE_SCHEMES)}")
        if scheme == "sqlite" and not value.startswith("sqlite:///"):
            raise ValueError("use sqlite:///relative/path.db or sqlite:////absolute/path.db")
        if scheme == "redis+sentinel":
            # Here, not at the top: the stores package imports this module.
            from exporter.stores.redis import SentinelURL  # noqa: PLC0415

            SentinelURL.parse(value)
        return value

    @model_validator(mode="after")
    def _check_basic_pair(self) -> Settings:
        if (self.basic_auth_username is None) != (self.basic_auth_password is None):
            raise ValueError(
                f"{env_name('basic_auth_username')} and {env_name('basic_auth_password')} "
                "(or their _FILE forms) must be set together"
            )
        return self


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"

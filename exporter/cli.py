"""Command line: `serve` (the default), `rules` and `simulate`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging.config
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import uvicorn
from prometheus_client.registry import CollectorRegistry
from pydantic import BaseModel, ValidationError

from exporter import __version__
from exporter.app import create_app
from exporter.logs import log_config
from exporter.monitoring.config import MonitoringConfig
from exporter.monitoring.rules import render_rules
from exporter.secret_files import SecretFiles, secret_files
from exporter.settings import Settings, env_name
from exporter.simulate import Traffic, simulate
from exporter.stores import open_store

M = TypeVar("M", bound=BaseModel)

log = logging.getLogger("exporter")

# uvicorn waits this long for in-flight webhooks after SIGTERM; Kubernetes
# sends SIGKILL 30 s after SIGTERM by default, so this leaves a margin.
GRACEFUL_SHUTDOWN_SECONDS = 20
# Allocations between collections of the young generation; see serve().
GC_YOUNG_THRESHOLD = 20_000


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def add_model_flags(
    parser: argparse.ArgumentParser, model: type[BaseModel], with_env: bool = False
) -> None:
    """One flag per field of `model`, documented with its default (and variable)."""
    for name, field in model.model_fields.items():
        default = field.default
        if isinstance(default, tuple):
            default = ",".join(default)
        shown = "unset" if default is None else default
        env = f"env {env_name(name)}; " if with_env else ""
        text = f"{field.description} [{env}default {shown}]"
        parser.add_argument(
            flag(name),
            dest=name,
            default=argparse.SUPPRESS,
            metavar=name.upper(),
            # argparse formats help with %: a literal one ("2%") must be doubled.
            help=text.replace("%", "%%"),
        )


def first_error(exc: ValidationError) -> tuple[str, str]:
    """The field (empty for the model as a whole) and message of the first error."""
    first = exc.errors()[0]
    return (str(first["loc"][0]) if first["loc"] else ""), first["msg"]


def build_model(model: type[M], options: dict[str, Any]) -> M:
    """`model` from command-line options; SystemExit with one line naming a bad one."""
    try:
        return model(**options)
    except ValidationError as exc:
        field, message = first_error(exc)
        raise SystemExit(f"cloudmailin-exporter: invalid option {flag(field)}: {message}") from None


def load_settings(overrides: dict[str, Any]) -> Settings:
    """Settings from the environment with the command line on top.

    Raises SystemExit with one line naming the setting when one is invalid.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        field, message = first_error(exc)
        if not field:
            # A rule across fields names its settings in its own message.
            raise SystemExit(f"cloudmailin-exporter: invalid settings: {message}") from None
        where = f"{env_name(field)} / {flag(field)}"
        raise SystemExit(f"cloudmailin-exporter: invalid setting {where}: {message}") from None
    except ValueError as exc:
        raise SystemExit(f"cloudmailin-exporter: invalid settings: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cloudmailin-exporter",
        description="Prometheus exporter for CloudMailin outbound status event webhooks.",
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command")
    serve = commands.add_parser("serve", help="run the webhook and metrics server (default)")
    add_model_flags(serve, Settings, with_env=True)
    rules = commands.add_parser(
        "rules", help="print the Prometheus recording and alert rules, with any knob overridden"
    )
    add_model_flags(rules, MonitoringConfig)
    sim = commands.add_parser("simulate", help="post realistic CloudMailin traffic to a URL")
    add_model_flags(sim, Traffic)
    return parser


async def serve(settings: Settings, secrets: SecretFiles | None = None) -> int:
    try:
        store = open_store(settings)
        await store.start()
    except ValueError as exc:
        # One line that names the setting to fix, whatever the store.
        reason = " ".join(str(exc).split())
        where = f"{env_name('state_url')} / {flag('state_url')}"
        print(f"cloudmailin-exporter: state store ({where}): {reason}", file=sys.stderr)
        return 2
    app = create_app(settings, CollectorRegistry(), store, secrets=secrets)
    # What exists now (modules, the app, a loaded store) lives as long as the
    # process: keep it out of every garbage collection from here on. Each
    # webhook allocates thousands of short-lived tuples and dicts, and
    # collecting the young generation must not walk the whole heap too.
    gc.collect()
    gc.freeze()
    # A 100-event webhook allocates about a thousand containers, almost all
    # freed by reference counting within the request; at Python's default
    # of 700 the young generation would be collected on every request.
    gc.set_threshold(GC_YOUNG_THRESHOLD)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=log_config(settings.log_level),
        access_log=settings.access_log,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        server_header=False,
        # Nothing here uses the client's address, so X-Forwarded-* headers
        # are not worth a middleware on every webhook.
        proxy_headers=False,
        # The webhook is the only client that matters; CloudMailin keeps
        # connections alive between batches.
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    log.info(
        "serving",
        extra={
            "version": __version__,
            "host": settings.host,
            "port": settings.port,
            "state": settings.state_url.split(":", 1)[0],
            "loop": type(asyncio.get_running_loop()).__module__.split(".", 1)[0],
        },
    )
    await server.serve()
    return 0


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (not on Windows), else asyncio's.

    uvicorn only picks its loop in `uvicorn.run()`; the exporter awaits
    `Server.serve()` itself (the store must start first), so it chooses here.
    uvloop's C transports roughly halve the HTTP cost of a small webhook POST.
    """
    try:
        import uvloop  # noqa: PLC0415 - optional at run time
    except ImportError:
        return None
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help", "--version")):
        args.insert(0, "serve")
    parsed = build_parser().parse_args(args)
    options = {k: v for k, v in vars(parsed).items() if k != "command"}
    if parsed.command == "serve":
        # Before the settings read the files: a change in between is seen
        # at the first check instead of missed.
        secrets = SecretFiles(secret_files(os.environ, overridden=options))
        settings = load_settings(options)
        logging.config.dictConfig(log_config(settings.log_level))
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(serve(settings, secrets))
    if parsed.command == "rules":
        sys.stdout.write(render_rules(build_model(MonitoringConfig, options)))
        return 0
    if parsed.command == "simulate":
        report = simulate(build_model(Traffic, options))
        summary = {
            "requests": report.requests,
            "failed_requests": report.failed_requests,
            "sent": dict(sorted(report.sent.items())),
            "accepted": report.accepted,
            "rejected": report.rejected,
            "duplicates": report.duplicates,
            "unsent": report.unsent,
        }
        print(json.dumps(summary, indent=2))
        return 0 if report.failed_requests == 0 else 1
    build_parser().print_help()
    return 2

"""The ASGI app: routes, authentication, the body limit and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from prometheus_client import PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from exporter import __version__
from exporter.domains import DomainGuard
from exporter.events import KindCatalogue
from exporter.ingest import MAINTENANCE_INTERVAL, Ingest
from exporter.landing import landing_page
from exporter.metrics import Clock, ExporterMetrics, wall_clock
from exporter.secret_files import SecretFiles, file_variable
from exporter.settings import Settings
from exporter.stores.base import StateStore
from exporter.webhook import Webhook, WebhookRoute

log = logging.getLogger(__name__)


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def create_app(
    settings: Settings,
    registry: CollectorRegistry,
    store: StateStore,
    clock: Clock = wall_clock,
    secrets: SecretFiles | None = None,
) -> WebhookRoute:
    """The exporter as an ASGI app; everything it keeps state in is passed in.

    `secrets` are the files settings were read from; while the app runs, a
    change to them takes effect without a restart (see `rotate`).
    """
    kinds = KindCatalogue(settings.max_new_kinds)
    domains = DomainGuard(
        settings.max_domains, settings.domain_allowlist, settings.domain_min_events
    )
    metrics = ExporterMetrics(registry, __version__, kinds, domains, store)
    # The process and platform collectors serve both the app's registry and a
    # registry of their own, which /metrics renders after the exporter's
    # families (rendered directly, for speed).
    runtime = CollectorRegistry()
    for collector in (ProcessCollector(registry=None), PlatformCollector(registry=None)):
        registry.register(collector)
        runtime.register(collector)
    ingest = Ingest(metrics, kinds, domains, store, clock)
    webhook = Webhook(settings, ingest, metrics)

    async def scrape(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        openmetrics = content_type.startswith("application/openmetrics-text")
        body = metrics.render(openmetrics) + encoder(runtime)
        return Response(body, headers={"Content-Type": content_type})

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readyz(request: Request) -> Response:
        # Readiness means "can take webhooks", which stays true while the
        # store is down (events are still counted): a 503 here would take
        # every replica out of its Service at once. The body says it.
        store_state = "up" if store.up else "down"
        return Response(
            orjson.dumps({"status": "ready", "state_store": store_state}),
            media_type="application/json",
        )

    async def landing(request: Request) -> Response:
        return HTMLResponse(landing_page(__version__, metrics.totals(), store.pending, store.up))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(exc.status_code, exc.detail, exc.headers)

    async def server_error(request: Request, exc: Exception) -> Response:
        # Logged by WebhookRoute, which sees the exception Starlette re-raises.
        return error(500, "internal error")

    def rotate(values: dict[str, str]) -> None:
        changed = webhook.rotate(values)
        if changed:
            log.info(
                "webhook credentials reloaded; the old ones are refused from now on",
                extra={"files": [file_variable(field) for field in changed]},
            )
        url = values.get("state_url")
        if url is not None and url != settings.state_url:
            # Switching stores under a running process would strand every
            # pending registration in the old one; a restart is the clean cut.
            log.warning(
                "the state URL's file changed; the state store keeps the URL it started "
                "with until the exporter restarts",
                extra={"file": file_variable("state_url")},
            )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await store.start()
        if not webhook.auth.enabled:
            log.warning(
                "NO WEBHOOK CREDENTIALS SET: anyone who can reach /events can write metrics; "
                "set CLOUDMAILIN_EXPORTER_BASIC_AUTH_USERNAME/_PASSWORD or _BEARER_TOKEN"
            )
        tasks = [asyncio.create_task(maintenance(ingest))]
        if secrets is not None and secrets.paths:
            tasks.append(asyncio.create_task(secrets.watch(rotate)))
        try:
            yield {}
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await store.stop()

    routes = [
        Route("/metrics", scrape, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/", landing, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.metrics = metrics
    # Outside Starlette, so a webhook POST skips its middleware stack; the
    # webhook answers its own unexpected errors with a counted JSON 500.
    return WebhookRoute(app, webhook)


async def maintenance(ingest: Ingest) -> None:
    """Expire state and retry a failed store while no webhook drives it."""
    while True:
        await asyncio.sleep(MAINTENANCE_INTERVAL)
        try:
            await ingest.maintain()
        except Exception:
            # The loop must outlive any single failure, or expiry and
            # readiness would silently stop for the life of the process.
            log.exception("state maintenance failed")

"""The ASGI app: routes, authentication, the body limit and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
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
from exporter.auth import WebhookAuth
from exporter.domains import DomainGuard
from exporter.events import KindCatalogue
from exporter.ingest import MAINTENANCE_INTERVAL, Ingest
from exporter.landing import landing_page
from exporter.metrics import Clock, ExporterMetrics, wall_clock
from exporter.settings import Settings
from exporter.stores.base import StateStore

log = logging.getLogger(__name__)

# /events answers every method itself, so that a wrong one gets the JSON 405
# and is counted like any other webhook answer.
ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class BodyTooLargeError(Exception):
    pass


def error(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing it as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError
        chunks.append(chunk)
    return b"".join(chunks)


def is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class Webhook:
    """POST /events."""

    def __init__(self, settings: Settings, ingest: Ingest, metrics: ExporterMetrics) -> None:
        self.auth = WebhookAuth(settings)
        self.limit = settings.max_body_bytes
        self.ingest = ingest
        self.metrics = metrics
        self.unauthorised = {"WWW-Authenticate": ", ".join(self.auth.challenges())}

    async def __call__(self, request: Request) -> Response:
        started = time.perf_counter()
        response = await self._handle(request)
        code = str(response.status_code)
        requests = self.metrics.requests
        requests[code] = requests.get(code, 0) + 1
        self.metrics.request_duration.observe(time.perf_counter() - started)
        return response

    async def _handle(self, request: Request) -> Response:
        if request.method != "POST":
            return error(405, "use POST", {"Allow": "POST"})
        if not self.auth.allows(request.headers.get("authorization")):
            return error(401, "missing or wrong credentials", self.unauthorised)
        if not is_json(request.headers.get("content-type")):
            return error(415, "Content-Type must be application/json")
        try:
            body = await read_limited(request, self.limit)
        except BodyTooLargeError:
            return error(413, f"body larger than {self.limit} bytes")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return error(400, "body is not valid JSON")
        if type(payload) is not dict or type(payload.get("events")) is not list:
            return error(400, 'body must be a JSON object with an "events" list')
        summary = await self.ingest.batch(body, payload["events"])
        return Response(orjson.dumps(summary.as_dict()), media_type="application/json")


def create_app(
    settings: Settings,
    registry: CollectorRegistry,
    store: StateStore,
    clock: Clock = wall_clock,
) -> Starlette:
    """The exporter as an ASGI app; everything it keeps state in is passed in."""
    kinds = KindCatalogue(settings.max_new_kinds)
    domains = DomainGuard(
        settings.max_domains, settings.domain_allowlist, settings.domain_min_events
    )
    metrics = ExporterMetrics(registry, __version__, kinds, domains, store)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    ingest = Ingest(metrics, kinds, domains, store, clock)
    webhook = Webhook(settings, ingest, metrics)

    async def scrape(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), headers={"Content-Type": content_type})

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readyz(request: Request) -> Response:
        if store.ready:
            return Response(b'{"status":"ready"}', media_type="application/json")
        return error(503, "state store unreachable")

    async def landing(request: Request) -> Response:
        return HTMLResponse(landing_page(__version__, metrics.totals(), store.pending, store.ready))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(exc.status_code, exc.detail, exc.headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        await store.start()
        if not webhook.auth.enabled:
            log.warning(
                "NO WEBHOOK CREDENTIALS SET: anyone who can reach /events can write metrics; "
                "set CLOUDMAILIN_EXPORTER_BASIC_AUTH_USERNAME/_PASSWORD or _BEARER_TOKEN"
            )
        task = asyncio.create_task(maintenance(ingest))
        try:
            yield {}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await store.stop()

    routes = [
        Route("/events", webhook.__call__, methods=ANY_METHOD),
        Route("/metrics", scrape, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/", landing, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )
    app.state.metrics = metrics
    app.state.store = store
    return app


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

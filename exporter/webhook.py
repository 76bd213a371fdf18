"""POST /events as a plain ASGI handler.

It is the exporter's one busy route, so it reads the ASGI messages itself
instead of building Starlette Request and Response objects: headers are
scanned once, the body (gzip decoded as it arrives) is refused as soon as it
passes the limit, and the answer is two ASGI messages.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from typing import Any, Final

import orjson
from starlette.applications import Starlette
from starlette.datastructures import State

from exporter.auth import CREDENTIAL_FIELDS, Credentials, WebhookAuth
from exporter.ingest import Ingest
from exporter.metrics import ExporterMetrics
from exporter.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH: Final = "/events"
JSON: Final = (b"content-type", b"application/json")
# zlib's window bits for a gzip wrapper (RFC 1952) around deflate.
GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
GZIP_NAMES: Final = (b"gzip", b"x-gzip")  # x-gzip: RFC 9110 8.4.1.3
ACCEPT_ENCODING: Final = (b"accept-encoding", b"gzip")
INTERNAL_ERROR: Final = orjson.dumps({"error": "internal error"})

log = logging.getLogger(__name__)


def is_json(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (
        media.startswith(b"application/") and media.endswith(b"+json")
    )


class Reply(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Ends handling with an error answer."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None):
        super().__init__(message)
        self.status = status
        self.body = orjson.dumps({"error": message})
        self.headers = headers or []


def is_gzip(content_encoding: bytes | None) -> bool:
    """Whether a request's Content-Encoding (its lines joined by commas) is gzip.

    No header, an empty one and `identity` mean a plain body. One gzip layer
    is decoded; any other coding, or gzip applied twice, is refused with 415.
    """
    if content_encoding is None:
        return False
    codings = [
        coding
        for coding in (part.strip(b" \t").lower() for part in content_encoding.split(b","))
        if coding and coding != b"identity"
    ]
    if not codings:
        return False
    if len(codings) == 1 and codings[0] in GZIP_NAMES:
        return True
    raise Reply(415, "Content-Encoding must be gzip or identity (or absent)", [ACCEPT_ENCODING])


class GzipBody:
    """A gzip body (RFC 1952: one or more members) decoded as it arrives.

    Never inflates more than `limit` bytes: a small body that would inflate
    past it is refused with 413 as soon as it does, without inflating the rest.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._inflate = zlib.decompressobj(GZIP_WBITS)

    def feed(self, data: bytes) -> bytes:
        """The decoded bytes of the next piece of the body.

        Raises Reply 400 when it is not gzip, 413 past the limit.
        """
        out = []
        while data:
            if self._inflate.eof:
                self._inflate = zlib.decompressobj(GZIP_WBITS)  # the next member
            room = self.limit - self.size
            try:
                # One byte past the room is enough to know the body is too big.
                piece = self._inflate.decompress(data, room + 1)
            except zlib.error:
                raise Reply(400, "body is not valid gzip") from None
            if len(piece) > room:
                raise Reply(413, f"body larger than {self.limit} bytes once decoded")
            self.size += len(piece)
            out.append(piece)
            inflate = self._inflate
            data = inflate.unused_data if inflate.eof else inflate.unconsumed_tail
        return b"".join(out)

    def finish(self) -> None:
        """Raises Reply 400 unless the body ended at the end of a gzip member."""
        if not self._inflate.eof:
            raise Reply(400, "gzip body is truncated")


class Webhook:
    def __init__(self, settings: Settings, ingest: Ingest, metrics: ExporterMetrics) -> None:
        self.limit = settings.max_body_bytes
        self.ingest = ingest
        self.metrics = metrics
        self._use(Credentials.from_settings(settings))

    def _use(self, credentials: Credentials) -> None:
        self.auth = WebhookAuth(credentials)
        challenge = ", ".join(self.auth.challenges()).encode()
        self._unauthorised = [(b"www-authenticate", challenge)] if challenge else []

    def rotate(self, values: Mapping[str, str]) -> list[str]:
        """Take new credentials ({setting field: value}, from secret files)
        from the next request on; the old ones are refused from then. Returns
        the fields whose value changed."""
        current = self.auth.credentials
        updates = {
            CREDENTIAL_FIELDS[field]: value
            for field, value in values.items()
            if field in CREDENTIAL_FIELDS and getattr(current, CREDENTIAL_FIELDS[field]) != value
        }
        if updates:
            self._use(dataclasses.replace(current, **updates))
        return sorted(f for f, name in CREDENTIAL_FIELDS.items() if name in updates)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            status, body, headers = 200, await self._handle(scope, receive), []
        except Reply as reply:
            status, body, headers = reply.status, reply.body, reply.headers
        except Exception:
            # A bug or a fault nothing else handles: logged here, once, with
            # its traceback but nothing of the request (the body and the
            # Authorization header stay out of logs), and counted as a 500.
            log.exception("webhook failed")
            status, body, headers = 500, INTERNAL_ERROR, []
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [JSON, (b"content-length", b"%d" % len(body)), *headers],
            }
        )
        await send({"type": "http.response.body", "body": body})
        code = str(status)
        requests = self.metrics.requests
        requests[code] = requests.get(code, 0) + 1
        self.metrics.request_duration.observe(time.perf_counter() - started)

    async def _handle(self, scope: Scope, receive: Receive) -> bytes:
        if scope["method"] != "POST":
            raise Reply(405, "use POST", [(b"allow", b"POST")])
        authorization = content_type = length = encoding = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
            elif name == b"authorization":
                authorization = value
            elif name == b"content-encoding":
                # Several lines are one comma-separated list (RFC 9110 5.3).
                encoding = value if encoding is None else encoding + b"," + value
        if self.auth.enabled and not self.auth.allows(
            None if authorization is None else authorization.decode("latin-1")
        ):
            raise Reply(401, "missing or wrong credentials", self._unauthorised)
        if content_type is None or not is_json(content_type):
            raise Reply(415, "Content-Type must be application/json")
        gzip = GzipBody(self.limit) if is_gzip(encoding) else None
        body = await self._read(receive, length, gzip)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise Reply(400, "body is not valid JSON") from None
        if type(payload) is not dict or type(payload.get("events")) is not list:
            raise Reply(400, 'body must be a JSON object with an "events" list')
        summary = await self.ingest.batch(body, payload["events"])
        return orjson.dumps(summary.as_dict())

    async def _read(self, receive: Receive, length: bytes | None, gzip: GzipBody | None) -> bytes:
        """The body, decoded if `gzip`, refused as soon as it is known to pass
        the limit: as sent, and once decoded.

        The limit holds for the encoded bytes too: deflate can spend any
        number of bytes on no output at all.
        """
        limit = self.limit
        if length is not None and length.isdigit() and int(length) > limit:
            raise Reply(413, f"body larger than {limit} bytes")
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise Reply(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise Reply(413, f"body larger than {limit} bytes")
            chunks.append(chunk if gzip is None else gzip.feed(chunk))
            if not message.get("more_body", False):
                if gzip is not None:
                    gzip.finish()
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class WebhookRoute:
    """The exporter's ASGI app: /events goes straight to the webhook, the rest
    (other routes, lifespan) to the Starlette app."""

    def __init__(self, app: Starlette, webhook: Webhook) -> None:
        self.app = app
        self.webhook = webhook

    @property
    def state(self) -> State:
        return self.app.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
        elif scope["path"] == PATH:
            await self.webhook(scope, receive, send)
        else:
            try:
                await self.app(scope, receive, send)
            except Exception:
                # Starlette has answered the JSON 500 and re-raises for the
                # server to log; it is logged here instead, once.
                log.exception("request failed", extra={"path": scope["path"]})

"""The stack's ceiling: a Starlette endpoint that only reads and parses the body.

It answers like the exporter (a small JSON summary) so both do the same HTTP
work; whatever the exporter does beyond this is its own cost.
"""

from __future__ import annotations

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def events(request: Request) -> Response:
    payload = orjson.loads(await request.body())
    count = len(payload["events"])
    return Response(
        orjson.dumps({"accepted": count, "rejected": 0, "duplicates": 0}),
        media_type="application/json",
    )


app = Starlette(routes=[Route("/events", events, methods=["POST"])])

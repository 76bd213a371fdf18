"""An unexpected failure answers a JSON 500, is logged once with its traceback
(and nothing of the request) and is counted; the exporter goes on serving."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.servers import FakeClock, running_exporter

# Past SQLite's 64-bit INTEGER: the SQLite store's log row stores the receipt
# second, and the Python driver raises OverflowError (not a sqlite3.Error, so
# not a StoreError) when it cannot bind it. A real fault of a real store,
# reached through the clock the app is given.
BEYOND_SQLITE_INTEGER = 1e19

PASSWORD = "s3cret-pass"
MARKER = "body-marker-that-must-not-be-logged"


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info is not None]


def test_a_store_fault_nothing_handles_answers_a_counted_json_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    auth = ("cm", PASSWORD)
    with running_exporter(
        clock, state_url=state_url, basic_auth_username="cm", basic_auth_password=PASSWORD
    ) as exporter:
        ev = {"recipient": f"{MARKER}@f.example", "message_id": "m1"}
        assert exporter.post([{"kind": "registration", **ev}], auth=auth).status_code == 200
        before = exporter.value("cloudmailin_events_total", kind="registration", domain="other")
        caplog.clear()

        clock.now = BEYOND_SQLITE_INTEGER
        with caplog.at_level(logging.INFO):
            response = exporter.post([{"kind": "open", **ev}], auth=auth)
        assert response.status_code == 500
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"error": "internal error"}
        assert exporter.value("cloudmailin_webhook_requests_total", code="500") == 1
        # Logged once, with the traceback of the real fault, and without the
        # request's credentials or body.
        logged = tracebacks(caplog)
        assert len(logged) == 1, [r.getMessage() for r in logged]
        assert logged[0].exc_info is not None
        assert logged[0].exc_info[0] is OverflowError
        text = caplog.text
        assert "Traceback" in text
        for secret in (PASSWORD, MARKER, "Authorization", "authorization"):
            assert secret not in text
        assert exporter.value("cloudmailin_events_total", kind="registration", domain="other") == (
            before
        )

        # The store and the process outlive the fault: with a sane clock the
        # same exporter answers, counts and times again.
        clock.now = FakeClock().now + 10
        assert exporter.post([{"kind": "delivery", **ev}], auth=auth).status_code == 200
        assert exporter.value("cloudmailin_events_total", kind="delivery", domain="other") == 1
        assert exporter.client.get("/readyz").json() == {"status": "ready", "state_store": "up"}
        assert exporter.value("cloudmailin_webhook_requests_total", code="500") == 1


def test_the_500_series_exists_from_start_up() -> None:
    with running_exporter() as exporter:
        text = exporter.client.get("/metrics").text
    assert 'cloudmailin_webhook_requests_total{code="500"} 0.0' in text


def test_other_routes_answer_json_500_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    async def broken(request: Request) -> Response:
        raise RuntimeError("a route failed")

    with running_exporter() as exporter:
        # The app's own router, with its exception handlers, serves the route.
        exporter.app.app.router.routes.append(Route("/broken", broken))
        caplog.clear()
        with caplog.at_level(logging.INFO):
            response = exporter.client.get("/broken")
        assert response.status_code == 500
        assert response.json() == {"error": "internal error"}
        logged = tracebacks(caplog)
        assert len(logged) == 1
        assert logged[0].exc_info is not None
        assert logged[0].exc_info[0] is RuntimeError
        assert exporter.client.get("/healthz").status_code == 200
        # Only webhook POSTs are counted per code.
        assert exporter.value("cloudmailin_webhook_requests_total", code="500") == 0

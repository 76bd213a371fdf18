"""A state-store outage in the middle of a stream of webhooks, as Kubernetes sees
it: the chart's own probe paths stay 200, every event is counted, the outage
shows in cloudmailin_state_store_up, and timing resumes once Redis is back,
all in the same process."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.processes import redis_server
from tests.chart import by_kind, install
from tests.servers import eventually, running_exporter

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # a redis-server stopped mid-stream

# Bounds of the stream: it ends at whichever comes first.
MAX_POSTS = 3000
MAX_SECONDS = 90
# Posts in each phase (before, during and after the outage) before moving on.
PER_PHASE = 40
# "Within seconds": how long the gauge may take to follow Redis.
NOTICE_SECONDS = 5


def probe_paths() -> dict[str, str]:
    """The chart's readiness and liveness paths, as the Helm engine renders them."""
    deployment = by_kind(install())["Deployment"][0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {
        "readiness": container["readinessProbe"]["httpGet"]["path"],
        "liveness": container["livenessProbe"]["httpGet"]["path"],
    }


def scrape(client: httpx.Client) -> dict[str, float]:
    """Each family's samples summed, by sample name."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0) + sample.value
    return totals


@dataclass
class Stream:
    """Webhooks posted from a thread: a registration and a delivery per body."""

    url: str
    stop: threading.Event = field(default_factory=threading.Event)
    posts: int = 0
    events: int = 0
    statuses: list[int | str] = field(default_factory=list)

    def run(self) -> None:
        started = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while (
                not self.stop.is_set()
                and self.posts < MAX_POSTS
                and time.monotonic() - started < MAX_SECONDS
            ):
                ev = {"recipient": f"m{self.posts}@outage.example", "message_id": f"m{self.posts}"}
                body = {"events": [{"kind": "registration", **ev}, {"kind": "delivery", **ev}]}
                try:
                    response = client.post("/events", json=body)
                    self.statuses.append(response.status_code)
                    if response.status_code == 200:
                        self.events += response.json()["accepted"]
                except httpx.HTTPError as exc:
                    self.statuses.append(type(exc).__name__)
                self.posts += 1
                self.stop.wait(0.005)


@dataclass
class Prober:
    """What the kubelet does: GET the probe paths, over and over, noting the phase."""

    url: str
    paths: dict[str, str]
    phase: str = "before"
    stop: threading.Event = field(default_factory=threading.Event)
    answers: list[tuple[str, str, int | str]] = field(default_factory=list)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=3) as client:
            while not self.stop.is_set():
                for probe, path in self.paths.items():
                    phase = self.phase
                    try:
                        answer: int | str = client.get(path).status_code
                    except httpx.HTTPError as exc:
                        answer = type(exc).__name__
                    self.answers.append((phase, probe, answer))
                self.stop.wait(0.05)


def test_redis_stopped_mid_stream(tmp_path: Path) -> None:
    paths = probe_paths()
    with (
        redis_server(tmp_path) as redis,
        running_exporter(state_url=redis.url, store_timeout_seconds=0.2) as exporter,
    ):
        client = exporter.client
        stream = Stream(exporter.url)
        prober = Prober(exporter.url, paths)
        threads = [threading.Thread(target=stream.run), threading.Thread(target=prober.run)]
        for thread in threads:
            thread.start()
        try:
            assert eventually(lambda: stream.posts >= PER_PHASE, 30), "posts before the outage"
            assert scrape(client)["cloudmailin_state_store_up"] == 1

            redis.stop()
            prober.phase = "down"
            assert eventually(
                lambda: scrape(client)["cloudmailin_state_store_up"] == 0, NOTICE_SECONDS
            ), "cloudmailin_state_store_up drops to 0"
            assert client.get("/readyz").json() == {"status": "ready", "state_store": "down"}
            during = stream.posts
            assert eventually(lambda: stream.posts >= during + PER_PHASE, 30), (
                "posts during the outage"
            )
            errors = scrape(client)["cloudmailin_state_errors_total"]
            assert errors >= 1

            redis.start()
            assert eventually(
                lambda: scrape(client)["cloudmailin_state_store_up"] == 1, NOTICE_SECONDS + 10
            ), "cloudmailin_state_store_up back at 1"
            prober.phase = "after"
            timed = scrape(client)["cloudmailin_time_to_delivery_seconds_count"]
            after = stream.posts
            assert eventually(lambda: stream.posts >= after + PER_PHASE, 30), (
                "posts after the outage"
            )
        finally:
            stream.stop.set()
            prober.stop.set()
            for thread in threads:
                thread.join(30)

        samples = scrape(client)
        # Every webhook was taken, and every event it carried counted once.
        assert stream.statuses
        assert set(stream.statuses) == {200}
        assert stream.events == 2 * stream.posts
        assert samples["cloudmailin_events_total"] == stream.events
        # Timing resumed with the store: pairs sent after the recovery were timed.
        assert samples["cloudmailin_time_to_delivery_seconds_count"] > timed
        assert samples["cloudmailin_state_store_up"] == 1
        assert samples["cloudmailin_state_errors_total"] >= errors

    # Both probes answered 200 in every phase, outage included.
    for phase in ("before", "down", "after"):
        for probe in paths:
            answers = [a for p, name, a in prober.answers if (p, name) == (phase, probe)]
            assert answers, f"no {probe} probe while {phase}"
            assert set(answers) == {200}, f"{probe} ({paths[probe]}) while {phase}: {answers}"

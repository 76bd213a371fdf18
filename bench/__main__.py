"""The benchmark: `make bench` (python -m bench). See bench/README.md.

For batches of 1 and 100 events and each state store it measures requests/s,
events/s and p50/p99 latency at saturation and at half of it, against a
parse-only Starlette endpoint (the stack's ceiling) measured in the same run,
interleaved round by round so the ratios hold while the machine's speed
drifts; then /metrics scrape time and size at full label cardinality, memory
per pending message and bytes per message on disk. After every load run it
checks from /metrics that every event of every completed request was counted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import redis

from bench.processes import redis_server
from bench.report import plot, table
from bench.run import (
    CONNECTIONS,
    LOAD_CORE,
    ROOT,
    counted,
    pinned,
    require,
    scrape_time,
    server,
    wrk,
)
from bench.soak import soak

STORES = ("memory", "sqlite", "redis")


def state_urls(stack: ExitStack, tmp: Path, stores: tuple[str, ...]) -> dict[str, str]:
    urls = {"memory": "memory://"}
    if "sqlite" in stores:
        urls["sqlite"] = f"sqlite:///{tmp}/bench-state.db"
    if "redis" in stores:
        require("redis-server")
        # Beside the load generator: a Redis on another node would not take
        # the exporter's core.
        urls["redis"] = stack.enter_context(redis_server(tmp, pinned(LOAD_CORE, []))).url
    return {k: v for k, v in urls.items() if k in stores}


def measured(
    name: str, url: str | None, batch: int, seconds: float, rate: float = 0
) -> dict[str, Any]:
    """One load run against a fresh server, with the exporter's count checked."""
    with server(name, url) as srv:
        if seconds > 1:
            wrk(srv.url, batch, 1)  # warm-up: imports, caches, connections
        # The warm-up's last requests may still be in the server: wait until
        # the count stops moving, or they would be counted against this run.
        before = settled(srv.url) if name != "ceiling" else 0
        load = wrk(srv.url, batch, seconds, rate)
        result: dict[str, Any] = {
            "rps": load.rps, "eps": load.eps, "p50_ms": load.p50_ms, "p99_ms": load.p99_ms,
            "errors": load.errors,
        }  # fmt: skip
        if name != "ceiling":
            # Requests in flight when wrk stopped, or that it gave up on (its
            # timeouts are errors), may have been handled without being counted
            # by wrk; none that wrk saw completed may be missing.
            got = counted(srv.url) - before
            low = load.requests * batch
            high = (load.requests + load.errors + CONNECTIONS) * batch
            result["counted_ok"] = low <= got <= high
            result["counted"] = got
            result["sent_completed"] = low
        return result


def run_once(
    name: str, url: str | None, batch: int, seconds: float, rate: float = 0
) -> dict[str, Any]:
    """`measured` for the ceiling or a store, the store emptied first.

    Every run replays the same stream of batches from its start: a store that
    kept the previous run's records and bodies would take them for retries.
    """
    if url is None:
        return measured("ceiling", None, batch, seconds, rate)
    if name == "sqlite":
        Path(url.removeprefix("sqlite:///")).unlink(missing_ok=True)
    if name == "redis":
        redis.Redis.from_url(url).flushall()
    return measured("exporter", url, batch, seconds, rate)


def settled(url: str, timeout: float = 10) -> float:
    """`counted`, once two reads 0.2 s apart agree."""
    deadline = time.monotonic() + timeout
    last = counted(url)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = counted(url)
        if now == last:
            break
        last = now
    return last


def median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(float(r[key]) for r in runs))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    parser.add_argument("--seconds", type=float, default=10, help="length of each load run")
    parser.add_argument("--stores", default=",".join(STORES), help="stores to measure")
    parser.add_argument("--pending", type=int, default=1_000_000, help="messages for footprints")
    parser.add_argument("--soak", type=float, default=0, help="seconds of soak run (0: none)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--smoke", action="store_true", help="a few seconds: the harness works")
    parser.add_argument("--soak-only", action="store_true", help="only the soak run")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.seconds, args.pending = 1, 1, 20_000
        args.stores = "memory"
        args.soak = args.soak or 4
    require("wrk")
    if args.soak_only:
        result = soak(args.soak or 600)
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
        return 0 if result["lost"] == 0 else 1
    stores = tuple(s for s in args.stores.split(",") if s)
    report: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cores": os.cpu_count(), "server_core": 0, "load_core": int(LOAD_CORE)},
        "connections": CONNECTIONS,
        "rounds": args.rounds,
        "seconds": args.seconds,
        "batches": {},
    }
    with tempfile.TemporaryDirectory() as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        urls = state_urls(stack, tmp, stores)
        for batch in (100, 1):
            names = ("ceiling", *urls)
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            halves: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
            for _ in range(args.rounds):
                for name in names:
                    runs[name].append(run_once(name, urls.get(name), batch, args.seconds))
                # Latency at half of saturation: offer half of this round's
                # requests/s, in the same round so that drift hits both alike.
                for name in names:
                    half = runs[name][-1]["rps"] / 2
                    res = run_once(name, urls.get(name), batch, args.seconds, half)
                    halves[name].append({"offered_rps": half, **res})
            ceiling_eps = median(runs["ceiling"], "eps")
            ceiling_rps = median(runs["ceiling"], "rps")
            entry: dict[str, Any] = {}
            for name, results in runs.items():
                entry[name] = {
                    "rps": median(results, "rps"),
                    "eps": median(results, "eps"),
                    "p50_ms": median(results, "p50_ms"),
                    "p99_ms": median(results, "p99_ms"),
                    "ratio_eps": median(results, "eps") / ceiling_eps,
                    "ratio_rps": median(results, "rps") / ceiling_rps,
                    "counted_ok": all(r.get("counted_ok", True) for r in [*results, *halves[name]]),
                    "runs": results,
                    "half": {
                        "offered_rps": median(halves[name], "offered_rps"),
                        "rps": median(halves[name], "rps"),
                        "p50_ms": median(halves[name], "p50_ms"),
                        "p99_ms": median(halves[name], "p99_ms"),
                        "runs": halves[name],
                    },
                }
            report["batches"][str(batch)] = entry
        with server("exporter", "memory://") as srv:
            wrk(srv.url, 100, max(2.0, args.seconds / 2))
            seconds, size, series = scrape_time(srv.url)
            report["scrape"] = {"seconds": seconds, "bytes": size, "series": series}
        report["footprint"] = {
            "memory_bytes_per_pending": footprint("memory", args.pending),
            "sqlite_bytes_per_message": footprint("sqlite", min(args.pending, 200_000)),
            # A realistic stream: every event of a message costs SQLite a record.
            "mixed": footprint_mixed(min(args.pending, 200_000)),
            "messages": args.pending,
        }
        if "redis" in stores:
            report["footprint"]["redis_bytes_per_message"] = footprint(
                "redis", min(args.pending, 200_000)
            )
        if args.soak:
            report["soak"] = soak(args.soak)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / f"bench-{stamp}.png")
    print(table(report))
    print(f"\nwrote {args.out}/bench-{stamp}.json and .png")
    ok = (
        all(
            e["counted_ok"]
            for b in report["batches"].values()
            for n, e in b.items()
            if n != "ceiling"
        )
        and report.get("soak", {}).get("lost", 0) == 0
    )
    return 0 if ok else 1


def footprint(which: str, messages: int) -> float:
    out = subprocess.run(
        pinned(LOAD_CORE, [sys.executable, "-m", "bench.footprint", which, str(messages)]),
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    value: float = json.loads(out)["bytes_per_message"]
    return value


def footprint_mixed(messages: int) -> dict[str, float]:
    out = subprocess.run(
        pinned(LOAD_CORE, [sys.executable, "-m", "bench.footprint", "mixed", str(messages)]),
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result: dict[str, float] = json.loads(out)
    return result


if __name__ == "__main__":
    sys.exit(main())

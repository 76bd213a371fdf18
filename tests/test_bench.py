"""A smoke run of the benchmark, so the harness cannot rot. It asserts that the
harness measured and checked things, never how fast they were."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # wrk and servers, about a minute


def test_benchmark_smoke_run(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (report_file,) = tmp_path.glob("bench-*.json")
    report = json.loads(report_file.read_text())
    assert report_file.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    for batch in ("100", "1"):
        entry = report["batches"][batch]
        assert set(entry) == {"ceiling", "memory"}
        for name, numbers in entry.items():
            assert numbers["rps"] > 0, name
            assert numbers["p99_ms"] >= numbers["p50_ms"] > 0
            assert numbers["half"]["offered_rps"] > 0
        # Every event of every completed request was counted by the exporter.
        assert entry["memory"]["counted_ok"]
        for run in [*entry["memory"]["runs"], *entry["memory"]["half"]["runs"]]:
            assert run["counted"] >= run["sent_completed"] > 0
        # Half load is measured in every round, at half of that round's rate.
        for numbers in entry.values():
            assert len(numbers["half"]["runs"]) == report["rounds"] == len(numbers["runs"])
            for run, half in zip(numbers["runs"], numbers["half"]["runs"], strict=True):
                assert half["offered_rps"] == run["rps"] / 2
    assert report["batches"]["1"]["memory"]["eps"] == report["batches"]["1"]["memory"]["rps"]
    assert report["scrape"]["series"] > 1000
    assert report["footprint"]["memory_bytes_per_pending"] > 0
    assert report["footprint"]["sqlite_bytes_per_message"] > 0
    mixed = report["footprint"]["mixed"]
    # Every event of a message logs its record's state: more than a registration's row.
    assert mixed["events_per_message"] > 1
    assert mixed["sqlite_bytes_per_message"] > report["footprint"]["sqlite_bytes_per_message"]
    soak = report["soak"]
    assert soak["events_sent"] > 0
    assert soak["lost"] == 0
    assert "x ceiling" in result.stdout

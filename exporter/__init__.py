"""Prometheus exporter for CloudMailin outbound status event webhooks."""

from exporter import native

__version__ = "0.1.0"

if native.pure_requested():
    # Before anything imports the compiled ingest loop.
    native.prefer_source()

"""Prometheus exporter for CloudMailin outbound status event webhooks."""

__version__ = "0.1.0"

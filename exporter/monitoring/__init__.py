"""Monitoring as code: alert and recording rules and dashboards from one config."""

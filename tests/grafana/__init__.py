"""Tests of the monitoring files: dashboards, alert rules, Prometheus config, export."""

"""Monitoring as code for agentbus: Grafana dashboards, Prometheus config and alert rules.

``python -m grafana.generate`` builds the dashboards with ``grafana-foundation-sdk`` and writes
the JSON users browse (``grafana/dashboards/``) plus the copies shipped inside the installed
package (``exporters/monitoring/``, read by :func:`exporters.dashboards.export_all`);
``--check`` fails when any committed copy is stale. ``python -m grafana.render`` draws the
dashboards from a real Prometheus for the README. Not part of the installed distribution.
"""

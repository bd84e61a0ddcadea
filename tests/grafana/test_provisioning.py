"""Grafana provisioning and docker-compose: consistent with each other and the dashboards."""

from __future__ import annotations

import yaml

from tests.grafana._files import DASHBOARDS_DIR, GRAFANA, PROMETHEUS_YML

COMPOSE = GRAFANA / "docker-compose.yml"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "agentbus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "agentbus.yml"


def _mounts(service: str) -> dict[str, str]:
    compose = yaml.safe_load(COMPOSE.read_text())
    pairs = (v.split(":")[:2] for v in compose["services"][service]["volumes"])
    return {container: host for host, container in pairs}


def test_dashboard_provider_path_is_where_compose_mounts_the_dashboards() -> None:
    """The provider's path is the container path of grafana/dashboards."""
    (provider,) = yaml.safe_load(PROVIDERS.read_text())["providers"]
    mounts = _mounts("grafana")
    assert (GRAFANA / mounts[provider["options"]["path"]]).resolve() == DASHBOARDS_DIR
    assert (GRAFANA / mounts["/etc/grafana/provisioning"]).resolve() == GRAFANA / "provisioning"


def test_prometheus_container_reads_the_tested_config() -> None:
    """Compose's Prometheus runs grafana/prometheus/prometheus.yml with exemplar storage."""
    compose = yaml.safe_load(COMPOSE.read_text())
    prom = compose["services"]["prometheus"]
    assert "--enable-feature=exemplar-storage" in prom["command"]
    mounts = _mounts("prometheus")
    assert (GRAFANA / mounts["/etc/prometheus"]).resolve() == PROMETHEUS_YML.parent


def test_datasource_links_exemplars_to_the_trace_datasource() -> None:
    """Prometheus is the default datasource; its trace_id exemplars open the Jaeger one."""
    sources = {d["uid"]: d for d in yaml.safe_load(DATASOURCES.read_text())["datasources"]}
    prom = sources["prometheus"]
    assert prom["type"] == "prometheus" and prom["isDefault"]
    (dest,) = prom["jsonData"]["exemplarTraceIdDestinations"]
    assert dest["name"] == "trace_id"
    assert sources[dest["datasourceUid"]]["type"] in {"jaeger", "tempo"}

"""Offline validation of docker-compose.yml, its Prometheus config and the Grafana dashboard.

The compose file is validated against the Compose Specification's JSON schema (the copy that
the check-jsonschema package ships), then against what Firstline needs from it: Kafka in KRaft
mode, PostgreSQL with one database per service, Mailpit as the relay, every service healthy
before its dependants start, the UI and SMTP intake published, Prometheus scraping every
service, and a dashboard whose queries use metrics the services export.
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from tests.deploy.common import (
    COMPOSE_FILE,
    DASHBOARD,
    DEPLOY,
    PORTS,
    ROOT,
    SERVICES,
    SMTP_INTAKE_PORT,
    known_series,
    promql_metric_names,
)

INFRASTRUCTURE = {"kafka", "postgres", "mailpit"}
ONE_SHOT = {"demo-data"}  # run to completion (restart: "no"); nothing waits for them to be healthy


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, Any]:
    return compose()["services"]


def environment(service: str) -> dict[str, str]:
    env = services()[service].get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def published_ports(service: str) -> set[int]:
    published = set()
    for entry in services()[service].get("ports", []):
        if isinstance(entry, dict):
            published.add(int(entry["published"]))
        else:
            parts = str(entry).split("/")[0].split(":")
            if len(parts) >= 2:
                published.add(int(parts[-2]))
    return published


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with the defaults (no variable set)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


# --------------------------------------------------------------------------- the file


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_every_service_of_the_repository_runs_in_compose() -> None:
    assert set(SERVICES) <= set(services())
    assert INFRASTRUCTURE <= set(services())


def test_every_long_running_service_has_a_healthcheck() -> None:
    for name, spec in services().items():
        check = spec.get("healthcheck", {})
        if name in ONE_SHOT:
            assert spec.get("restart") == "no", f"{name} is a one-shot job"
            continue
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert check.get("retries", 3) * _seconds(check.get("interval", "30s")) >= 30, f"{name}: too little patience"


def _seconds(duration: str) -> float:
    total = 0.0
    for amount, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(amount) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def test_dependencies_wait_for_health() -> None:
    for name, spec in services().items():
        depends = spec.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must name conditions"
        for dependency, condition in depends.items():
            assert dependency in services(), f"{name} depends on unknown {dependency}"
            assert condition.get("condition") == "service_healthy", f"{name} -> {dependency}"
            assert not services()[dependency].get("healthcheck", {}).get("disable"), dependency
    for name in SERVICES:
        depends = services()[name]["depends_on"]
        assert {"postgres", "kafka"} <= set(depends), f"{name} needs PostgreSQL and Kafka first"
    assert {"mailpit"} <= set(services()["notify"]["depends_on"])
    assert {"ingest", "router", "tickets"} <= set(services()["gateway"]["depends_on"]), "the gateway calls them"


def test_ui_and_smtp_intake_are_published() -> None:
    assert PORTS["gateway"] in published_ports("gateway")
    assert SMTP_INTAKE_PORT in published_ports("ingest")
    for name in ("router", "tickets", "notify"):
        assert not published_ports(name), f"{name}'s internal API stays inside the compose network"


def test_kafka_runs_in_kraft_mode() -> None:
    kafka = services()["kafka"]
    env = environment("kafka")
    assert kafka["image"].startswith("apache/kafka:")
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@kafka:")
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert not any("ZOOKEEPER" in key for key in env), "KRaft: no ZooKeeper"
    assert "zookeeper" not in services()
    from shared.bus import MAX_MESSAGE_BYTES

    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= MAX_MESSAGE_BYTES
    assert int(env["KAFKA_REPLICA_FETCH_MAX_BYTES"]) >= MAX_MESSAGE_BYTES
    for name in SERVICES:
        assert environment(name)["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_postgres_has_one_database_per_service() -> None:
    postgres = services()["postgres"]
    assert postgres["image"] == "postgres:16"
    scripts = [v.split(":") for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert len(scripts) == 1
    created = set(re.findall(r"CREATE DATABASE (\w+)", (ROOT / scripts[0][0]).read_text(), re.IGNORECASE))
    assert created == {f"firstline_{s}" for s in SERVICES}
    for name in SERVICES:
        url = urlsplit(interpolate(environment(name)["DATABASE_URL"]))
        assert (url.hostname, url.port, url.path) == ("postgres", 5432, f"/firstline_{name}")
        assert url.username == environment("postgres")["POSTGRES_USER"]


def test_mailpit_is_notify_s_relay() -> None:
    mailpit = services()["mailpit"]
    assert mailpit["image"].startswith("axllent/mailpit:")
    env = environment("notify")
    assert (env["SMTP_RELAY_HOST"], env["SMTP_RELAY_PORT"]) == ("mailpit", "1025")
    assert 8025 in published_ports("mailpit"), "Mailpit's UI shows what Firstline sent"


def test_each_firstline_container_runs_its_service_hardened() -> None:
    for name in SERVICES:
        spec = services()[name]
        env = environment(name)
        assert spec["command"] == ["python", "-m", f"services.{name}"]
        assert env["SERVICE_NAME"] == name
        assert env["HTTP_PORT"] == str(PORTS[name])
        assert env["HTTP_HOST"] == "0.0.0.0", "reachable from the other containers"
        for other, port in PORTS.items():
            if other != "gateway":
                assert env[f"{other.upper()}_URL"] == f"http://{other}:{port}"
        assert spec["read_only"] is True, f"{name}: read-only root file system"
        assert any(str(t).startswith("/tmp") for t in spec["tmpfs"]), f"{name}: /tmp in memory"
        assert str(spec["user"]).split(":")[0] not in ("0", "root")
        assert spec["cap_drop"] == ["ALL"]
        assert spec["build"]["context"] == "." and spec["build"]["dockerfile"] == "Dockerfile"
        assert "/readyz" in spec["healthcheck"]["test"], f"{name}: healthy = ready (database, consumers, relay)"
        assert _seconds(spec["stop_grace_period"]) >= 30, "time for the graceful shutdown"
    assert environment("ingest")["SMTP_PORT"] == str(SMTP_INTAKE_PORT)
    assert environment("ingest")["SMTP_HOST"] == "0.0.0.0"
    gateway = environment("gateway")
    assert interpolate(gateway["FIRSTLINE_ADMIN_USER"]) and interpolate(gateway["FIRSTLINE_ADMIN_PASSWORD"])
    assert len({services()[name]["image"] for name in SERVICES}) == 1, "one image, the command picks the service"


def test_demo_data_job_loads_through_the_apis() -> None:
    job = services()["demo-data"]
    code = job["command"][-1]
    assert "load_demo_data" in code
    for target in ("tickets", "router"):
        assert f"http://{target}:{PORTS[target]}" in code
        assert job["depends_on"][target]["condition"] == "service_healthy"


def test_bind_mounts_exist_in_the_repository() -> None:
    for name, spec in services().items():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"
            else:
                assert source in (compose().get("volumes") or {}), f"{name}: named volume {source} not declared"


# --------------------------------------------------------------------------- Prometheus and Grafana


def test_prometheus_scrapes_every_service_on_its_port() -> None:
    mounted = [v for v in services()["prometheus"]["volumes"] if v.endswith("prometheus.yml:ro")]
    assert mounted
    config = yaml.safe_load((ROOT / mounted[0].split(":")[0]).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name in SERVICES:
        job = jobs[name]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        targets = [(n, sd["port"]) for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
        targets += [tuple(t.split(":")) for sc in job.get("static_configs", []) for t in sc["targets"]]
        assert targets == [(name, PORTS[name])] or targets == [(name, str(PORTS[name]))], f"{name}: {targets}"


def test_grafana_is_provisioned_from_the_repository() -> None:
    grafana = services()["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    provisioning = ROOT / next(src for src, dst in mounts.items() if dst == "/etc/grafana/provisioning")
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert [d["url"] for d in datasources] == ["http://prometheus:9090"]
    providers = yaml.safe_load((provisioning / "dashboards" / "firstline.yml").read_text())["providers"]
    sources = [src for src, dst in mounts.items() if dst == providers[0]["options"]["path"]]
    assert sources, "the dashboard provider's folder is mounted from the repository"
    assert (ROOT / sources[0] / DASHBOARD.name).resolve() == DASHBOARD.resolve()
    variable = next(v for v in dashboard()["templating"]["list"] if v["type"] == "datasource")
    assert variable["current"]["value"] == datasources[0]["uid"], "the dashboard opens on the provisioned datasource"


@cache
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _targets() -> list[tuple[str, str]]:
    return [(panel["title"], t["expr"]) for panel in dashboard()["panels"] for t in panel.get("targets", [])]


def test_dashboard_queries_use_exported_metrics() -> None:
    assert dashboard()["uid"] and dashboard()["title"]
    assert _targets()
    for title, expr in _targets():
        found = promql_metric_names(expr)
        assert found, f"{title}: {expr} selects no metric"
        unknown = found - known_series()
        assert not unknown, f"panel {title!r}: {sorted(unknown)} exported by no service (shared/metrics.py, services/)"
        assert expr.count("(") == expr.count(")"), f"{title}: unbalanced parentheses"


def test_dashboard_shows_what_the_issue_asks_for() -> None:
    titles = " | ".join(panel["title"].lower() for panel in dashboard()["panels"])
    for topic in ("mails in", "routing decisions", "queue sizes", "command latency", "consumer lag", "dead-letter"):
        assert topic in titles, f"no panel about {topic}"
    used = set().union(*(promql_metric_names(expr) for _, expr in _targets()))
    for metric in (
        "firstline_consumer_lag",
        "firstline_dlq_messages_total",
        "firstline_events_appended_total",
        "firstline_outbox_pending",
        "firstline_handler_seconds_bucket",
    ):
        assert metric in used, f"the dashboard does not show {metric}"


def test_dashboard_panels_use_the_datasource_variable_and_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in dashboard()["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"panel {panel['title']!r} overlaps another"
        cells |= mine
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("path", sorted((DEPLOY / "grafana").rglob("*.json")), ids=lambda p: p.name)
def test_every_dashboard_json_parses(path) -> None:
    assert isinstance(json.loads(path.read_text()), dict)

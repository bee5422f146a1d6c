"""Offline checks of the Dockerfile and .dockerignore (no Docker engine here), and of the
container health check script, run for real against a local HTTP server."""

from __future__ import annotations

import http.server
import importlib.util
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.deploy.common import PORTS, ROOT, SERVICES

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
HEALTHCHECK = ROOT / "deploy" / "docker" / "healthcheck.py"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            match = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.IGNORECASE)
            assert match, f"FROM {rest}"
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), match.group(1))
            stages.append(Stage(base, match.group(2)))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def test_dockerfile_is_multi_stage_on_python_slim() -> None:
    _, stages = parse_dockerfile()
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    assert build.name, "the build stage is named, for COPY --from"
    for stage in (build, runtime):
        assert stage.base == "python:3.11-slim", stage.base
    installs = " ".join(build.all("RUN"))
    assert "pip install -c requirements.lock ." in installs, "the project, pinned by requirements.lock"
    assert "python -m venv /opt/venv" in installs
    copies_from_build = [c for c in runtime.all("COPY") if f"--from={build.name}" in c]
    assert copies_from_build == [f"--from={build.name} /opt/venv /opt/venv"], "the runtime takes only the venv"
    assert not any("pip install" in run for run in runtime.all("RUN")), "nothing is built in the runtime stage"


def test_runtime_runs_as_an_unprivileged_user() -> None:
    _, stages = parse_dockerfile()
    runtime = stages[-1]
    users = runtime.all("USER")
    assert users, "the runtime stage sets USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "a numeric USER lets Kubernetes verify runAsNonRoot"
    position = next(i for i, (kw, args) in enumerate(runtime.instructions) if kw == "USER" and args == users[-1])
    after = [kw for kw, _ in runtime.instructions[position:]]
    assert "RUN" not in after and "COPY" not in after, "nothing is written into the image as the service user"
    # the pod securityContext and the compose file use the same uid
    assert f"runAsUser: {user}" in (ROOT / "deploy" / "k8s" / "base" / "gateway.yaml").read_text()
    assert f'user: "{users[-1]}"' in (ROOT / "docker-compose.yml").read_text()


def test_the_command_picks_the_service() -> None:
    _, stages = parse_dockerfile()
    runtime = stages[-1]
    assert not runtime.all("ENTRYPOINT"), "no ENTRYPOINT: the command is the whole `python -m services.<name>`"
    (cmd,) = runtime.all("CMD")
    assert re.fullmatch(r'\["python", "-m", "services\.\w+"\]', cmd)
    env = " ".join(runtime.all("ENV"))
    assert "HTTP_HOST=0.0.0.0" in env and "SMTP_HOST=0.0.0.0" in env, "listen beyond the container's loopback"
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "read-only root: no __pycache__ writes"
    assert runtime.all("WORKDIR") == ["/app"]
    exposed = {int(p) for args in runtime.all("EXPOSE") for p in args.split()}
    assert set(PORTS.values()) | {2525} <= exposed


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_the_entry_point_the_image_runs(service: str) -> None:
    if not (ROOT / "services" / service / "__main__.py").exists():
        pytest.skip(f"services/{service}/__main__.py not written yet")
    assert importlib.util.find_spec(f"services.{service}.__main__") is not None


def _copied_sources() -> list[str]:
    _, stages = parse_dockerfile()
    sources = []
    for stage in stages:
        for args in stage.all("COPY"):
            parts = [p for p in args.split() if not p.startswith("--")]
            if any(p.startswith("--from") for p in args.split()):
                continue
            sources += parts[:-1]
    return sources


def test_copied_files_exist_and_are_not_docker_ignored() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    sources = _copied_sources()
    assert {"pyproject.toml", "requirements.lock", "shared", "services"} <= set(sources)
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: missing"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        kept = [f for f in files if not dockerignored(f.relative_to(ROOT).as_posix(), patterns)]
        assert kept, f"COPY {source}: .dockerignore leaves nothing of it"
        if source in ("shared", "services"):
            migrations = [f for f in kept if f.suffix == ".sql"]
            assert migrations, f"{source}: the SQL migrations must reach the image"
    static = [f for f in (ROOT / "services" / "gateway" / "static").rglob("*") if f.is_file()]
    assert static and not any(dockerignored(f.relative_to(ROOT).as_posix(), patterns) for f in static)
    for unwanted in (
        ".venv/bin/python",
        ".git/HEAD",
        ".data/pg/PG_VERSION",
        "tests/conftest.py",
        "x/__pycache__/a.pyc",
    ):
        assert dockerignored(unwanted, patterns), f"{unwanted} would be sent to the Docker daemon"


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern excludes a folder and everything in it."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


# --------------------------------------------------------------------------- the health check script


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        status = 200 if self.path == "/healthz" else 503
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_service() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _run_healthcheck(path: str, env: dict[str, str]) -> int:
    environment = {k: v for k, v in os.environ.items() if k not in ("HTTP_PORT", "SERVICE_NAME")} | env
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), path], env=environment, capture_output=True, timeout=30
    ).returncode


def test_healthcheck_script_reports_the_endpoint_status(local_service: int) -> None:
    assert _run_healthcheck("/healthz", {"HTTP_PORT": str(local_service)}) == 0
    assert _run_healthcheck("/readyz", {"HTTP_PORT": str(local_service)}) == 1, "503 is unhealthy"


def test_healthcheck_script_fails_when_nothing_listens(local_service: int) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    assert _run_healthcheck("/healthz", {"HTTP_PORT": str(free)}) == 1


def test_healthcheck_script_knows_the_default_ports() -> None:
    source = HEALTHCHECK.read_text()
    for service, port in PORTS.items():
        assert f'"{service}": {port}' in source
    _, stages = parse_dockerfile()
    runtime = stages[-1]
    assert any("deploy/docker/healthcheck.py" in c for c in runtime.all("COPY"))
    assert "/app/healthcheck.py" in " ".join(runtime.all("HEALTHCHECK"))

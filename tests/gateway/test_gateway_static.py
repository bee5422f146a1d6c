"""The agent UI's static files: present, self-contained, and free of HTML-injection sinks."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from fastapi.routing import APIRoute

STATIC = Path(__file__).resolve().parents[2] / "services" / "gateway" / "static"
FILES = ("index.html", "app.js", "app.css")


def read(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", FILES)
def test_static_file_exists(name: str) -> None:
    assert (STATIC / name).is_file()
    assert read(name).strip()


def test_index_references_script_and_stylesheet() -> None:
    index = read("index.html")
    assert re.search(r'<script[^>]+src="[^"]*app\.js"', index)
    assert re.search(r'<link[^>]+rel="stylesheet"[^>]+href="[^"]*app\.css"', index)


@pytest.mark.parametrize("name", FILES)
def test_no_external_urls(name: str) -> None:
    text = read(name).lower()
    assert "http://" not in text and "https://" not in text
    assert not re.search(r"""(src|href)\s*=\s*["']//""", text)
    assert "@import" not in text


def test_no_inline_scripts_or_handlers() -> None:
    """Keeps the page compatible with a strict Content-Security-Policy (script-src 'self')."""
    index = read("index.html")
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", index))
    assert not re.search(r"\son[a-z]+\s*=", index)


def test_app_js_has_no_html_injection_sinks() -> None:
    script = read("app.js")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in script, sink


def test_mail_html_only_in_sandboxed_iframe() -> None:
    script = read("app.js")
    assert "srcdoc" in script
    assert re.search(r"h\('iframe', \{ sandbox: ''", script)


def test_ui_talks_to_the_documented_api() -> None:
    script = read("app.js")
    for path in ("/api/login", "/api/queues", "/api/tickets", "/api/search", "/api/mails/", "/api/events"):
        assert path in script, path
    assert "credentials: 'same-origin'" in script
    assert "'firstline_csrf'" in script and "'X-CSRF-Token'" in script


def test_translations_cover_every_key() -> None:
    script = read("app.js")
    blocks = re.search(r"const MESSAGES = \{\s*en: \{(.*?)\n    \},\n    de: \{(.*?)\n    \},", script, re.S)
    assert blocks
    key = re.compile(r"(?<=\s)(?:'([^']+)'|([A-Za-z_]\w*)): '")
    en, de = ({a or b for a, b in key.findall(block)} for block in blocks.groups())
    assert en == de, en ^ de
    index = read("index.html")
    used = set(re.findall(r'data-i18n(?:-placeholder|-aria-label)?="([^"]+)"', index))
    used |= set(re.findall(r"\bt\('([\w.]+)'", script))
    assert used <= en, used - en


def test_admin_screens_call_only_routes_the_gateway_has() -> None:
    """Every `adminApi(path, {method})` of the UI is a route of the gateway's admin router."""
    from services.gateway.api.admin import router

    routes = [
        (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", route.path) + "$"), route.methods)
        for route in router.routes
        if isinstance(route, APIRoute)
    ]
    calls = re.findall(r"adminApi\(([`'])(/[^`']*)\1(?:,\s*\{\s*method:\s*'(\w+)')?", read("app.js"))
    assert len(calls) >= 15, calls
    for _, path, method in calls:
        concrete = "/api/admin" + re.sub(r"\$\{[^}]+\}", "x", path)
        assert any(pattern.match(concrete) and (method or "GET") in methods for pattern, methods in routes), (
            f"{method or 'GET'} {concrete}"
        )


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_app_js_parses() -> None:
    subprocess.run(["node", "--check", str(STATIC / "app.js")], check=True)

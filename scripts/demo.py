"""Demo data for `make dev`: the queues and system addresses of ARCHITECTURE.md.

Loaded through the services' own APIs (so it is audited like any admin change); loading
twice changes nothing.
"""

from __future__ import annotations

import httpx

DOMAIN = "firstline.example"
QUEUES = {
    "Raw": {"group": "users", "comment": "default queue for new mail"},
    "Junk": {"group": "junk", "comment": "spam", "follow_up_policy": "new_ticket"},
    "Info-en": {"group": "info", "system_address": f"info@{DOMAIN}"},
    "Info-de": {
        "group": "info",
        "system_address": f"info-de@{DOMAIN}",
        "display_name": "Firstline (Deutsch)",
        "salutation": "Hallo {{ customer_name or '' }},",
        "signature": "-- \nIhr Firstline-Team",
    },
    "Permissions": {"group": "permissions", "system_address": f"permissions@{DOMAIN}", "follow_up_policy": "reject"},
    "Press": {"group": "press", "system_address": f"press@{DOMAIN}"},
}
SYSTEM_ADDRESSES = {
    f"info@{DOMAIN}": {"queue": "Info-en", "display_name": "Firstline", "language_queues": {"de": "Info-de"}},
    f"info-de@{DOMAIN}": {"queue": "Info-de", "display_name": "Firstline (Deutsch)"},
    f"permissions@{DOMAIN}": {"queue": "Permissions", "display_name": "Firstline Permissions"},
    f"press@{DOMAIN}": {"queue": "Press", "display_name": "Firstline Press"},
}
HEADERS = {"X-Actor": "system:demo"}


def load_demo_data(urls: dict[str, str]) -> None:
    with httpx.Client(timeout=10, headers=HEADERS) as client:
        for name, fields in QUEUES.items():
            client.put(f"{urls['tickets']}/queues/{name}", json=fields).raise_for_status()
        for email, fields in SYSTEM_ADDRESSES.items():
            client.put(f"{urls['router']}/system-addresses/{email}", json=fields).raise_for_status()

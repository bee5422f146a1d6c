"""A ticket and its full history as one printable HTML page (everything escaped). Pure."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from jinja2 import Environment

_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Ticket {{ t.number }} — audit report</title>
<style>
  body { font: 11pt/1.4 system-ui, sans-serif; margin: 2em; color: #111; }
  h1 { font-size: 16pt; margin-bottom: 0; } h2 { font-size: 13pt; border-bottom: 1px solid #999; }
  table { border-collapse: collapse; width: 100%; margin-bottom: 1em; }
  th, td { border: 1px solid #bbb; padding: 3px 6px; vertical-align: top; text-align: left; }
  th { background: #eee; } .meta { color: #555; font-size: 9pt; }
  .article { border: 1px solid #bbb; padding: 6px; margin-bottom: 8px; page-break-inside: avoid; }
  pre { white-space: pre-wrap; word-break: break-word; margin: 0; font-size: 9pt; }
  code { font-size: 8pt; word-break: break-all; }
  @media print { body { margin: 0; } a { color: inherit; text-decoration: none; }
    details { display: block; } details > summary { display: none; } tr { page-break-inside: avoid; } }
</style>
</head>
<body>
<h1>Ticket {{ t.number }}: {{ t.title }}</h1>
<p class="meta">Report generated {{ generated }} · ticket id <code>{{ t.ticket_id }}</code> ·
{{ events | length }} events · hash of the last event <code>{{ last_hash }}</code></p>
<h2>Ticket</h2>
<table>
{% for label, value in fields %}<tr><th>{{ label }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>
<h2>Articles</h2>
{% for a in t.articles %}<div class="article">
<div class="meta">{{ a.created_at }} · {{ a.kind }} · {{ a.sender_type }} · by {{ a.created_by }}
{% if a.mail_id %}· mail {{ a.mail_id }}{% endif %}{% if a.delivery %}· delivery: {{ a.delivery }}{% endif %}</div>
<div><b>From:</b> {{ a["from"] or "" }} <b>To:</b> {{ a.to | join(", ") }}
{% if a.cc %}<b>Cc:</b> {{ a.cc | join(", ") }}{% endif %}</div>
<div><b>Subject:</b> {{ a.subject }}</div>
<pre>{{ a.body }}</pre>
</div>{% else %}<p>No articles.</p>{% endfor %}
<h2>History</h2>
<table>
<tr><th>#</th><th>When</th><th>Who</th><th>What</th><th>Ids</th></tr>
{% for e in events %}<tr>
<td>{{ e.stream_version }}</td><td>{{ e.occurred_at }}</td><td>{{ e.actor }}</td>
<td>{{ e.description }}<details><summary>raw</summary><pre>{{ raw(e.data) }}</pre></details></td>
<td class="meta">event <code>{{ e.event_id }}</code><br>correlation <code>{{ e.correlation_id }}</code>
{% if e.causation_id %}<br>caused by <code>{{ e.causation_id }}</code>{% endif %}
{% if e.links.replies_to %}<br>replies to <code>{{ e.links.replies_to }}</code>{% endif %}
{% if e.links.delivery_of %}<br>delivery of <code>{{ e.links.delivery_of }}</code>{% endif %}
<br>hash <code>{{ e.hash }}</code></td>
</tr>{% endfor %}
</table>
</body>
</html>
"""

_ENVIRONMENT = Environment(autoescape=True)
_COMPILED = _ENVIRONMENT.from_string(_TEMPLATE)

_FIELDS = (
    ("Number", "number"),
    ("Title", "title"),
    ("Queue", "queue"),
    ("State", "state"),
    ("Priority", "priority"),
    ("Locked by", "locked_by"),
    ("Owner", "owner"),
    ("Responsible", "responsible"),
    ("Customer", "customer_email"),
    ("Created", "created_at"),
    ("Changed", "changed_at"),
    ("Merged into", "merged_into"),
)


def _raw(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()


def render_report(ticket: dict[str, Any], history: dict[str, Any], generated: datetime) -> str:
    events = history["events"]
    fields = [(label, "" if ticket.get(key) is None else ticket[key]) for label, key in _FIELDS]
    return _COMPILED.render(
        t=ticket,
        events=events,
        fields=fields,
        raw=_raw,
        generated=generated.isoformat(timespec="seconds"),
        last_hash=events[-1]["hash"] if events else "",
    )

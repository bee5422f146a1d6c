"""The JSON shapes of the tickets API (docs/services.md), from read-model rows. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from services.tickets.history import describe
from services.tickets.state import Ticket
from shared.envelope import Envelope
from shared.events import CLOSED_STATES

Row = Mapping[str, Any]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def ticket_item(row: Row) -> dict[str, Any]:
    """A ticket as the list shows it."""
    return {
        "number": row["number"],
        "ticket_id": row["ticket_id"],
        "title": row["title"],
        "state": row["state"],
        "locked": row["locked_by"] is not None,
        "locked_by": row["locked_by"],
        "owner": row["owner"],
        "queue": row["queue"],
        "priority": row["priority"],
        "customer_email": row["customer_email"],
        "created_at": _iso(row["created_at"]),
        "changed_at": _iso(row["changed_at"]),
        "pending_until": _iso(row["pending_until"]),
        "escalation_due_at": _iso(row["escalation_due_at"]),
        "escalation_kind": row["escalation_kind"],
    }


def ticket_at(t: Ticket) -> dict[str, Any]:
    """A ticket as the list shows it, from a fold (time travel) rather than a row."""
    due = t.escalation_due
    return {
        "number": t.number,
        "ticket_id": t.ticket_id,
        "title": t.title,
        "state": t.state,
        "locked": t.lock is not None,
        "locked_by": t.lock,
        "owner": t.owner,
        "queue": t.queue,
        "priority": t.priority,
        "customer_email": t.customer_email,
        "created_at": _iso(t.created_at),
        "changed_at": _iso(t.changed_at),
        "pending_until": _iso(t.pending_until),
        "escalation_due_at": _iso(due.due_at) if due else None,
        "escalation_kind": due.kind if due else None,
        "version": t.version,
    }


def absorbed_ticket_ids(row: Row) -> list[str]:
    """Tickets merged into this one: their articles show in its zoom."""
    return [a["ticket_id"] for a in row["doc"].get("absorbed", [])]


def ticket_zoom(row: Row, articles: Iterable[Row]) -> dict[str, Any]:
    doc = row["doc"]
    return {
        **ticket_item(row),
        "responsible": row["responsible"],
        "customer_id": row["customer_id"],
        "watchers": list(row["watchers"]),
        "merged_into": row["merged_into"],
        "merged_from": [a["number"] for a in doc.get("absorbed", [])],
        "splits": [s["new_number"] for s in doc.get("splits", [])],
        "spam": row["spam"],
        "version": row["version"],
        "articles": [article_view(a) for a in articles],
    }


def article_view(a: Row) -> dict[str, Any]:
    return {
        "article_id": a["article_id"],
        "ticket_id": a["ticket_id"],
        "kind": a["kind"],
        "channel": a["channel"],
        "sender_type": a["sender_type"],
        "visible_to_customer": a["visible_to_customer"],
        "from": a["from_addr"],
        "to": list(a["to_addrs"]),
        "cc": list(a["cc_addrs"]),
        "subject": a["subject"],
        "body": a["body"],
        "body_html": a["body_html"],
        "created_at": _iso(a["created_at"]),
        "created_by": a["created_by"],
        "mail_id": a["mail_id"],
        "message_id": a["message_id"],
        "in_reply_to": a["in_reply_to"],
        "attachments": a["attachments"],
        "delivery": a["delivery"],
        "delivery_detail": a["delivery_detail"],
        "bounce_of": a.get("bounce_of"),  # a bounce mail: the answer article it returned
    }


def queue_view(row: Row | None, name: str, counts: Mapping[tuple[str, bool], int]) -> dict[str, Any]:
    """A queue with its counts: by state, all, not closed ("open"), and locked."""
    by_state: dict[str, int] = {}
    for (state, _locked), n in counts.items():
        by_state[state] = by_state.get(state, 0) + n
    config = dict(row["config"]) if row is not None else {"name": name}
    return {
        **config,
        "configured": row is not None,
        "counts": dict(sorted(by_state.items())),
        "total": sum(by_state.values()),
        "open": sum(n for state, n in by_state.items() if state not in CLOSED_STATES),
        "locked": sum(n for (_state, locked), n in counts.items() if locked),
    }


def queue_views(rows: Sequence[Row], count_rows: Iterable[Row]) -> list[dict[str, Any]]:
    """Every configured queue, and any queue that holds tickets without being configured."""
    counts: dict[str, dict[tuple[str, bool], int]] = {}
    for c in count_rows:
        counts.setdefault(c["queue"], {})[(c["state"], c["locked"])] = int(c["n"])
    configured = {r["name"]: r for r in rows}
    names = sorted(set(configured) | set(counts))
    return [queue_view(configured.get(name), name, counts.get(name, {})) for name in names]


def history_event(e: Envelope, links: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One event, human-readable (``description``) and raw (``data``), with its ``links``."""
    return {
        "event_id": e.event_id,
        "type": e.type,
        "occurred_at": _iso(e.occurred_at),
        "recorded_at": _iso(e.recorded_at),
        "actor": e.actor,
        "stream_version": e.stream_version,
        "correlation_id": e.correlation_id,
        "causation_id": e.causation_id,
        "description": describe(e),
        "data": e.data,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
        "links": dict(links or {}),
    }


_ROUTED_ACTOR = "system:router"
_DELIVERY_TYPES = ("AnswerDelivered", "DeliveryFailed", "DeliveryBounced")
_ARTICLE_TYPES = ("ArticleAdded", "AnswerSent", "AutoReplyRequested")  # what a mail may reply to


def event_links(stream: Sequence[Envelope], caused: Mapping[str, Sequence[str]]) -> dict[str, dict[str, Any]]:
    """How a ticket's events hang together, per event id: the mail an event came from and the
    router decision behind it, the mail an answer replies to (and the answers to a mail), the
    answer a delivery result is about (and its results), and plain causation both ways.

    ``caused``: event id → ids of the events (anywhere in the store) whose causation it is.
    """
    known = {e.event_id for e in stream}
    by_message = {
        e.data["message_id"]: e.event_id
        for e in stream
        if e.type in _ARTICLE_TYPES and isinstance(e.data.get("message_id"), str)
    }
    answers = {e.data["article_id"]: e.event_id for e in stream if e.type == "AnswerSent"}
    links: dict[str, dict[str, Any]] = {e.event_id: _own_links(e, known, caused) for e in stream}
    for e in stream:
        replied = by_message.get(e.data.get("in_reply_to") or "")
        if replied and replied != e.event_id:
            links[e.event_id]["replies_to"] = replied
            links[replied].setdefault("replied_by", []).append(e.event_id)
        answer = answers.get(e.data.get("article_id") or "") if e.type in _DELIVERY_TYPES else None
        if answer:
            links[e.event_id]["delivery_of"] = answer
            links[answer].setdefault("deliveries", []).append(e.event_id)
    return links


def _own_links(e: Envelope, known: set[str], caused: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    links: dict[str, Any] = {}
    if e.causation_id:
        links["caused_by"] = {"event_id": e.causation_id, "in_store": e.causation_id in known}
    mail_id = e.data.get("mail_id") if e.type in ("TicketCreated", "ArticleAdded") else None
    if mail_id:
        links["mail"] = {"mail_id": mail_id, "href": f"/api/mails/{mail_id}"}
        if e.causation_id and e.actor == _ROUTED_ACTOR:
            links["caused_by"].update({"type": "TicketRouted", "reasons_href": f"/api/mails/{mail_id}"})
    if caused.get(e.event_id):
        links["caused"] = list(caused[e.event_id])
    return links


def template_view(row: Row) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "body": row["body"], "queues": list(row["queues"])}


def page(total: int, items: list[dict[str, Any]], page_number: int, page_size: int) -> dict[str, Any]:
    return {"total": total, "items": items, "page": page_number, "page_size": page_size}

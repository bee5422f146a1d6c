"""A bounce of one of our answers, through the router's decision and the tickets service (real
PostgreSQL and broker): the bounce article is linked to the answer, the answer's delivery is
"bounced" (zoom and history), and no auto reply goes to the bounce."""

from __future__ import annotations

from services.ingest.domain import parse_mail
from services.router.domain import RouterConfig, SnapshotIndex, TicketInfo, route
from shared.envelope import make_envelope
from shared.events import TOPIC_TICKET_EVENTS, TOPIC_TICKET_ROUTED, AnswerSent
from shared.settings import ServiceSettings
from tests.conftest import eventually
from tests.router.test_router_bounce import dsn, dsn_text

from .service_kit import ALICE, deliver, new_ticket, publish, read_topic, running, tickets_settings


async def test_a_bounce_is_linked_to_the_answer_it_returns(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        number = await new_ticket(app, client, "mail-1")
        answered = await client.post(f"/tickets/{number}/answer", json={"body": "Done."}, headers=ALICE)
        assert answered.status_code == 200, answered.text
        ticket = answered.json()["ticket"]
        answer = ticket["articles"][-1]
        published = await read_topic(settings, TOPIC_TICKET_EVENTS, expected=4)
        sent = next(e.payload() for _, e in published if e.type == "AnswerSent")
        assert isinstance(sent, AnswerSent) and sent.article_id == answer["article_id"]

        # The DSN quotes our answer's Message-ID only in the returned headers (no In-Reply-To);
        # the router's own decision on it, as ingest parsed it, goes to tickets over the broker.
        raw = dsn(sent.message_id.strip("<>"), headers_only=True)
        mail = parse_mail(raw)
        index = SnapshotIndex(
            [TicketInfo(ticket_id=ticket["ticket_id"], number=number, queue=ticket["queue"], state="open")],
            {sent.message_id.strip("<>"): number},
        )
        decision = route(mail, "mail-bounce", [], RouterConfig(), index, delivery_status=dsn_text(raw))
        assert decision.action == "follow_up" and decision.bounce is not None
        envelope = make_envelope(decision, stream_id="mail-bounce", actor="system:router")
        await publish(settings, TOPIC_TICKET_ROUTED, [envelope], key=ticket["ticket_id"])

        async def bounced() -> dict | None:
            articles = (await client.get(f"/tickets/{number}")).json()["articles"]
            return {a["article_id"]: a for a in articles} if len(articles) == 3 else None

        articles = await eventually(bounced)
        answer_view = articles[answer["article_id"]]
        bounce_view = next(a for a in articles.values() if a["mail_id"] == "mail-bounce")
        assert answer_view["delivery"] == "bounced"
        assert answer_view["delivery_detail"].startswith("bounced: 5.1.1 550 5.1.1 <bob@example.net>")
        assert bounce_view["bounce_of"] == answer["article_id"]

        history = (await client.get(f"/tickets/{number}/history")).json()
        types = [e["type"] for e in history["events"]]
        assert types[-2:] == ["ArticleAdded", "DeliveryBounced"]  # no auto reply to a bounce
        assert history["events"][-1]["description"] == (
            f"Answer {sent.message_id} bounced: 5.1.1 550 5.1.1 <bob@example.net>: Recipient address rejected: "
            f"User unknown (bounce mail is article {bounce_view['article_id']})"
        )
        assert history["ticket"]["articles"][-1]["bounce_of"] == answer["article_id"]


async def test_a_bounce_of_mail_we_did_not_answer_with_is_kept_unlinked(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (app, client):
        number = await new_ticket(app, client, "mail-1")
        ticket = (await client.get(f"/tickets/{number}")).json()
        raw = dsn("someone-else@example.org")
        index = SnapshotIndex(
            [TicketInfo(ticket_id=ticket["ticket_id"], number=number, queue=ticket["queue"], state="open")],
            {"someone-else@example.org": number},  # threaded (e.g. by a quoted id), but no answer of ours
        )
        decision = route(parse_mail(raw), "mail-bounce", [], RouterConfig(), index)
        await deliver(app, make_envelope(decision, stream_id="mail-bounce", actor="system:router"))
        zoom = (await client.get(f"/tickets/{number}")).json()
        assert [a["bounce_of"] for a in zoom["articles"]] == [None, None]
        history = (await client.get(f"/tickets/{number}/history")).json()
        assert "DeliveryBounced" not in [e["type"] for e in history["events"]]
        assert history["events"][-1]["type"] == "ArticleAdded"  # the bounce: no auto reply after it

"""Faults on real processes (bench/faults.py runs the same scenarios bigger and prints the table)."""

from __future__ import annotations

import pytest

from bench.faults import (
    SCENARIOS,
    Outcome,
    cluster,
    poison_messages,
)

pytestmark = pytest.mark.timeout(900)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_every_accepted_mail_is_exactly_one_article_after_the_fault(scenario) -> None:  # type: ignore[no-untyped-def]
    with cluster() as c:
        outcome: Outcome = scenario(c, 150, 50)
        assert c.system.dead() == [], f"services died: {c.system.dead()}"
    print(f"{outcome.scenario}: {outcome.accepted} accepted, settled in {outcome.settled_s:.0f}s")
    assert outcome.accepted == 150
    assert outcome.missing == [], f"{len(outcome.missing)} accepted mails never became an article"
    assert outcome.duplicated == [], f"{len(outcome.duplicated)} mails became more than one article"
    if scenario is poison_messages:
        # 50 per topic, parked once by every consumer group of that topic (ticket.events has several)
        assert outcome.dead_lettered >= 150

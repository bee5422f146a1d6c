"""Router figures: spam quality on a held-out third of the corpus (threshold chosen by
cross-validation on the rest), queue-classification accuracy on topic labels made from the
mailing lists, the pure decision rate, and decisions/s through the running service
(MailReceived on the topic → TicketRouted on the topic).

Runs against DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS when set, else starts a throwaway
PostgreSQL cluster and the local broker (``bench.infra``). Prints figures; asserts nothing.

    python -m bench.router [--mails 2000] [--corpus ../shared/corpus] [--test-corpus DIR] [--quality-only]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from statistics import mean, pstdev

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.infra import Infra, local_infra
from services.ingest.domain import parse_mail
from services.router.app import create_app
from services.router.classifier import Classifier
from services.router.corpus import corpus_files
from services.router.domain import Filter, RouterConfig, SnapshotIndex, SystemAddress, route
from services.router.handlers import RouterHandlers
from services.router.settings import RouterSettings
from services.router.state import RouterState
from services.router.train import seed
from shared.bus import ensure_topics, make_producer
from shared.db import create_pool, ensure_database
from shared.envelope import Envelope, make_envelope
from shared.events import TOPIC_MAIL_RECEIVED, TOPIC_TICKET_ROUTED, MailReceived, ParsedMail
from shared.service import Service

DEFAULT_CORPUS = Path(os.environ.get("FIRSTLINE_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus")
DOMAIN = "firstline.example"
ADDRESSES = (
    SystemAddress(f"info@{DOMAIN}", "Info-en", {"de": "Info-de"}),
    SystemAddress(f"info-de@{DOMAIN}", "Info-de"),
    SystemAddress(f"permissions@{DOMAIN}", "Permissions"),
    SystemAddress(f"press@{DOMAIN}", "Press"),
)
FILTERS = (
    Filter("spam flag", {"X-Spam-Flag": "^yes"}, {"mark_spam": True, "stop": True}, position=1),
    Filter("press", {"Subject": "interview|press release"}, {"set_queue": "Press"}, position=2),
    Filter("lists", {"List-Id": "."}, {"set_priority": 2}, position=3),
)


def load_corpus(corpus: Path) -> dict[str, list[tuple[str, ParsedMail]]]:
    """(file name, mail) per folder, parsed by ingest's parser: what the router sees in production."""
    return {
        label: [(p.name, parse_mail(p.read_bytes())) for p in corpus_files(corpus / label)] for label in ("spam", "ham")
    }


# --------------------------------------------------------------------------- spam quality
#
# Held-out split: a file is held out when sha256("heldout:" + file name) mod 3 == 0 (about a
# third), fixed and independent of content. The held-out part is never used for training or for
# choosing the threshold. The threshold is chosen by K-fold cross-validation inside the training
# part (fold = sha256("fold:" + name) mod K): among the out-of-fold P(Junk) values, the one that
# maximises the smaller of the two relative margins to the targets,
#   min((recall - 0.95) / 0.05, (0.01 - ham_in_junk) / 0.01),
# i.e. it sits as far inside "recall ≥ 95 % and ham in Junk ≤ 1 %" as the data allows.

Named = list[tuple[str, ParsedMail]]
TARGET_RECALL, TARGET_HAM = 0.95, 0.01
FOLDS = 5


def _bucket(name: str, salt: str, n: int) -> int:
    return int(hashlib.sha256(f"{salt}:{name}".encode()).hexdigest()[:8], 16) % n


def split_heldout(mails: dict[str, Named]) -> tuple[dict[str, Named], dict[str, Named]]:
    """(training, held-out) parts of each folder."""
    train = {lb: [(n, m) for n, m in v if _bucket(n, "heldout", 3) != 0] for lb, v in mails.items()}
    held = {lb: [(n, m) for n, m in v if _bucket(n, "heldout", 3) == 0] for lb, v in mails.items()}
    return train, held


def train_spam_model(mails: dict[str, Named]) -> Classifier:
    model = Classifier()
    for label, queue in (("spam", "Junk"), ("ham", "Raw")):
        for _, mail in mails[label]:
            model.train(mail, queue)
    return model


def _scores(model: Classifier, mails: Named) -> list[float]:
    return [model.spam_probability(m) or 0.0 for _, m in mails]


def _rates(spam: list[float], ham: list[float], threshold: float) -> tuple[float, float]:
    return sum(p >= threshold for p in spam) / len(spam), sum(p >= threshold for p in ham) / len(ham)


def _margin(recall: float, ham: float) -> float:
    return min((recall - TARGET_RECALL) / (1 - TARGET_RECALL), (TARGET_HAM - ham) / TARGET_HAM)


def choose_threshold(
    train: dict[str, Named], k: int = FOLDS
) -> tuple[float, list[tuple[float, float]], tuple[float, float]]:
    """(threshold, per-fold (recall, ham in Junk), pooled out-of-fold (recall, ham)) from K-fold CV."""
    folds: list[tuple[list[float], list[float]]] = []
    for fold in range(k):
        inner = {lb: [(n, m) for n, m in v if _bucket(n, "fold", k) != fold] for lb, v in train.items()}
        outer = {lb: [(n, m) for n, m in v if _bucket(n, "fold", k) == fold] for lb, v in train.items()}
        model = train_spam_model(inner)
        folds.append((_scores(model, outer["spam"]), _scores(model, outer["ham"])))
    spam = [p for s, _ in folds for p in s]
    ham = [p for _, h in folds for p in h]
    candidates = sorted({p for p in spam + ham if p > 0.0})
    best = max(candidates, key=lambda t: _margin(*_rates(spam, ham, t)))
    return best, [_rates(s, h, best) for s, h in folds], _rates(spam, ham, best)


def spam_quality(mails: dict[str, Named], test: dict[str, Named] | None = None) -> tuple[Classifier, float]:
    """Choose the threshold by CV on the training part, then report on the held-out part (or on
    ``test``, another corpus, training on all of ``mails``)."""
    train, held = (mails, test) if test is not None else split_heldout(mails)
    threshold, per_fold, pooled = choose_threshold(train)
    recalls, hams = [r for r, _ in per_fold], [h for _, h in per_fold]
    sizes = f"{len(train['spam'])} spam, {len(train['ham'])} ham"
    print(f"spam threshold chosen by {FOLDS}-fold CV on the training part ({sizes}):")
    print(f"  P(Junk) ≥ {threshold:.4g}, the value maximising min((recall-0.95)/0.05, (0.01-ham)/0.01) out of fold")
    print(
        f"  per fold: recall {' '.join(f'{r:.4f}' for r in recalls)}  "
        f"(mean {mean(recalls):.4f} ± {pstdev(recalls):.4f})"
    )
    print(f"            ham in Junk {' '.join(f'{h:.4f}' for h in hams)}  (mean {mean(hams):.4f} ± {pstdev(hams):.4f})")
    print(f"  pooled out of fold: recall {pooled[0]:.4f}, ham in Junk {pooled[1]:.4f}")
    print(f"  (default RouterConfig.spam_threshold is {RouterConfig().spam_threshold:g})")
    model = train_spam_model(train)
    spam, ham = _scores(model, held["spam"]), _scores(model, held["ham"])
    what = "other corpus" if test is not None else "held-out third"
    for label, t in (("chosen", threshold), ("default", RouterConfig().spam_threshold)):
        recall, ham_rate = _rates(spam, ham, t)
        print(
            f"{what} ({len(spam)} spam, {len(ham)} ham), {label} threshold {t:.4g}, classifier only: "
            f"recall {recall:.4f}   ham in Junk {ham_rate:.4f}"
        )
    config = RouterConfig(spam_threshold=threshold)
    junk = {lb: sum(route(m, n, [], config, SnapshotIndex(), model).spam for n, m in held[lb]) for lb in held}
    print(
        f"{what}, full route() (classifier + spam headers, threshold {threshold:.4g}): "
        f"recall {junk['spam'] / len(held['spam']):.4f}   ham in Junk {junk['ham'] / len(held['ham']):.4f}"
    )
    return model, threshold


# --------------------------------------------------------------------------- queue accuracy
#
# Labels: the ham folder's mailing lists, grouped into topic queues by the List-Id (or
# Mailing-List) header as in TOPIC_QUEUES; other ham is left out. Everything that names the
# list is removed before the classifier sees a mail (list headers, To/Cc, Message-ID, the
# "[tag]" in the subject, body lines naming the list or "mailing list"/"listinfo"/"unsubscribe"),
# so the queue must be learned from the content. Training: the training part's labelled mails,
# each counted under its queue (what an agent's TicketMoved teaches), plus its spam as Junk;
# test: the held-out part, through route() with no system address (so the classifier decides).

TOPIC_QUEUES = (  # first match wins (the exmh lists live under spamassassin.taint.org)
    ("exmh", "Exmh"),
    ("r-help.stat.math.ethz.ch", "Statistics"),
    ("samba", "Samba"),
    ("perl", "Perl"),
    ("rpm-zzzlist", "RPM"),
    ("spamassassin", "Spam-filters"),
    ("razor", "Spam-filters"),
    ("spambayes", "Spam-filters"),
    ("linux.ie", "Linux-IE"),
    ("debian", "Debian"),
    ("fork.xent.com", "FoRK"),
)
_LIST_HEADERS = ("list-id", "mailing-list", "x-mailing-list")
_KEEP_HEADERS = ("content-type", "x-mailer", "user-agent")
_LIST_LINE = re.compile(r"mailing list|listinfo|unsubscribe|list-?id|@lists?\.|^_{5,}", re.I)
_SUBJECT_TAG = re.compile(r"^\s*(?:(?:re|aw|fwd?):\s*)*\[[^\]]{1,40}\]\s*", re.I)


def topic_label(mail: ParsedMail) -> str | None:
    list_id = " ".join(mail.headers.get(h, "") for h in _LIST_HEADERS).lower()
    return next((queue for key, queue in TOPIC_QUEUES if key in list_id), None) if list_id.strip() else None


def without_list_traces(mail: ParsedMail, label: str) -> ParsedMail:
    names = {key.split(".")[0] for key, queue in TOPIC_QUEUES if queue == label} | {label.lower()}
    lines = [
        line
        for line in mail.body_text.splitlines()
        if not _LIST_LINE.search(line) and not any(n in line.lower() for n in names)
    ]
    return mail.model_copy(
        update={
            "headers": {k: v for k, v in mail.headers.items() if k in _KEEP_HEADERS},
            "to": [],
            "cc": [],
            "message_id": None,
            "subject": _SUBJECT_TAG.sub("", mail.subject),
            "body_text": "\n".join(lines),
            "body_html": None,
            "flags": mail.flags.model_copy(update={"mailing_list": False, "auto_submitted": False}),
        }
    )


def queue_accuracy(mails: dict[str, Named], threshold: float) -> None:
    train, held = split_heldout(mails)

    def labelled(part: dict[str, Named]) -> list[tuple[ParsedMail, str]]:
        found = [(m, topic_label(m)) for _, m in part["ham"]]
        return [(without_list_traces(m, lb), lb) for m, lb in found if lb is not None]

    training, test = labelled(train), labelled(held)
    model = Classifier()
    for mail, queue in training:
        model.train(mail, queue)
    for _, mail in train["spam"]:
        model.train(mail, "Junk")
    config = RouterConfig(spam_threshold=threshold)
    top1 = routed_right = confident = junked = 0
    for mail, queue in test:
        prediction = model.predict(mail)
        top1 += prediction is not None and prediction.label == queue
        decision = route(mail, "q", [], config, SnapshotIndex(), model)
        junked += decision.spam
        if decision.queue != config.default_queue and not decision.spam:
            confident += 1
            routed_right += decision.queue == queue
    n = len(test)
    queues = sorted({q for _, q in training})
    print(
        f"queue classification ({len(queues)} topic queues from List-Id, list traces removed; "
        f"{len(training)} training, {n} held-out mails):"
    )
    print(f"  classifier's best queue right: {top1 / n:.4f}")
    print(
        f"  route(): sent to a topic queue {confident / n:.4f} of mails (p ≥ {config.classifier_threshold}), "
        f"right in {routed_right / max(1, confident):.4f} of those; default queue {1 - (confident + junked) / n:.4f}, "
        f"Junk {junked / n:.4f}"
    )


def pure_rate(mails: list[ParsedMail], model: Classifier, n: int, threshold: float) -> None:
    config = RouterConfig(filters=FILTERS, system_addresses=ADDRESSES, spam_threshold=threshold)
    index = SnapshotIndex()
    for classifier, what in ((None, "no classifier"), (model, "trained classifier")):
        started = time.perf_counter()
        for i in range(n):
            route(mails[i % len(mails)], f"m{i}", [], config, index, classifier)
        rate = n / (time.perf_counter() - started)
        print(f"route(), pure decision, {what:18}: {rate:8.0f} mails/s")


async def handler_rate(dsn: str, mails: list[ParsedMail], model: Classifier, n: int) -> None:
    """The mail handler with its database effects, batches of 500 per transaction as the consumer
    takes them, without the broker."""
    settings = RouterSettings(database_url=dsn, tickets_url="", log_level="WARNING")
    await seed(dsn, model, reason="bench")
    pool = await create_pool(dsn, max_size=4)
    service = Service(settings)
    service.pool = pool  # the handler needs only the pool
    handlers = RouterHandlers(service, RouterState(settings), settings)
    envelopes = [_received(f"handler-{i}", mails[i % len(mails)]) for i in range(n)]
    await handlers.state.refresh(pool, force=True)
    started = time.perf_counter()
    for i in range(0, n, 500):
        async with pool.acquire() as conn, conn.transaction():
            for envelope in envelopes[i : i + 500]:
                await handlers.handle_mail(conn, envelope)
    rate = n / (time.perf_counter() - started)
    await pool.close()
    print(f"mail handler with PostgreSQL, 500 per transaction, no broker: {rate:8.0f} mails/s")


async def end_to_end(dsn: str, bootstrap: str, mails: list[ParsedMail], model: Classifier, n: int) -> None:
    settings = RouterSettings(
        database_url=dsn,
        kafka_bootstrap_servers=bootstrap,
        kafka_topic_prefix=f"b{uuid.uuid4().hex[:6]}.",
        tickets_url="",
        log_level="WARNING",
    )
    await seed(dsn, model, reason="bench")
    envelopes = [_received(f"bench-{i}", mails[i % len(mails)]) for i in range(n + 1)]
    app = create_app(settings)
    async with app.router.lifespan_context(app), _routed_counter(settings) as routed:
        await _send(settings, envelopes[:1])  # warm up: the consumer group has joined once this is routed
        await routed(1, timeout=60)
        started = time.perf_counter()
        await _send(settings, envelopes[1:])
        await routed(n + 1, timeout=600)
        elapsed = time.perf_counter() - started
    print(f"consumer end to end, {n} mails (MailReceived → TicketRouted on the topic): {n / elapsed:8.0f} mails/s")


def _received(mail_id: str, mail: ParsedMail) -> Envelope:
    event = MailReceived(mail_id=mail_id, sha256="0" * 64, size=len(mail.body_text), envelope_to=[], mail=mail)
    return make_envelope(event, stream_id=mail_id, actor="system:bench")


async def _send(settings: RouterSettings, envelopes: list[Envelope]) -> None:
    topic = settings.topic(TOPIC_MAIL_RECEIVED)
    await ensure_topics(settings, [topic])
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=e.to_json(), key=e.stream_id.encode()) for e in envelopes]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@asynccontextmanager
async def _routed_counter(settings: RouterSettings) -> AsyncIterator:
    """``await routed(k)`` returns once ``k`` TicketRouted records are on the topic."""
    topic = settings.topic(TOPIC_TICKET_ROUTED)
    await ensure_topics(settings, [topic])
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(settings.kafka_topic_partitions)])
    await consumer.seek_to_beginning()
    seen = 0

    async def routed(k: int, timeout: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while seen < k:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {seen} of {k} decisions after {timeout}s")
            seen += sum(len(r) for r in (await consumer.getmany(timeout_ms=200)).values())

    try:
        yield routed
    finally:
        await consumer.stop()


async def main(mails_n: int, corpus: Path, test_corpus: Path | None = None, quality_only: bool = False) -> None:
    mails = load_corpus(corpus)
    model, threshold = spam_quality(mails, load_corpus(test_corpus) if test_corpus else None)
    queue_accuracy(mails, threshold)
    everything = [m for _, m in mails["spam"] + mails["ham"]]
    pure_rate(everything, model, max(mails_n, 3000), threshold)
    if quality_only:
        return
    with local_infra() as infra:
        async with _database(infra) as dsn:
            await handler_rate(dsn, everything, model, mails_n)
        async with _database(infra) as dsn:
            await end_to_end(dsn, infra.bootstrap, everything, model, mails_n)


@asynccontextmanager
async def _database(infra: Infra) -> AsyncIterator[str]:
    """A fresh database for one figure, dropped afterwards."""
    dsn = infra.database("bench_router")
    await ensure_database(dsn)
    try:
        yield dsn
    finally:
        admin = await asyncpg.connect(f"{infra.pg_base}/postgres")
        try:
            await admin.execute(f'drop database if exists "{dsn.rsplit("/", 1)[1]}" with (force)')
        finally:
            await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--test-corpus", type=Path, default=None, help="train on all of --corpus, test on this one")
    parser.add_argument("--quality-only", action="store_true", help="skip the PostgreSQL/broker figures")
    args = parser.parse_args()
    asyncio.run(main(args.mails, args.corpus, args.test_corpus, args.quality_only))

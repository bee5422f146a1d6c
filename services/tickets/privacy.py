"""Crypto-shredding: a customer's personal data in ticket events is encrypted under their key.

Every ticket has a data subject (``customer_keys``, linked by ``ticket_keys``): the customer
of its ``TicketCreated`` (found again by the digest of their address, so all their tickets
share one key). Before tickets appends an event, the values of :data:`PERSONAL_FIELDS` are
replaced by ``{"enc": "v1", "kid": <subject>, "ct": base64(nonce + AES-256-GCM ciphertext)}``
(the associated data binds a value to its event id and field name). The hash chain is computed
over what is stored, so erasing a customer (destroying the key) leaves every event and every
link exactly as written: ``verify`` still passes, and the text is unreadable wherever the
events went, backups and replays included. Reading (commands, projections, history, rebuild)
decrypts; a value whose key is gone reads as :data:`ERASED`.

What is and is not covered (see the README): the read models hold plaintext copies for search
and zoom; erasure re-projects the customer's tickets and rewrites their outbox rows. Events on
Kafka are published in plaintext for router and notify, so ``ticket.events`` needs a retention
shorter than the erasure deadline: the event store is the log of record.

Concurrency: a command takes ``for share`` on its ticket's subject rows before it reads any
personal data (:meth:`Vault.lock`), and erasure updates those rows first; so a command either
finished before the erasure (which then re-projects its result) or reads the keys as erased.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from email.utils import parseaddr
from typing import Any

import asyncpg
import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.tickets import store
from shared.envelope import Envelope, new_id

ENC_VERSION = "v1"
ERASED = "[erased]"
_NONCE_BYTES = 12

# Event type → JSON field → what the field reads as once its key is erased.
PERSONAL_FIELDS: dict[str, dict[str, Any]] = {
    "TicketCreated": {"title": ERASED, "customer_email": ERASED},
    "TitleChanged": {"title": ERASED},
    "ArticleAdded": {
        "from": ERASED,
        "to": [ERASED],
        "cc": [ERASED],
        "reply_to": [ERASED],
        "subject": ERASED,
        "body": ERASED,
        "body_html": ERASED,
    },
    "NoteAdded": {"subject": ERASED, "body": ERASED},
    "PhoneArticleAdded": {"subject": ERASED, "body": ERASED},
    "AnswerSent": {
        "to": [ERASED],
        "cc": [ERASED],
        "subject": ERASED,
        "body": ERASED,
        "customer_name": ERASED,
        "title": ERASED,
    },
    "AutoReplyRequested": {"to": ERASED, "subject": ERASED, "customer_name": ERASED, "title": ERASED},
    "AutoReplySent": {"to": ERASED},
    "AutoReplySuppressed": {"to": ERASED},
}

Keys = Mapping[str, bytes | None]


# --------------------------------------------------------------------------- pure


def email_digest(email: str) -> str:
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def new_kid() -> str:
    return f"cus_{new_id()}"


def is_sealed(value: Any) -> bool:
    return type(value) is dict and value.get("enc") == ENC_VERSION


def has_personal_data(envelope: Envelope) -> bool:
    return envelope.type in PERSONAL_FIELDS


def _aad(event_id: str, field: str) -> bytes:
    return f"{event_id}/{field}".encode()


def encrypt(envelope: Envelope, kid: str, key: bytes) -> Envelope:
    """The envelope with its personal values sealed under ``key``; empty values stay as they are."""
    fields = PERSONAL_FIELDS.get(envelope.type)
    if not fields:
        return envelope
    aead, data = AESGCM(key), dict(envelope.data)
    for name in fields:
        value = data.get(name)
        if value is None or value == "" or value == [] or is_sealed(value):
            continue
        nonce = os.urandom(_NONCE_BYTES)
        sealed = aead.encrypt(nonce, orjson.dumps(value), _aad(envelope.event_id, name))
        data[name] = {"enc": ENC_VERSION, "kid": kid, "ct": base64.b64encode(nonce + sealed).decode()}
    return envelope.model_copy(update={"data": data})


def kids_of(envelopes: Iterable[Envelope]) -> set[str]:
    return {v["kid"] for e in envelopes for v in e.data.values() if is_sealed(v)}


def decrypt(envelope: Envelope, keys: Keys, ciphers: dict[bytes, AESGCM] | None = None) -> Envelope:
    """The envelope as written, or with :data:`ERASED` where its subject's key is gone."""
    sealed = [(name, value) for name, value in envelope.data.items() if is_sealed(value)]
    if not sealed:
        return envelope
    ciphers = {} if ciphers is None else ciphers
    data = dict(envelope.data)
    for name, value in sealed:
        data[name] = _open_value(envelope, name, value, keys.get(value["kid"]), ciphers)
    return envelope.model_copy(update={"data": data})


def _open_value(envelope: Envelope, name: str, value: dict[str, Any], key: bytes | None, ciphers: dict) -> Any:
    erased = PERSONAL_FIELDS.get(envelope.type, {}).get(name, ERASED)
    if key is None:
        return erased
    aead = ciphers.get(key) or ciphers.setdefault(key, AESGCM(key))
    raw = base64.b64decode(value["ct"])
    try:
        plain = aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _aad(envelope.event_id, name))
    except InvalidTag:  # not this key's (or altered): as unreadable as erased; verify names alteration
        return erased
    return orjson.loads(plain)


def decrypt_all(envelopes: Sequence[Envelope], keys: Keys) -> list[Envelope]:
    ciphers: dict[bytes, AESGCM] = {}
    return [decrypt(e, keys, ciphers) for e in envelopes]


def subject_email(envelopes: Sequence[Envelope]) -> str | None:
    """Whose data these events carry: the new ticket's customer, else the sender of a mail."""
    for e in envelopes:
        if e.type == "TicketCreated":
            email = e.data.get("customer_email")
            return email if isinstance(email, str) and "@" in email else None  # not "[erased]" (a split)
    for e in envelopes:
        sender = e.data.get("from") if e.type == "ArticleAdded" else None
        if isinstance(sender, str) and "@" in sender:
            return parseaddr(sender)[1] or None
    return None


# --------------------------------------------------------------------------- with the database


class Vault:
    """Encrypts events before they are appended and decrypts them when read."""

    async def lock(self, conn: asyncpg.Connection, ticket_id: str) -> dict[str, bytes | None]:
        """The keys of the ticket's subjects, share-locked for the caller's transaction."""
        return await store.ticket_subject_keys(conn, ticket_id, lock=conn.is_in_transaction())

    async def seal(self, conn: asyncpg.Connection, ticket_id: str, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """``envelopes`` as they are to be stored: personal values encrypted."""
        if not any(has_personal_data(e) for e in envelopes):
            return list(envelopes)
        kid, key = await self._subject(conn, ticket_id, envelopes)
        return [encrypt(e, kid, key) for e in envelopes]

    async def _subject(
        self, conn: asyncpg.Connection, ticket_id: str, envelopes: Sequence[Envelope]
    ) -> tuple[str, bytes]:
        """The ticket's current subject; a new ticket's is its customer's (shared by all their
        tickets); a ticket whose subject was erased gets a new one for what comes next."""
        is_new = any(e.type == "TicketCreated" for e in envelopes)
        current = None if is_new else await store.current_subject(conn, ticket_id)
        if current is not None:
            return current
        email = subject_email(envelopes)
        digest = email_digest(email) if email else None
        kid, key = await store.subject_for(conn, digest, new_kid(), new_key())
        await store.link_subject(conn, ticket_id, kid)
        return kid, key

    async def open(self, db: store.Db, envelopes: Sequence[Envelope]) -> list[Envelope]:
        """Decrypt what was read from the store (one key query, only if anything is sealed)."""
        kids = kids_of(envelopes)
        if not kids:
            return list(envelopes)
        return decrypt_all(envelopes, await store.subject_keys(db, sorted(kids)))

"""Audit from the command line: verify every hash chain, export and check signed head hashes.

    python -m services.tickets.audit verify                  # OK, or the first broken link (exit 1)
    python -m services.tickets.audit heads                   # every stream's head, unsigned (JSON)
    python -m services.tickets.audit generate-key            # a new Ed25519 signing key
    AUDIT_SIGNING_KEY=... python -m services.tickets.audit export-heads heads.json
    python -m services.tickets.audit check-heads heads.json [--public-key HEX]

``export-heads`` writes every stream's (stream id, version, head hash), a root digest over them
all, and an Ed25519 signature of that digest made with ``AUDIT_SIGNING_KEY`` (the 32-byte seed,
hex). An auditor keeps the file (or just its digest and the public key). ``check-heads`` later
proves the current log still extends every exported head: the signature holds (against
``--public-key``, else ``AUDIT_PUBLIC_KEY``, else the key named in the file), each exported
head hash is still the hash of its stream at that version, and every chain verifies, so no
event at or before an exported head was rewritten. Streams and events added since are fine.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from services.tickets import queries
from services.tickets.settings import TicketsSettings
from shared.db import create_pool
from shared.eventstore import EventStore

FORMAT = "firstline-heads/1"
ALGORITHM = "ed25519"
Heads = Mapping[str, tuple[int, str]]


# --------------------------------------------------------------------------- pure


def root_digest(heads: Heads) -> str:
    """sha256 over "stream\\tversion\\thash\\n" for every stream, in stream order."""
    lines = "".join(f"{stream}\t{version}\t{digest}\n" for stream, (version, digest) in sorted(heads.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def _message(digest: str, taken_at: str) -> bytes:
    return f"{FORMAT}\n{taken_at}\n{digest}".encode()


def signing_key(seed_hex: str) -> Ed25519PrivateKey:
    seed = bytes.fromhex(seed_hex.strip())
    if len(seed) != 32:
        raise ValueError("AUDIT_SIGNING_KEY must be 32 bytes, hex (see: audit generate-key)")
    return Ed25519PrivateKey.from_private_bytes(seed)


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def signed_heads(heads: Heads, key: Ed25519PrivateKey, taken_at: datetime) -> dict[str, Any]:
    digest, when = root_digest(heads), taken_at.isoformat()
    return {
        "format": FORMAT,
        "taken_at": when,
        "streams": [{"stream_id": s, "version": v, "hash": h} for s, (v, h) in sorted(heads.items())],
        "digest": digest,
        "algorithm": ALGORITHM,
        "public_key": public_hex(key),
        "signature": key.sign(_message(digest, when)).hex(),
    }


def heads_of(document: Mapping[str, Any]) -> dict[str, tuple[int, str]]:
    return {s["stream_id"]: (int(s["version"]), str(s["hash"])) for s in document["streams"]}


def signature_problem(document: Mapping[str, Any], public_key_hex: str | None) -> str | None:
    """None when the file's digest matches its streams and is signed by the key; else why not."""
    if document.get("format") != FORMAT or document.get("algorithm") != ALGORITHM:
        return f"not a {FORMAT} file signed with {ALGORITHM}"
    if root_digest(heads_of(document)) != document["digest"]:
        return "the digest does not match the streams listed in the file"
    key_hex = public_key_hex or document["public_key"]
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes.fromhex(key_hex))
        key.verify(bytes.fromhex(document["signature"]), _message(document["digest"], document["taken_at"]))
    except (InvalidSignature, ValueError):
        return "the signature does not hold for that public key"
    return None


@dataclass(frozen=True)
class HeadMismatch:
    stream_id: str
    version: int
    exported_hash: str
    current_hash: str | None

    @property
    def reason(self) -> str:
        if self.current_hash is None:
            return f"stream {self.stream_id} has no event at version {self.version} any more"
        return f"stream {self.stream_id} at version {self.version} has hash {self.current_hash}, not the exported one"


def head_mismatches(exported: Heads, current: Mapping[tuple[str, int], str]) -> list[HeadMismatch]:
    """Exported heads whose stream no longer has that hash at that version."""
    return [
        HeadMismatch(stream, version, digest, current.get((stream, version)))
        for stream, (version, digest) in sorted(exported.items())
        if current.get((stream, version)) != digest
    ]


# --------------------------------------------------------------------------- with the database


async def hashes_at(pool: asyncpg.Pool, heads: Heads) -> dict[tuple[str, int], str]:
    """The current hash of each (stream, version) named in ``heads``."""
    streams = sorted(heads)
    rows = await pool.fetch(
        "select e.stream_id, e.stream_version, e.hash from unnest($1::text[], $2::int[]) as h(stream_id, version)"
        " join events e on e.stream_id = h.stream_id and e.stream_version = h.version",
        streams,
        [heads[s][0] for s in streams],
    )
    return {(r["stream_id"], r["stream_version"]): r["hash"] for r in rows}


async def check_heads(pool: asyncpg.Pool, document: Mapping[str, Any], public_key: str | None) -> dict[str, Any]:
    """The whole proof: signature, every exported head still in place, every chain intact."""
    problem = signature_problem(document, public_key)
    exported = heads_of(document)
    mismatches = head_mismatches(exported, await hashes_at(pool, exported))
    verified = await queries.verify(EventStore(pool))
    first = mismatches[0] if mismatches else None
    return {
        "ok": problem is None and not mismatches and verified["ok"],
        "signature": problem or "ok",
        "streams_exported": len(exported),
        "heads_changed": len(mismatches),
        "first_changed": None if first is None else {"stream_id": first.stream_id, "reason": first.reason},
        "verify": verified,
    }


# --------------------------------------------------------------------------- the command line


def _print(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _describe_broken(result: Mapping[str, Any]) -> str:
    b = result["broken"]
    return f"BROKEN: stream {b['stream_id']} version {b['stream_version']} (event {b['event_id']}): {b['reason']}"


async def _verify(pool: asyncpg.Pool, args: argparse.Namespace) -> int:
    result = await queries.verify(EventStore(pool))
    print(f"OK: {result['streams_checked']} streams verified" if result["ok"] else _describe_broken(result))
    return 0 if result["ok"] else 1


async def _heads(pool: asyncpg.Pool, args: argparse.Namespace) -> int:
    _print(await queries.head_hashes(EventStore(pool)))
    return 0


async def _export_heads(pool: asyncpg.Pool, args: argparse.Namespace) -> int:
    seed = os.environ.get("AUDIT_SIGNING_KEY")
    if not seed:
        print("AUDIT_SIGNING_KEY is not set (see: audit generate-key)", file=sys.stderr)
        return 2
    document = signed_heads(await EventStore(pool).head_hashes(), signing_key(seed), datetime.now(UTC))
    Path(args.file).write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"{len(document['streams'])} stream heads written to {args.file}; digest {document['digest']}")
    return 0


async def _check_heads(pool: asyncpg.Pool, args: argparse.Namespace) -> int:
    document = orjson.loads(Path(args.file).read_bytes())
    public_key = args.public_key or os.environ.get("AUDIT_PUBLIC_KEY")
    if public_key is None and os.environ.get("AUDIT_SIGNING_KEY"):
        public_key = public_hex(signing_key(os.environ["AUDIT_SIGNING_KEY"]))
    result = await check_heads(pool, document, public_key)
    if result["ok"]:
        print(f"OK: the log still extends all {result['streams_exported']} exported heads")
    elif result["signature"] != "ok":
        print(f"BAD SIGNATURE: {result['signature']}")
    elif result["first_changed"]:
        print(f"REWRITTEN: {result['first_changed']['reason']} ({result['heads_changed']} heads changed)")
    else:
        print(_describe_broken(result["verify"]))
    return 0 if result["ok"] else 1


_COMMANDS = {"verify": _verify, "heads": _heads, "export-heads": _export_heads, "check-heads": _check_heads}


def _generate_key() -> int:
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes_raw().hex()
    print(f"AUDIT_SIGNING_KEY={seed}\nAUDIT_PUBLIC_KEY={public_hex(key)}")
    return 0


async def _main(args: argparse.Namespace) -> int:
    pool = await create_pool(args.database_url or TicketsSettings().database_url, max_size=2)
    try:
        return await _COMMANDS[args.command](pool, args)
    finally:
        await pool.close()


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: DATABASE_URL")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("verify", help="check every stream's hash chain")
    commands.add_parser("heads", help="print every stream's head (unsigned)")
    commands.add_parser("generate-key", help="print a new Ed25519 key pair for AUDIT_SIGNING_KEY")
    export = commands.add_parser("export-heads", help="write the signed heads file")
    export.add_argument("file")
    check = commands.add_parser("check-heads", help="prove the log still extends a heads file")
    check.add_argument("file")
    check.add_argument("--public-key", help="hex Ed25519 public key to check the signature with")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    if args.command == "generate-key":
        raise SystemExit(_generate_key())
    raise SystemExit(asyncio.run(_main(args)))


if __name__ == "__main__":
    main()

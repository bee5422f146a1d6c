"""Control headers are honoured from trusted sources only (pure)."""

from __future__ import annotations

import pytest

from services.ingest.domain import parse_mail
from services.ingest.trust import apply_trust, client_trusted, control_view, parse_networks, token_trusted

HEADERS = {
    "x-firstline-queue": "Press",
    "x-firstline-priority": "5",
    "x-otrs-queue": "Junk",
    "x-otrs-customerno": "4711",
    "x-firstline-trusted-queue": "Forged",
    "x-firstline-loop": "yes",
    "x-spam-flag": "NO",
}


def test_untrusted_control_headers_are_stripped() -> None:
    assert control_view(HEADERS, None) == {"x-firstline-loop": "yes", "x-spam-flag": "NO"}


def test_trusted_control_headers_are_carried_under_trusted_keys() -> None:
    assert control_view(HEADERS, "smtp:10.0.0.5") == {
        "x-firstline-loop": "yes",
        "x-spam-flag": "NO",
        "x-firstline-trusted": "smtp:10.0.0.5",
        "x-firstline-trusted-queue": "Press",
        "x-firstline-trusted-priority": "5",
        "x-firstline-trusted-otrs-queue": "Junk",
        "x-firstline-trusted-otrs-customerno": "4711",
    }


def test_parsed_mail_is_left_alone_without_control_headers() -> None:
    parsed = parse_mail(b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n")
    assert apply_trust(parsed, None) is parsed


def test_apply_trust_on_a_parsed_mail() -> None:
    raw = b"From: a@example.org\r\nX-OTRS-Queue: Junk\r\nX-Firstline-Priority: 1\r\nSubject: hi\r\n\r\nhello\r\n"
    parsed = parse_mail(raw)
    assert parsed.headers["x-otrs-queue"] == "Junk"
    assert "x-otrs-queue" not in apply_trust(parsed, None).headers
    trusted = apply_trust(parsed, "imap:ops").headers
    assert trusted["x-firstline-trusted-otrs-queue"] == "Junk" and trusted["x-firstline-trusted-priority"] == "1"


def test_trusted_clients_by_cidr() -> None:
    networks = parse_networks(" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,")
    assert client_trusted("10.1.2.3", networks)
    assert client_trusted("192.0.2.7", networks)
    assert client_trusted("::ffff:10.0.0.1", networks)
    assert client_trusted("2001:db8::1", networks)
    assert not client_trusted("192.0.2.8", networks)
    assert not client_trusted("not an address", networks)
    assert not client_trusted("10.0.0.1", ())
    with pytest.raises(ValueError, match="'10.0.0.300'"):
        parse_networks("10.0.0.300")


def test_token() -> None:
    assert token_trusted("s3cret", "s3cret")
    assert not token_trusted("s3cret", None)
    assert not token_trusted(None, "s3cret")
    assert not token_trusted("", "")
    assert not token_trusted("wrong", "s3cret")

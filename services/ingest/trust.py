"""Control headers: honoured from trusted sources only, stripped as data from everyone else.

A mail may carry instructions for the helpdesk (OTRS's ``X-OTRS-Queue``, ``X-OTRS-Priority``
and the rest of the ``X-OTRS-*`` family, Firstline's own ``X-Firstline-Queue``,
``X-Firstline-Priority``, ...). Anyone on the internet can write such headers, so they count
only when the mail came from a source the operator marked trusted:

* a mailbox account with ``"trusted": true`` (``MAILBOXES``),
* an SMTP client whose address is in ``TRUSTED_CLIENTS`` (comma-separated CIDRs),
* ``POST /mail`` with the header ``X-Firstline-Trust-Token`` equal to ``TRUSTED_TOKEN``.

The contract with the router (``MailReceived.mail.headers``):

* every ``x-otrs-*`` and ``x-firstline-*`` key is removed, whatever the source (only
  ``x-firstline-loop``, our loop marker, stays: it is data, not an instruction);
* from a trusted source each control header is put back as ``x-firstline-trusted-<name>``:
  ``X-Firstline-Queue`` → ``x-firstline-trusted-queue``, ``X-OTRS-Queue`` →
  ``x-firstline-trusted-otrs-queue``; and ``x-firstline-trusted`` names the trusted source
  (``imap:<account>``, ``smtp:<client ip>``, ``http``).

So a router acts on ``x-firstline-trusted-*`` keys only, and can, because no mail can bring one in.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable, Mapping

from shared.events import LOOP_HEADER, ParsedMail

TRUSTED_PREFIX = "x-firstline-trusted"
TOKEN_HEADER = "x-firstline-trust-token"
_FIRSTLINE = "x-firstline-"
_OTRS = "x-otrs-"
_DATA_HEADERS = frozenset({LOOP_HEADER.lower()})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def is_control(name: str) -> bool:
    return name.startswith((_FIRSTLINE, _OTRS)) and name not in _DATA_HEADERS


def trusted_key(name: str) -> str | None:
    """The key a trusted control header is carried under; None for what is never honoured."""
    if name.startswith(TRUSTED_PREFIX):
        return None  # only ingest writes these
    if name.startswith(_OTRS):
        return f"{TRUSTED_PREFIX}-otrs-{name[len(_OTRS) :]}"
    return f"{TRUSTED_PREFIX}-{name[len(_FIRSTLINE) :]}"


def control_view(headers: Mapping[str, str], trusted_source: str | None) -> dict[str, str]:
    """``headers`` with control headers stripped, and re-added under trusted keys if trusted."""
    kept = {name: value for name, value in headers.items() if not is_control(name)}
    if trusted_source is None:
        return kept
    for name, value in headers.items():
        if is_control(name) and (key := trusted_key(name)) is not None:
            kept[key] = value
    kept[TRUSTED_PREFIX] = trusted_source
    return kept


def apply_trust(mail: ParsedMail, trusted_source: str | None) -> ParsedMail:
    """The mail as the router may see it: see the module docstring."""
    headers = control_view(mail.headers, trusted_source)
    if headers == mail.headers:
        return mail
    return mail.model_copy(update={"headers": headers})


def parse_networks(value: str) -> tuple[Network, ...]:
    """``10.0.0.0/8, 192.0.2.7`` → networks; raises ValueError naming a bad entry."""
    networks: list[Network] = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError as exc:
            raise ValueError(f"TRUSTED_CLIENTS: {part!r} is not an address or CIDR network") from exc
    return tuple(networks)


def client_trusted(client: str, networks: Iterable[Network]) -> bool:
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def token_trusted(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; no configured token means no HTTP client is trusted."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())

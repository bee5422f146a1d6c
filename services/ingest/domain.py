"""MIME parsing for ingest: raw RFC 5322 bytes in, one :class:`ParsedMail` out, never an exception.

The mail is parsed once here and the result travels in ``MailReceived``; consumers never re-parse.

Design choices:

* ``email`` with ``policy.compat32``: header values stay raw strings (no eager structured parsing,
  which is slow and raises on odd input), and every header is decoded here, defensively, one at a
  time (8-bit bytes, RFC 2047 words, addresses, dates, message ids).
* Part numbers follow IMAP (RFC 3501 section 6.4.5): the children of a multipart root are
  ``1``, ``2``...; a nested multipart's children ``2.1``, ``2.2``...; a single-part message is
  ``1``. ``message/*`` parts are leaves (a forwarded mail is one ``.eml`` attachment).
  :func:`extract_part` walks the same numbering to fetch one part's decoded bytes later.
* Everything is total: each header and each part is decoded in its own guard, problems end up in
  ``defects`` / ``charset_problems`` and ``flags.malformed`` is ``bool(defects)``. Output strings
  carry no NUL and no lone surrogate (Postgres ``jsonb`` and orjson reject both).
"""

from __future__ import annotations

import binascii
import codecs
import functools
import hashlib
import html as html_lib
import mimetypes
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy as email_policy
from email.generator import BytesGenerator, Generator
from email.message import Message
from email.parser import BytesParser
from email.utils import collapse_rfc2231_value, getaddresses, parsedate_to_datetime
from io import BytesIO, StringIO

import nh3

from services.ingest.language import detect_language
from shared.events import LOOP_HEADER, Address, Attachment, MailFlags, ParsedMail

__all__ = [
    "DEFAULT_OWN_DOMAINS",
    "MAX_MAIL_BYTES_DEFAULT",
    "decode_header_words",
    "detect_language",
    "extract_part",
    "html_to_text",
    "normalize_message_id",
    "parse_mail",
    "parse_message_ids",
    "sanitize_html",
]

MAX_MAIL_BYTES_DEFAULT = 25 * 1024 * 1024
DEFAULT_OWN_DOMAINS: frozenset[str] = frozenset({"firstline.example"})

MAX_BODY_CHARS = 1_000_000  # per body (text, html): keeps the event well under the broker's limits
MAX_PARTS = 1000
MAX_DEPTH = 40
MAX_ADDRESSES = 500
MAX_REFERENCES = 100
MAX_NOTES = 50
MAX_HEADER_CHARS = 1000
MAX_PREFIXED_HEADERS = 20
MAX_ID_CHARS = 998

_PARSER = BytesParser(policy=email_policy.compat32)
_LEADING_JUNK = re.compile(rb"\A(?:\xef\xbb\xbf)?(?:[ \t]*(?:\r\n|\r|\n))*(?=From |[!-9;-~]+:)")
_MIME_TYPES = mimetypes.MimeTypes()  # built-in table only: same extensions on every host

# --------------------------------------------------------------------------- small text helpers

_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
_LINE_BREAKS = re.compile(r"\r\n?")
_CRLF_BYTES = re.compile(rb"[\r\n]")


def _clean(text: str) -> str:
    """Drop NULs and replace lone surrogates: neither survives JSON encoding or Postgres."""
    if _BAD_CHARS.search(text) is None:
        return text
    return _BAD_CHARS.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)


def _to_bytes(text: str) -> bytes:
    """The original bytes of a string the parser decoded with ``surrogateescape``."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


def _collapse(text: str) -> str:
    return " ".join(text.split())


@dataclass
class _Notes:
    """Problems met while parsing, de-duplicated and capped so a hostile mail can't bloat the event."""

    defects: list[str] = field(default_factory=list)
    charset_problems: list[str] = field(default_factory=list)

    def defect(self, text: str) -> None:
        _append_capped(self.defects, text)

    def charset(self, text: str) -> None:
        _append_capped(self.charset_problems, text)


def _append_capped(items: list[str], text: str) -> None:
    text = _clean(text)[:300]
    if len(items) < MAX_NOTES and text not in items:
        items.append(text)


# --------------------------------------------------------------------------- charsets


def _latin1_fallback(err: UnicodeError) -> tuple[str, int]:
    """Error handler: bytes windows-1252 leaves undefined (0x81, 0x8D...) become Latin-1 characters."""
    if not isinstance(err, UnicodeDecodeError):
        raise err
    return err.object[err.start : err.end].decode("latin-1"), err.end


codecs.register_error("firstline.latin1", _latin1_fallback)

_ASCII_LABELS = frozenset({"us-ascii", "ascii", "us_ascii", "ansi_x3.4-1968", "iso646-us", "646"})
_UNKNOWN_LABELS = frozenset({"unknown-8bit", "x-unknown", "unknown", "default", "8bit", "x-user-defined"})
# Labels decoded with the superset real mailers actually use (as browsers do, WHATWG Encoding).
_CHARSET_ALIASES = {
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "l1": "cp1252",
    "iso-8859-9": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "cn-gb": "gb18030",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "big5": "big5hkscs",
    "iso-8859-8-i": "iso8859-8",
    "iso-8859-6-i": "iso8859-6",
}
# Tried, in order, when bytes are invalid in the declared charset (mislabelled mail is common).
_ALTERNATIVES = {
    "iso2022_jp": ("cp932", "euc_jp"),
    "euc_jp": ("cp932",),
    "cp932": ("euc_jp",),
}
# Text codecs Python knows that are no mail charset and can yield surprises (escapes, surrogates).
_REFUSED_CODECS = frozenset({"unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined"})
_PLAIN_ASCII_CODECS = frozenset({"ascii", "utf-8", "cp1252", "latin-1"})


_LABEL = re.compile(r"[A-Za-z0-9._:+-]+")


def _label(charset: str | None) -> str:
    """The charset token of a label, lower-cased; tolerates stray quotes and trailing junk."""
    match = _LABEL.search(charset or "")
    return match.group().lower() if match else ""


@functools.lru_cache(maxsize=256)
def _codec(label: str) -> str | None:
    """Python codec name for a MIME charset label, or None when unknown or not a text charset."""
    name = _CHARSET_ALIASES.get(label, label)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        if not name.startswith("x-"):
            return None
        return _codec(name[2:])  # x-mac-cyrillic and friends
    if not getattr(info, "_is_text_encoding", True) or info.name in _REFUSED_CODECS:
        return None
    return info.name


def _decode_unlabelled(data: bytes, declared: str, where: str, notes: _Notes) -> str:
    """No usable label: UTF-8 if valid (RFC 6532), else windows-1252, which never fails."""
    if data.isascii():
        return data.decode("ascii")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        label = f"declared {declared}" if declared else "no charset"
        notes.charset(f"{where}: 8-bit bytes with {label} are not UTF-8; decoded as windows-1252")
        return data.decode("cp1252", "firstline.latin1")


def _decode_bytes(data: bytes, charset: str | None, where: str, notes: _Notes) -> str:
    """Decode ``data`` labelled ``charset``; never raises, records each problem in ``notes``."""
    label = _label(charset)
    if not label or label in _ASCII_LABELS or label in _UNKNOWN_LABELS:
        return _clean(_decode_unlabelled(data, label, where, notes))
    codec = _codec(label)
    if codec is None:
        notes.charset(f"{where}: unknown charset {label!r}")
        return _clean(_decode_unlabelled(data, "", where, notes))
    if codec in _PLAIN_ASCII_CODECS and data.isascii():
        return _clean(data.decode("ascii"))
    try:
        return _clean(data.decode(codec))
    except Exception:  # UnicodeDecodeError, or a quirk of some stateful codec
        return _clean(_decode_mislabelled(data, codec, label, where, notes))


def _decode_mislabelled(data: bytes, codec: str, label: str, where: str, notes: _Notes) -> str:
    """Bytes invalid in their declared charset: try what such mail usually is, else replace."""
    # 7-bit data (ISO-2022-JP, UTF-7) is also "valid" UTF-8 or Shift_JIS: no alternative applies.
    alternatives = () if data.isascii() else ("utf-8", *_ALTERNATIVES.get(codec, ()))
    for alternative in alternatives:
        try:
            text = data.decode(alternative)
        except UnicodeDecodeError:
            continue
        notes.charset(f"{where}: bytes invalid in charset {label!r}; decoded as {alternative}")
        return text
    notes.charset(f"{where}: bytes invalid in charset {label!r}; replaced")
    try:
        return data.decode(codec, "replace")
    except Exception:
        return data.decode("utf-8", "replace")


# --------------------------------------------------------------------------- RFC 2047 words

_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([qQbB])\?([^?]*)\?=")
_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")


def _word_bytes(encoding: str, text: str) -> bytes | None:
    """Payload bytes of one encoded word; lenient about padding, None if undecodable."""
    if encoding in "qQ":
        return binascii.a2b_qp(text.encode("utf-8", "replace"), header=True)
    data = _NOT_BASE64.sub("", text)
    if len(data) % 4 == 1:
        data = data[:-1]
    try:
        return binascii.a2b_base64(data + "=" * (-len(data) % 4))
    except binascii.Error:
        return None


def decode_header_words(value: str) -> str:
    """RFC 2047 decoding of one header value (see :func:`_decode_words`)."""
    return _decode_words(value, "header", _Notes())


def _decode_words(value: str, where: str, notes: _Notes) -> str:
    """Decode RFC 2047 encoded words leniently, noting charset problems.

    Whitespace between adjacent encoded words is dropped, and adjacent words in one charset are
    joined before decoding, so a multibyte character split across two words survives. Undecodable
    words are kept verbatim.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending_charset, pending = "", bytearray()
    last_end, after_word = 0, False

    def flush() -> None:
        nonlocal pending_charset, pending
        if pending_charset:
            out.append(_decode_bytes(bytes(pending), pending_charset, where, notes))
        pending_charset, pending = "", bytearray()

    for match in _ENCODED_WORD.finditer(value):
        gap = value[last_end : match.start()]
        if gap and not (after_word and gap.isspace()):
            flush()
            out.append(gap)
        last_end = match.end()
        data = _word_bytes(match.group(2), match.group(3))
        if data is None:
            flush()
            out.append(match.group(0))
            after_word = False
            continue
        charset = _label(match.group(1))
        if charset != pending_charset:
            flush()
            pending_charset = charset
        pending += data
        after_word = True
    flush()
    out.append(value[last_end:])
    return _clean("".join(out))


# --------------------------------------------------------------------------- message ids

_BRACKETED = re.compile(r"<([^<>]*)>")


def _bare_ids(value: str) -> list[str]:
    """Ids found in a header value: ``<...>`` tokens, else whitespace tokens that contain ``@``."""
    found = [re.sub(r"\s+", "", inner) for inner in _BRACKETED.findall(value)]
    if not found:
        found = [token.strip("<>,;") for token in value.split() if "@" in token]
    return [f"<{token[:MAX_ID_CHARS]}>" for token in found if token]


def normalize_message_id(value: str | None) -> str | None:
    """The first message id in ``value`` in ``<local@domain>`` form, or None."""
    ids = _bare_ids(value or "")
    return _clean(ids[0]) if ids else None


def parse_message_ids(value: str | None) -> list[str]:
    """All ids of a References header, de-duplicated in order; capped to the root and the newest."""
    ids = list(dict.fromkeys(_clean(i) for i in _bare_ids(value or "")))
    if len(ids) > MAX_REFERENCES:
        ids = ids[:1] + ids[-(MAX_REFERENCES - 1) :]
    return ids


def _id_domain(message_id: str | None) -> str:
    if not message_id or "@" not in message_id:
        return ""
    return message_id.rsplit("@", 1)[1].rstrip(">").strip().lower()


def _in_domains(message_id: str | None, domains: Iterable[str]) -> bool:
    domain = _id_domain(message_id)
    return bool(domain) and any(domain == d or domain.endswith("." + d) for d in domains)


# --------------------------------------------------------------------------- headers


class _Headers:
    """The mail's raw headers by lower-cased name; every accessor is total."""

    def __init__(self, msg: Message, fallback_charset: str, notes: _Notes) -> None:
        self._values: dict[str, list[str]] = {}
        for name, value in msg.raw_items():
            self._values.setdefault(_clean(str(name)).strip().lower(), []).append(str(value))
        self._fallback = fallback_charset
        self._notes = notes

    def names(self) -> list[str]:
        return list(self._values)

    def count(self, name: str) -> int:
        return len(self._values.get(name, ()))

    def has(self, name: str) -> bool:
        return bool(self.text(name))

    def _unfold(self, name: str, value: str) -> str:
        data = _CRLF_BYTES.sub(b"", _to_bytes(value))
        if data.isascii():
            return _clean(data.decode("ascii")).strip()
        try:
            return _clean(data.decode("utf-8")).strip()
        except UnicodeDecodeError:
            where = f"header {name}"
            self._notes.charset(f"{where}: 8-bit bytes are not UTF-8; decoded as {self._fallback}")
            return _decode_bytes(data, self._fallback, where, self._notes).strip()

    def texts(self, name: str) -> list[str]:
        """Every value of ``name``: unfolded, 8-bit bytes decoded, encoded words left as they are."""
        return [self._unfold(name, value) for value in self._values.get(name, ())]

    def text(self, name: str) -> str:
        values = self._values.get(name)
        return self._unfold(name, values[0]) if values else ""

    def decoded(self, name: str) -> str:
        return _decode_words(self.text(name), f"header {name}", self._notes)

    def addresses(self, name: str) -> list[Address]:
        values = self.texts(name)
        try:
            pairs = getaddresses(values)
        except Exception:
            self._notes.defect(f"unparseable {name} header")
            return []
        found = [a for real, addr in pairs if (a := self._address(name, real, addr)) is not None]
        if values and not found and name == "from":
            self._notes.defect("unparseable from header")
        if len(found) > MAX_ADDRESSES:
            self._notes.defect(f"{name} header: {len(found)} addresses, kept {MAX_ADDRESSES}")
        return found[:MAX_ADDRESSES]

    def _address(self, name: str, real: str, addr: str) -> Address | None:
        email = _collapse(addr).strip("<>").lower()
        if not email:
            return None
        display = _collapse(_decode_words(real, f"header {name}", self._notes))
        return Address(name=display[:MAX_HEADER_CHARS], email=email[:MAX_ID_CHARS])


_KEPT_HEADERS = frozenset({
    "auto-submitted", "precedence", "x-loop", "list-id", "list-unsubscribe", "list-post", "mailing-list",
    "x-mailing-list", "x-auto-response-suppress", "x-autoreply", "x-autorespond", "x-failed-recipients",
    "return-path", "delivered-to", "x-original-to", "x-spam-flag", "x-spam-score", "x-spam-status",
    "content-type", "x-mailer", "user-agent", "x-priority", "importance", "priority", "x-spam-level",
})  # fmt: skip
_KEPT_PREFIXES = ("x-otrs-", "x-firstline-")


def _selected_headers(heads: _Headers) -> dict[str, str]:
    """The few raw header values filters and flags need, first occurrence of each."""
    out: dict[str, str] = {}
    prefixed = 0
    for name in heads.names():
        if name in _KEPT_HEADERS:
            out[name] = heads.text(name)[:MAX_HEADER_CHARS]
        elif name.startswith(_KEPT_PREFIXES) and prefixed < MAX_PREFIXED_HEADERS:
            out[name] = heads.text(name)[:MAX_HEADER_CHARS]
            prefixed += 1
    return out


def _parse_date(heads: _Headers, notes: _Notes) -> datetime | None:
    value = heads.text("date")
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except Exception:
        notes.defect("unparseable date header")
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- MIME structure


def _load(raw: bytes) -> Message:
    """Parse with compat32, after dropping a UTF-8 BOM or blank lines in front of the first header."""
    junk = _LEADING_JUNK.match(raw)
    return _PARSER.parsebytes(raw[junk.end() :] if junk and junk.end() else raw)


_CONTENT_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")


def _content_type(part: Message) -> str:
    """``type/subtype``, also from a value missing its ``;`` (``text/plain charset=us-ascii``)."""
    match = _CONTENT_TYPE.match(part.get_content_type())
    return match.group() if match else part.get_default_type()


def _is_container(part: Message) -> bool:
    return part.is_multipart() and _content_type(part).startswith("multipart/")


def _walk(msg: Message, notes: _Notes) -> list[tuple[str, Message]]:
    """Every node in document order with its IMAP part number ("" for a multipart root)."""
    nodes: list[tuple[str, Message]] = []
    stack: list[tuple[str, Message, int]] = [("" if _is_container(msg) else "1", msg, 0)]
    while stack and len(nodes) < MAX_PARTS:
        path, node, depth = stack.pop()
        nodes.append((path, node))
        if not _is_container(node):
            continue
        if depth >= MAX_DEPTH:
            notes.defect(f"multipart nesting deeper than {MAX_DEPTH}; inner parts ignored")
            continue
        children = [c for c in node.get_payload() if isinstance(c, Message)]
        for index in range(len(children), 0, -1):
            stack.append((f"{path}.{index}" if path else str(index), children[index - 1], depth + 1))
    if stack:
        notes.defect(f"more than {MAX_PARTS} MIME parts; the rest ignored")
    return nodes


def _node_at(msg: Message, path: str) -> Message | None:
    """The part ``path`` names, by the numbering of :func:`_walk`."""
    if not re.fullmatch(r"[1-9][0-9]{0,5}(?:\.[1-9][0-9]{0,5}){0,63}", path):
        return None
    if not _is_container(msg):
        return msg if path == "1" else None
    node = msg
    for index in (int(i) for i in path.split(".")):
        if not _is_container(node):
            return None
        children = [c for c in node.get_payload() if isinstance(c, Message)]
        if index > len(children):
            return None
        node = children[index - 1]
    return node


def _param(part: Message, name: str, header: str = "content-type") -> str:
    try:
        value = part.get_param(name, header=header)
    except Exception:
        return ""
    if not value:
        return ""
    return _clean(str(collapse_rfc2231_value(value))).strip()


def _disposition(part: Message) -> str:
    try:
        return (part.get_content_disposition() or "").strip().lower()
    except Exception:
        return ""


def _flatten(msg: Message) -> bytes:
    """The message as bytes, as close to the source as the generator gets.

    The bytes generator chokes on some broken parts (e.g. a multipart whose boundaries were never
    found: the stdlib re-decodes its text with U+FFFD); the text generator then does the job.
    """
    buffer = BytesIO()
    try:
        BytesGenerator(buffer, mangle_from_=False, maxheaderlen=0).flatten(msg, unixfrom=False)
        return buffer.getvalue()
    except Exception:
        text = StringIO()
        Generator(text, mangle_from_=False, maxheaderlen=0).flatten(msg, unixfrom=False)
        return text.getvalue().encode("utf-8", "surrogateescape")


def _embedded_bytes(part: Message) -> bytes:
    """Bytes of a ``message/*`` part: the attached message (or DSN blocks), transfer-decoded."""
    data = b"".join(_flatten(p) for p in part.get_payload() if isinstance(p, Message))
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    try:
        if encoding == "base64":
            return binascii.a2b_base64(data)
        if encoding == "quoted-printable":
            return binascii.a2b_qp(data)
    except binascii.Error:
        pass
    return data


def _leaf_bytes(part: Message) -> tuple[bytes, str | None]:
    """The decoded content of a leaf (transfer encoding undone, charset untouched), and the name of
    the error that left it empty, if any. ``extract_part`` relies on getting the very same bytes."""
    try:
        data = _embedded_bytes(part) if part.is_multipart() else part.get_payload(decode=True)
    except Exception as exc:
        return b"", type(exc).__name__
    return (data, None) if isinstance(data, bytes) else (b"", None)


# --------------------------------------------------------------------------- attachments

_UNSAFE_FILENAME_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_EXTENSIONS = {
    "message/rfc822": ".eml",
    "message/global": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "text/rfc822-headers": ".txt",
    "text/plain": ".txt",
    "text/html": ".html",
    "application/ms-tnef": ".dat",
    "image/jpeg": ".jpg",
}


def _extension(content_type: str) -> str:
    return _EXTENSIONS.get(content_type) or _MIME_TYPES.guess_extension(content_type) or ".bin"


def _sanitize_filename(name: str) -> str:
    """Last path segment, no control characters, at most 255 characters (extension kept)."""
    name = _UNSAFE_FILENAME_CHARS.sub("", name).replace("\\", "/").rsplit("/", 1)[-1].strip()
    if name in {".", ".."}:
        return ""
    if len(name) > 255:
        stem, dot, ext = name.rpartition(".")
        name = f"{stem[: 254 - len(ext)]}.{ext}" if dot and len(ext) < 20 else name[:255]
    return name


def _filename(part: Message, path: str, content_type: str, notes: _Notes) -> str:
    """RFC 2231 / RFC 2047 decoded filename, else ``attachment-<part>.<ext>``."""
    try:
        raw = part.get_filename()
    except Exception:
        raw = None
    name = ""
    if raw:
        text = _decode_bytes(_to_bytes(_collapse(str(raw))), "", f"part {path} filename", notes)
        name = _sanitize_filename(_decode_words(text, f"part {path} filename", notes))
    return name or f"attachment-{path.replace('.', '-')}{_extension(content_type)}"


def _content_id(part: Message) -> str | None:
    value = _clean(_collapse(str(part.get("content-id", "")))).strip().strip("<>").strip()
    return value[:MAX_ID_CHARS] or None


def _attachment(part: Message, path: str, content_type: str, data: bytes, notes: _Notes) -> Attachment:
    content_id = _content_id(part)
    disposition = _disposition(part)
    return Attachment(
        filename=_filename(part, path, content_type, notes),
        content_type=content_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        content_id=content_id,
        inline=disposition == "inline" or (not disposition and content_id is not None),
        part=path,
    )


# --------------------------------------------------------------------------- bodies

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9._:-]+)""", re.I)


def _body_kind(part: Message, content_type: str, is_root: bool) -> str | None:
    """'plain' or 'html' when the leaf is message text rather than an attached file.

    A named text part is a file, except as the whole mail (some mailers name every part). A
    multipart leaf is one whose boundaries could not be found: its raw text is the best body.
    """
    if content_type.startswith("multipart/"):
        return "plain"
    if content_type not in ("text/plain", "text/html") or _disposition(part) == "attachment":
        return None
    try:
        if not is_root and part.get_filename():
            return None
    except Exception:
        return None
    return "plain" if content_type == "text/plain" else "html"


def _part_text(part: Message, path: str, kind: str, data: bytes, notes: _Notes) -> str:
    charset = _param(part, "charset")
    if not charset and kind == "html":
        meta = _META_CHARSET.search(data[:4096])
        charset = meta.group(1).decode("ascii") if meta else ""
    return _LINE_BREAKS.sub("\n", _decode_bytes(data, charset, f"part {path}", notes))


_WHITESPACE = re.compile(r"\s+")
_BLOCK_TAG = re.compile(
    r"<(/?)(br|hr|p|div|tr|td|th|li|ul|ol|dl|dt|dd|h[1-6]|table|thead|tbody|tfoot|caption|blockquote|pre"
    r"|section|article|header|footer|address|center|form|fieldset)\b[^>]*>",
    re.I,
)
_PARAGRAPH_ENDS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "dl", "blockquote", "pre"})
# Block tags become private-use markers, turned into line breaks once the other tags are gone. (Kept
# as tags, table markup would make the HTML parser move the markers out of the table.)
_SOFT, _PARAGRAPH, _BR = "\ue000", "\ue001", "\ue002"
_MARKERS = re.compile("[\ue000-\ue002]")
_BREAK_RUN = re.compile("[ \t]*[\ue000-\ue002][\\s\ue000-\ue002]*")
_TEXT_CLEANER = nh3.Cleaner(
    tags=set(), attributes={}, clean_content_tags={"script", "style", "title", "noscript"}, link_rel=None
)


def _mark_block(match: re.Match[str]) -> str:
    closing, name = match.group(1), match.group(2).lower()
    if name in ("td", "th"):
        return " "
    if name == "br":
        return _BR
    if name == "hr" or (closing and name in _PARAGRAPH_ENDS):
        return _PARAGRAPH
    return _SOFT


def _line_break(match: re.Match[str]) -> str:
    """One newline between blocks; a blank line after a paragraph, a heading, a list or <br><br>."""
    run = match.group()
    return "\n\n" if _PARAGRAPH in run or run.count(_BR) > 1 else "\n"


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: tags, scripts and styles gone, block elements on their own lines."""
    flat = _WHITESPACE.sub(" ", _MARKERS.sub("", html))  # source line breaks mean nothing in HTML
    text = html_lib.unescape(_TEXT_CLEANER.clean(_BLOCK_TAG.sub(_mark_block, flat))).replace("\xa0", " ")
    lines = (" ".join(line.split()) for line in _BREAK_RUN.sub(_line_break, text).split("\n"))
    return _clean("\n".join(lines).strip())


_HTML_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "cite", "code", "col", "colgroup",
    "dd", "del", "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i",
    "img", "ins", "kbd", "li", "ol", "p", "pre", "q", "s", "small", "span", "strike", "strong",
    "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul",
}  # fmt: skip
_CELL_ATTRIBUTES = {"colspan", "rowspan", "align", "valign", "width", "height", "bgcolor"}
_HTML_ATTRIBUTES = {
    "*": {"align", "dir", "lang", "title", "style"},
    "a": {"href", "name"},
    "img": {"src", "alt", "width", "height"},
    "font": {"color", "face", "size"},
    "table": {"border", "cellpadding", "cellspacing", "width", "bgcolor"},
    "td": _CELL_ATTRIBUTES,
    "th": _CELL_ATTRIBUTES,
    "col": {"span", "width"},
    "ol": {"start", "type"},
}
_HTML_STYLES = {
    "color", "background-color", "font-weight", "font-style", "font-size", "font-family",
    "text-align", "text-decoration", "vertical-align", "white-space", "margin", "padding",
}  # fmt: skip
_HTML_CLEANER = nh3.Cleaner(
    tags=_HTML_TAGS,
    attributes=_HTML_ATTRIBUTES,
    url_schemes={"http", "https", "mailto", "cid"},
    filter_style_properties=_HTML_STYLES,
    clean_content_tags={"script", "style", "title"},
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)


def sanitize_html(html: str) -> str:
    """Conservative allow-list: formatting and links only; no scripts, handlers, forms, frames or CSS
    beyond a few harmless properties."""
    return _clean(_HTML_CLEANER.clean(html))


def _truncate(text: str, what: str, notes: _Notes) -> str:
    if len(text) <= MAX_BODY_CHARS:
        return text
    notes.defect(f"{what} truncated to {MAX_BODY_CHARS} characters")
    return text[:MAX_BODY_CHARS]


# --------------------------------------------------------------------------- flags

_NO_VALUES = frozenset({"", "no", "false", "0", "none"})
_AUTO_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
_AUTOREPLY_HEADERS = (
    "x-auto-response-suppress",
    "x-autoreply",
    "x-autorespond",
    "x-autoresponse",
    "x-autogenerated",
    "x-auto-reply",
    "x-autoreply-from",
    "x-mail-autoreply",
    "x-fc-machinegenerated",
)
_LIST_HEADERS = ("list-id", "list-unsubscribe", "list-post", "mailing-list", "x-mailing-list")
# Vendor autoreply markers that need a value: (header, substring of its lower-cased value).
_AUTOREPLY_VALUES = (("x-apple-action", "vacation"), ("x-post-messageclass", "autoresponder"))
_DAEMON_FROM = re.compile(
    r"\b(?:mailer-daemon|mailerdaemon|mail-daemon|postmaster)\b|mail delivery (?:sub)?system", re.I
)
_DSN_SUBJECT = re.compile(
    r"undeliver|returned mail|delivery (?:status )?notification|delivery (?:has )?fail|failure notice"
    r"|mail delivery (?:failed|system|subsystem)|could not be delivered|non[- ]?remis|unzustellbar"
    r"|nicht zugestellt|returned to sender|delivery problem|mail system error",
    re.I,
)
_DSN_BODY = re.compile(
    r"^(?:final-recipient|diagnostic-code|original-recipient|action: failed)"
    r"|permanent (?:error|failure)|could not be delivered|delivery to the following recipient"
    r"|undeliver|following address(?:es)? failed|unknown user|user unknown|mailbox unavailable",
    re.I | re.M,
)
_BODY_MESSAGE_ID = re.compile(rb"^[ \t>]*message-id:[ \t]*(<[^<>\r\n]+>)", re.I | re.M)
_ORIGINAL_TYPES = frozenset(
    {"message/rfc822", "message/global", "text/rfc822-headers", "message/rfc822-headers", "message/global-headers"}
)


def _first_token(value: str) -> str:
    return re.split(r"[\s;(]", value.strip().lower(), maxsplit=1)[0]


def _auto_submitted(heads: _Headers) -> bool:
    """RFC 3834 Auto-Submitted, Precedence bulk/junk/list and the common vendor autoreply headers."""
    if _first_token(heads.text("auto-submitted")) not in _NO_VALUES:
        return True
    if _first_token(heads.text("precedence")) in _AUTO_PRECEDENCE:
        return True
    if any(heads.text(name).strip().lower() not in _NO_VALUES for name in _AUTOREPLY_HEADERS):
        return True
    return any(marker in heads.text(name).lower() for name, marker in _AUTOREPLY_VALUES)


def _mailing_list(heads: _Headers) -> bool:
    return _first_token(heads.text("precedence")) == "list" or any(heads.has(n) for n in _LIST_HEADERS)


def _loop(heads: _Headers, message_id: str | None, in_reply_to: str | None, auto: bool, own: frozenset[str]) -> bool:
    """X-Loop, our own loop header, our own Message-ID coming back, or an automaton answering our mail.

    A human reply carries an In-Reply-To in our domain too, so that alone is no loop.
    """
    if heads.count("x-loop") or heads.count(LOOP_HEADER.lower()):
        return True
    return _in_domains(message_id, own) or (auto and _in_domains(in_reply_to, own))


def _is_bounce(heads: _Headers, dsn: bool, subject: str, body_text: str) -> bool:
    """RFC 3464 report, Exim's X-Failed-Recipients, or a daemon / null sender saying "undeliverable".

    The daemon test reads the raw From: ``MAILER-DAEMON <>`` has no address to parse.
    """
    if dsn or heads.has("x-failed-recipients"):
        return True
    dsn_subject = _DSN_SUBJECT.search(subject) is not None
    if _DAEMON_FROM.search(heads.text("from")):
        return dsn_subject or _DSN_BODY.search(body_text[:20_000]) is not None
    return dsn_subject and heads.text("return-path").replace(" ", "") == "<>"


# --------------------------------------------------------------------------- assembling


_OTHER_RENDERINGS = frozenset(
    {"text/watch-html", "text/x-watch-html", "text/enriched", "text/richtext", "text/x-amp-html"}
)


@dataclass
class _Content:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    attached: list[tuple[str, Message, bytes]] = field(default_factory=list)  # (type, part, bytes)
    dsn: bool = False
    report: bool = False
    alternatives: set[str] = field(default_factory=set)  # paths of multipart/alternative containers


def _read_nodes(nodes: list[tuple[str, Message]], notes: _Notes) -> _Content:
    content = _Content()
    root = nodes[0][1]
    for path, node in nodes:
        try:
            content_type = _content_type(node)
            if _is_container(node):
                _note_container(path, node, content_type, content)
            else:
                _read_leaf(path, node, root, content_type, content, notes)
        except Exception as exc:
            notes.defect(f"part {path or 'root'}: unreadable ({type(exc).__name__})")
    return content


def _note_container(path: str, node: Message, content_type: str, content: _Content) -> None:
    if content_type == "multipart/alternative":
        content.alternatives.add(path)
    if content_type == "multipart/report":
        content.report = True
        content.dsn = content.dsn or _param(node, "report-type").lower() == "delivery-status"


def _read_leaf(path: str, node: Message, root: Message, content_type: str, content: _Content, notes: _Notes) -> None:
    if content_type in _OTHER_RENDERINGS and path.rpartition(".")[0] in content.alternatives:
        return  # one more rendering of the body (Apple Watch, enriched text): neither body nor file
    data, error = _leaf_bytes(node)
    if error:
        notes.defect(f"part {path}: content unreadable ({error})")
    kind = _body_kind(node, content_type, node is root)
    if kind == "plain":
        content.plain.append(_part_text(node, path, kind, data, notes))
    elif kind == "html":
        content.html.append(_part_text(node, path, kind, data, notes))
    else:
        content.attachments.append(_attachment(node, path, content_type, data, notes))
        content.attached.append((content_type, node, data))
        content.dsn = content.dsn or content_type in ("message/delivery-status", "message/global-delivery-status")


def _fallback_charset(nodes: list[tuple[str, Message]]) -> str:
    """Charset for unlabelled 8-bit headers: mailers that send them usually use the body's charset."""
    for _, node in nodes:
        charset = _label(_param(node, "charset"))
        if charset and charset not in _ASCII_LABELS and _codec(charset):
            return charset
    return "windows-1252"


def _bodies(content: _Content, notes: _Notes) -> tuple[str, str | None]:
    text = _truncate("\n\n".join(t for t in content.plain if t.strip()), "body_text", notes)
    html = _truncate("\n".join(content.html), "body_html", notes) if content.html else None
    if not text.strip() and html:
        text = html_to_text(html)
    return text, sanitize_html(html) if html is not None else None


def _original_message_id(
    nodes: list[tuple[str, Message]], content: _Content, body_text: str, own_id: str | None
) -> str | None:
    """Message-ID of the mail that bounced: attached message, a part's own headers (some MTAs
    attach the original without a ``message/rfc822`` wrapper), attached headers, then any text."""
    candidates: list[str | None] = []
    for content_type, node, _ in content.attached:
        payload = node.get_payload() if content_type in _ORIGINAL_TYPES and node.is_multipart() else None
        inner = payload[0] if isinstance(payload, list) and payload else None
        if isinstance(inner, Message):
            candidates.append(normalize_message_id(str(inner.get("message-id", ""))))
    candidates += [normalize_message_id(str(node.get("message-id", ""))) for _, node in nodes[1:]]
    texts = [data for t, _, data in content.attached if t in _ORIGINAL_TYPES or t.startswith("text/")]
    for data in [*texts, body_text.encode("utf-8", "replace")]:
        match = _BODY_MESSAGE_ID.search(data)
        candidates.append(normalize_message_id(match.group(1).decode("ascii", "replace")) if match else None)
    return next((c for c in candidates if c and c != own_id), None)


def _message_defects(nodes: list[tuple[str, Message]], notes: _Notes) -> None:
    for path, node in nodes:
        where = "message" if node is nodes[0][1] else f"part {path}"
        for defect in getattr(node, "defects", ()):
            notes.defect(f"{where}: {type(defect).__name__}")


def _header_defects(heads: _Headers, notes: _Notes) -> None:
    if not heads.count("from"):
        notes.defect("missing from header")
    for name in ("from", "to", "cc", "subject", "date", "message-id", "in-reply-to"):
        if heads.count(name) > 1:
            notes.defect(f"duplicate {name} header")


def _parse(raw: bytes, own_domains: frozenset[str]) -> ParsedMail:
    notes = _Notes()
    msg = _load(raw)
    nodes = _walk(msg, notes)
    heads = _Headers(msg, _fallback_charset(nodes), notes)
    content = _read_nodes(nodes, notes)
    body_text, body_html = _bodies(content, notes)
    sender = next(iter(heads.addresses("from")), None)
    subject = _collapse(heads.decoded("subject"))[:MAX_HEADER_CHARS]
    message_id = normalize_message_id(heads.text("message-id"))
    in_reply_to = normalize_message_id(heads.text("in-reply-to"))
    bounce = _is_bounce(heads, content.dsn, subject, body_text)
    auto = _auto_submitted(heads) or bounce or content.report
    _header_defects(heads, notes)
    date = _parse_date(heads, notes)
    _message_defects(nodes, notes)
    return ParsedMail(
        from_=sender,  # type: ignore[call-arg]  # populate_by_name; mypy sees only the alias
        to=heads.addresses("to"),
        cc=heads.addresses("cc"),
        reply_to=heads.addresses("reply-to"),
        subject=subject,
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=parse_message_ids(" ".join(heads.texts("references"))),
        date=date,
        headers=_selected_headers(heads),
        body_text=body_text,
        body_html=body_html,
        attachments=content.attachments,
        charset_problems=notes.charset_problems,
        defects=notes.defects,
        flags=MailFlags(
            auto_submitted=auto,
            bounce=bounce,
            mailing_list=_mailing_list(heads),
            loop=_loop(heads, message_id, in_reply_to, auto, own_domains),
            malformed=bool(notes.defects),
        ),
        language=detect_language(body_text if len(body_text) > 40 else f"{subject}\n{body_text}"),
        bounce_original_message_id=_original_message_id(nodes, content, body_text, message_id) if bounce else None,
    )


def _unparseable(raw: bytes, exc: BaseException) -> ParsedMail:
    """Last resort when the parser itself fails: keep the text visible, flag the mail."""
    text = _clean(bytes(raw[:MAX_BODY_CHARS]).decode("utf-8", "replace"))
    return ParsedMail(
        body_text=text,
        defects=[f"parser failed: {type(exc).__name__}"],
        flags=MailFlags(malformed=True),
    )


def parse_mail(raw: bytes, *, own_domains: frozenset[str] = DEFAULT_OWN_DOMAINS) -> ParsedMail:
    """Parse one raw mail. Never raises: what can't be read is flagged in ``defects``.

    ``own_domains`` are the domains of our own Message-IDs; seeing one come back is a loop.
    """
    try:
        return _parse(bytes(raw), frozenset(d.lower() for d in own_domains))
    except Exception as exc:
        try:
            return _unparseable(raw, exc)
        except Exception:
            return ParsedMail(defects=[f"parser failed: {type(exc).__name__}"], flags=MailFlags(malformed=True))


def extract_part(raw: bytes, part: str) -> tuple[str, str, bytes] | None:
    """(filename, content type, decoded bytes) of the leaf ``part`` of ``raw``, as numbered by
    :func:`parse_mail`; None if there is no such leaf. Never raises."""
    try:
        msg = _load(bytes(raw))
        node = _node_at(msg, part)
        if node is None or _is_container(node):
            return None
        content_type = _content_type(node)
        return _filename(node, part, content_type, _Notes()), content_type, _leaf_bytes(node)[0]
    except Exception:
        return None

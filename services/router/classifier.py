"""A multinomial naive Bayes classifier over mail tokens, learning queue names from agents.

Labels are queue names; the spam label (``Junk``) is one of them, so the same model gives the
queue and the spam probability. Each mail counts a token once (Boolean multinomial NB), which
is more robust to repetitive spam than raw counts. Training is incremental and reversible
(``untrain``), so an agent's correction "moved from X to Y" is ``untrain(X)`` + ``train(Y)``.
The state is plain counts (:meth:`Classifier.to_dict`), persisted by the service as JSON.

Naive Bayes posteriors are notoriously overconfident: summing a thousand log-likelihoods makes
every decision look certain. The log-likelihood is therefore scaled to a fixed number of
"effective tokens" (``evidence_tokens``) before the softmax, which leaves the ranking as it is
but makes ``probability`` a usable confidence to compare with a threshold.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

from shared.events import ParsedMail

FORMAT = "firstline-nb/1"
SPAM_LABEL = "Junk"
MAX_TOKENS = 1500
MAX_TEXT_CHARS = 30_000
MIN_TOKEN_LENGTH = 2
MAX_TOKEN_LENGTH = 40
TOP_FEATURES = 5
BIGRAM_WORDS = 120
# Headers whose words are tokens. Never X-Spam-*: an upstream filter's verdict would leak the
# label into the model (the spam signal from those headers is handled separately, and openly).
TOKEN_HEADERS = ("x-mailer", "user-agent", "list-id", "precedence", "content-type", "x-priority")

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN_RE = re.compile(
    rf"(?P<cjk>[{_CJK}]+)"
    rf"|(?P<word>[^\W_{_CJK}]+(?:['’.\-][^\W_{_CJK}]+)*)"
    r"|(?P<money>[$€£¥]\s?[0-9])"
)
_URL_HOST_RE = re.compile(r"(?:https?://|www\.)([a-z0-9][a-z0-9.\-]*[a-z0-9])", re.IGNORECASE)
_TAG_RE = re.compile(r"<\s*([a-z][a-z0-9]{0,9})\b", re.IGNORECASE)
_HTML_STRIP_RE = re.compile(r"<[^>]*>|&[a-z#0-9]+;", re.IGNORECASE)
_LETTERS_RE = re.compile(r"[g-z]+")
_HEXISH_RE = re.compile(r"[0-9a-f]+")


# --------------------------------------------------------------------------- tokeniser


def tokenize_text(text: str, prefix: str = "") -> list[str]:
    """Lower-cased words of ``text``; CJK runs become character bigrams; digits are bucketed."""
    tokens: list[str] = []
    append = tokens.append
    for cjk, word, money in _TOKEN_RE.findall(text[:MAX_TEXT_CHARS].lower()):
        if word:
            if MIN_TOKEN_LENGTH <= len(word) <= MAX_TOKEN_LENGTH:
                append(prefix + (_shape_digits(word) if word[0].isdigit() else word))
        elif cjk:
            tokens.extend(prefix + gram for gram in _bigrams(cjk))
        else:
            append(prefix + "money:" + money[0])
    return tokens


def tokenize_mail(mail: ParsedMail, max_tokens: int = MAX_TOKENS) -> list[str]:
    """The distinct tokens of a mail, subject first, at most ``max_tokens`` of them."""
    body = mail.body_text or _strip_html(mail.body_html or "")
    urls = _url_tokens(body + " " + (mail.body_html or "")[:MAX_TEXT_CHARS])
    body_tokens = tokenize_text(body)
    groups: Iterable[Iterable[str]] = (
        tokenize_text(mail.subject, "subject:"),
        tokenize_text(mail.subject),
        _sender_tokens(mail),
        _meta_tokens(mail),
        _header_tokens(mail),
        urls,
        _html_tag_tokens(mail.body_html or ""),
        _origin_tokens(mail),
        body_tokens,
        _word_bigrams(body_tokens),
    )
    return list(dict.fromkeys(chain.from_iterable(groups)))[:max_tokens]


def _bigrams(run: str) -> list[str]:
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]


def _shape_digits(word: str) -> str:
    """Long numbers are noise individually; their shape (``#5``: five digits) is a signal."""
    if word.isdigit() and len(word) > 3:
        return f"#{len(word)}"
    return word


def _strip_html(html: str) -> str:
    return _HTML_STRIP_RE.sub(" ", html[: MAX_TEXT_CHARS * 3])


def _sender_tokens(mail: ParsedMail) -> list[str]:
    if mail.from_ is None:
        return ["meta:no_from"]
    local, _, domain = mail.from_.email.lower().rpartition("@")
    tokens = ["from:" + domain, *tokenize_text(mail.from_.name, "fromname:")]
    tokens.extend("fromlocal:" + _shape_digits(part) for part in re.split(r"[._\-+]", local) if part)
    return tokens


def _meta_tokens(mail: ParsedMail) -> list[str]:
    tokens = [f"flag:{name}" for name, value in mail.flags.model_dump().items() if value]
    if mail.body_html is not None:
        tokens.append("meta:html" if mail.body_text else "meta:html_only")
    if mail.subject and mail.subject.upper() == mail.subject and any(c.isalpha() for c in mail.subject):
        tokens.append("meta:subject_caps")
    if not mail.subject:
        tokens.append("meta:no_subject")
    if len(mail.to) + len(mail.cc) > 5:
        tokens.append("meta:many_recipients")
    if mail.reply_to and mail.from_ and mail.reply_to[0].email.lower() != mail.from_.email.lower():
        tokens.append("meta:reply_to_differs")
    tokens.extend("attachment:" + a.content_type.lower() for a in mail.attachments)
    return tokens


def _header_tokens(mail: ParsedMail) -> list[str]:
    tokens = []
    for name in TOKEN_HEADERS:
        value = mail.headers.get(name)
        if not value:
            continue
        tokens.append("header:" + name)
        if name == "content-type":
            value = " ".join(p for p in value.split(";") if "boundary" not in p.lower())
        tokens.extend(tokenize_text(value, f"{name}:")[:6])
    return tokens


def _url_tokens(text: str) -> list[str]:
    tokens = []
    for host in _URL_HOST_RE.findall(text):
        labels = host.lower().removeprefix("www.").split(".")
        tokens.append("url:" + ".".join(labels[-2:]))
    return tokens


def _word_bigrams(tokens: list[str]) -> list[str]:
    """Pairs of adjacent body words (of the first ``BIGRAM_WORDS``): phrases say more than words."""
    words = tokens[:BIGRAM_WORDS]
    return ["bi:" + a + "_" + b for a, b in zip(words, words[1:], strict=False)]


def _origin_tokens(mail: ParsedMail) -> list[str]:
    """Where and how the mail was made: language, Message-ID domain and shape, time zone, defects."""
    tokens = [f"lang:{mail.language or 'none'}"]
    if mail.message_id:
        local, _, domain = mail.message_id.strip("<>").lower().rpartition("@")
        tokens.append("msgid_domain:" + ".".join(domain.split(".")[-2:]))
        tokens.append("msgid_shape:" + _HEXISH_RE.sub("h", _LETTERS_RE.sub("a", local))[:12])
    else:
        tokens.append("meta:no_message_id")
    if mail.date is not None and mail.date.utcoffset() is not None:
        tokens.append(f"tz:{mail.date.utcoffset()}")
    tokens.extend("defect:" + d.split(":")[-1].strip()[:30] for d in mail.defects[:5])
    if mail.charset_problems:
        tokens.append("meta:charset_problem")
    return tokens


def _html_tag_tokens(html: str) -> list[str]:
    return ["tag:" + tag.lower() for tag in _TAG_RE.findall(html[:MAX_TEXT_CHARS])]


# --------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Prediction:
    """The most probable label, its probability, and the tokens that weighed most for it."""

    label: str
    probability: float
    top_features: tuple[str, ...]
    probabilities: Mapping[str, float] = field(default_factory=dict)
    model_version: int = 0

    def explain(self) -> str:
        words = ", ".join(self.top_features) or "no distinctive tokens"
        return f"{self.label} p={self.probability:.2f} (top words: {words}) model v{self.model_version}"


MailOrTokens = ParsedMail | Iterable[str]


class Classifier:
    """Incremental multinomial naive Bayes; see the module docstring."""

    def __init__(
        self,
        *,
        alpha: float = 0.5,
        evidence_tokens: float = 40.0,
        max_tokens: int = MAX_TOKENS,
        spam_label: str = SPAM_LABEL,
    ) -> None:
        self.alpha = alpha
        self.evidence_tokens = evidence_tokens
        self.max_tokens = max_tokens
        self.spam_label = spam_label
        self.version = 0
        self._docs: dict[str, int] = {}
        self._token_totals: dict[str, int] = {}
        self._table: dict[str, dict[str, int]] = {}
        # token → (log(count + alpha) - log(alpha) per label of ``_weight_labels``); cleared
        # whenever counts change
        self._weights: dict[str, tuple[float, ...]] = {}
        self._weight_labels: tuple[str, ...] = ()

    # ---- learning

    def train(self, item: MailOrTokens, label: str) -> None:
        """Count one mail (or its tokens) as an example of ``label``."""
        self._add(self.tokens(item), label, +1)

    def untrain(self, item: MailOrTokens, label: str) -> None:
        """Forget one earlier ``train(item, label)``; counts never go below zero."""
        self._add(self.tokens(item), label, -1)

    def relabel(self, item: MailOrTokens, old: str, new: str) -> None:
        """An agent moved the mail's ticket from ``old`` to ``new``: learn the correction."""
        tokens = self.tokens(item)
        self._add(tokens, old, -1)
        self._add(tokens, new, +1)

    def tokens(self, item: MailOrTokens) -> list[str]:
        if isinstance(item, ParsedMail):
            return tokenize_mail(item, self.max_tokens)
        return list(dict.fromkeys(item))[: self.max_tokens]

    @property
    def labels(self) -> list[str]:
        return sorted(label for label, docs in self._docs.items() if docs > 0)

    def document_count(self, label: str) -> int:
        return self._docs.get(label, 0)

    @property
    def vocabulary(self) -> int:
        """How many distinct tokens the model has counts for."""
        return len(self._table)

    # ---- predicting

    def predict(self, item: MailOrTokens) -> Prediction | None:
        """The best label for ``item``; None while fewer than two labels have examples, or when
        none of the mail's tokens has been seen in training."""
        labels = self.labels
        if len(labels) < 2:
            return None
        if tuple(labels) != self._weight_labels:
            self._weights.clear()
            self._weight_labels = tuple(labels)
        table, cache, weight = self._table, self._weights, self._weight
        tokens = [t for t in self.tokens(item) if t in table]
        if not tokens:
            return None  # the priors alone would pass off the biggest queue as a prediction
        rows = [cache.get(t) or weight(t) for t in tokens]
        scores = self._log_scores(rows, labels)
        probabilities = _softmax(scores)
        best = max(probabilities, key=probabilities.__getitem__)
        runner_up = max((lb for lb in labels if lb != best), key=probabilities.__getitem__)
        return Prediction(
            label=best,
            probability=probabilities[best],
            top_features=self._top_features(tokens, rows, labels, best, runner_up),
            probabilities=probabilities,
            model_version=self.version,
        )

    def spam_probability(self, item: MailOrTokens) -> float | None:
        """P(spam label), or None if the model has not seen both spam and non-spam mail."""
        if self.document_count(self.spam_label) == 0:
            return None
        prediction = self.predict(item)
        return None if prediction is None else prediction.probabilities.get(self.spam_label, 0.0)

    # ---- persistence

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable state: parameters, version and counts per token and label."""
        return {
            "format": FORMAT,
            "alpha": self.alpha,
            "evidence_tokens": self.evidence_tokens,
            "max_tokens": self.max_tokens,
            "spam_label": self.spam_label,
            "version": self.version,
            "docs": dict(self._docs),
            "counts": {token: dict(row) for token, row in self._table.items()},
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Classifier:
        if state.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} classifier state: {state.get('format')!r}")
        model = cls(
            alpha=state["alpha"],
            evidence_tokens=state["evidence_tokens"],
            max_tokens=state["max_tokens"],
            spam_label=state["spam_label"],
        )
        model.version = int(state["version"])
        model._docs = {label: int(n) for label, n in state["docs"].items()}
        for token, row in state["counts"].items():
            model._table[token] = {label: int(n) for label, n in row.items()}
            for label, n in row.items():
                model._token_totals[label] = model._token_totals.get(label, 0) + int(n)
        return model

    # ---- internals

    def _add(self, tokens: list[str], label: str, delta: int) -> None:
        if delta < 0 and self._docs.get(label, 0) == 0:
            return
        self._weights.clear()
        self._docs[label] = self._docs.get(label, 0) + delta
        for token in tokens:
            row = self._table.get(token)
            if row is None:
                if delta < 0:
                    continue
                row = self._table[token] = {}
            old = row.get(label, 0)
            new = max(0, old + delta)
            self._token_totals[label] = self._token_totals.get(label, 0) + new - old
            _set_count(self._table, token, row, label, new)
        self.version += 1

    def _log_denominators(self, labels: Iterable[str]) -> dict[str, float]:
        vocabulary = len(self._table)
        return {lb: math.log(self._token_totals.get(lb, 0) + self.alpha * vocabulary) for lb in labels}

    def _weight(self, token: str) -> tuple[float, ...]:
        """log(count + alpha) - log(alpha) for each label of ``_weight_labels``: the token's evidence."""
        row = self._table[token]
        log_alpha, alpha = math.log(self.alpha), self.alpha
        found = self._weights[token] = tuple(math.log(row.get(lb, 0) + alpha) - log_alpha for lb in self._weight_labels)
        return found

    def _log_scores(self, rows: list[tuple[float, ...]], labels: list[str]) -> dict[str, float]:
        """log prior + scaled sum of log P(token | label) over the known tokens (one row each)."""
        total_docs = sum(self._docs[label] for label in labels)
        scale = min(1.0, self.evidence_tokens / len(rows)) if rows else 1.0
        denominators = self._log_denominators(labels)
        log_alpha = math.log(self.alpha)
        seen = [sum(column) for column in zip(*rows, strict=True)]
        return {
            label: math.log(self._docs[label] / total_docs)
            + scale * (len(rows) * (log_alpha - denominators[label]) + seen[i])
            for i, label in enumerate(labels)
        }

    def _top_features(
        self, tokens: list[str], rows: list[tuple[float, ...]], labels: list[str], label: str, other: str
    ) -> tuple[str, ...]:
        """Tokens ranked by how much more likely they are under ``label`` than under ``other``."""
        denominators = self._log_denominators((label, other))
        offset = denominators[other] - denominators[label]
        i, j = labels.index(label), labels.index(other)
        weighted = [(row[i] - row[j] + offset, token) for token, row in zip(tokens, rows, strict=True)]
        return tuple(token for w, token in heapq.nlargest(TOP_FEATURES, weighted) if w > 0)


def _set_count(table: dict[str, dict[str, int]], token: str, row: dict[str, int], label: str, n: int) -> None:
    """Store a count, dropping zero entries so the vocabulary shrinks when mail is untrained."""
    if n:
        row[label] = n
        return
    row.pop(label, None)
    if not row:
        del table[token]


def _softmax(scores: Mapping[str, float]) -> dict[str, float]:
    peak = max(scores.values())
    exps = {label: math.exp(score - peak) for label, score in scores.items()}
    total = sum(exps.values())
    return {label: value / total for label, value in exps.items()}

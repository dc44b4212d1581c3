"""Residual-PII scan of de-identified rows: what the asset check on ``sampled_conversations`` runs.

A row passes when nothing in its text looks like personal data except surrogates that
de-identification itself inserted. Two kinds of detector run over every text of the stored
conversation (string contents, text parts, tool-call arguments, tool results):

- the de-identifier's own detectors (:func:`deid.find_spans`, names in context included), so
  a row written without de-identification, or edited since, is caught;
- independent patterns written separately and looser, so a gap in one detector is not
  silently shared by the check.

A hit is exempt only when it is a surrogate: its digest (or the digest of its digits) is in
the row's ``surrogate_digests``, or it carries a surrogate's telltale (documentation IP
ranges, ``example.*`` email domains, an ``EXAMPLE``/``redacted-`` marker, a failed Luhn check,
the never-issued SSN area 000 or NINO prefix QQ). A hit is reported by conversation, message
and type, never with its text.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from depsim_assets.traffic import deid
from depsim_assets.traffic.deid import SURROGATE_EMAIL_DOMAINS, luhn_valid, surrogate_digest

_TOKEN_RE = re.compile(deid._TOKEN)

# Independent patterns: deliberately simpler and wider than the de-identifier's.
INDEPENDENT: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
    "payment_card": re.compile(r"(?<![\d])\d(?:[ -]?\d){12,18}(?![\d])"),
    "ssn": re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"),
    "national_id": re.compile(
        r"(?<![A-Za-z0-9])[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])"
    ),
    "sin": re.compile(
        r"(?<![\d+])(?<!\+\d )(?<!\+\d\d )(?<!\+\d\d\d )\d{3}[ -]\d{3}[ -]\d{3}(?![\d])"
    ),
    "ipv4": re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.]*\d)"),
    "ipv6": re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])"),
    "phone": re.compile(r"(?<![\w+])\+\d{1,3}[ .-]?(?:\(?\d{1,5}\)?[ .-]?){2,5}\d{2,}(?!\d)"),
    "us_phone": re.compile(
        r"(?<![\w.-])(?:\+?1[ .-])?\(?\d{3}\)?[ .-]\d{3}[ .-]\d{4}(?![\w]|-\d)"
    ),
    "secret": re.compile(
        r"(?:sk-|sk_live_|rk_live_|AKIA|ASIA|ghp_|gho_|github_pat_|glpat-|xox[abprs]-|AIza)"
        r"[A-Za-z0-9_\-]{12,}|eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"
        r"|-----BEGIN [A-Z ]*PRIVATE KEY-----\s*\S{0,80}"
    ),
    "url_token": re.compile(
        r"[?&](?i:access_token|token|api_key|apikey|key|secret|password|sig|signature|auth)"
        r"=(?P<v>[^&#\s\"'<>]+)|://(?P<u>[^/\s:@\"'<>]+:[^/\s@\"'<>]+)@"
    ),
}
_LABELS = {"sin": "national_id", "us_phone": "phone"}
_DIGIT_RE = re.compile(r"\d")
_DIGIT_KINDS = frozenset(
    {"payment_card", "ssn", "national_id", "sin", "ipv4", "phone", "us_phone"}
)
_SECRET_STARTS = (
    "sk-", "sk_", "rk_", "AKIA", "ASIA", "ghp_", "gho_", "github_pat_", "glpat-", "xox",
    "AIza", "eyJ", "-----BEGIN",
)  # fmt: skip


def _may_match(kind: str, text: str, has_digit: bool) -> bool:
    """A necessary condition for INDEPENDENT[kind] to match: skips most patterns cheaply."""
    if kind in _DIGIT_KINDS:
        return has_digit
    if kind == "email":
        return "@" in text
    if kind == "ipv6":
        return ":" in text
    if kind == "url_token":
        return "=" in text or "://" in text
    if kind == "secret":
        return any(t in text for t in _SECRET_STARTS)
    return True
_DOC_NETS = tuple(
    ipaddress.ip_network(n) for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24")
)


@dataclass(frozen=True)
class Hit:
    """One suspected leak: where it is and what kind, never its text."""

    conversation_id: str
    message_index: int
    kind: str
    detector: str


def _texts(messages: list[dict[str, Any]]) -> Iterator[tuple[int, str]]:
    for i, msg in enumerate(messages):
        content = msg.get("content")
        if isinstance(content, str):
            yield i, content
        elif isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and isinstance(part.get(part.get("type", "")), str):
                    yield i, part[part["type"]]
        if isinstance(msg.get("refusal"), str):
            yield i, msg["refusal"]
        for call in msg.get("tool_calls") or []:
            args = (call.get("function") or {}).get("arguments")
            if isinstance(args, str):
                yield i, args
                # JSON escapes (\n, \u00e9) hide text from patterns; scan the decoded strings too.
                yield from ((i, s) for s in _json_strings(args))
        if msg.get("role") == "tool" and isinstance(content, str):
            yield from ((i, s) for s in _json_strings(content))


def _json_strings(text: str) -> list[str]:
    if not text.lstrip().startswith(("{", "[")):
        return []
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return []
    out: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(parsed)
    return out


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def _is_surrogate(value: str, digests: set[str]) -> bool:
    if surrogate_digest(value) in digests:
        return True
    digits = _digits(value)
    return len(digits) >= 7 and surrogate_digest(digits) in digests


def _independent_hit(kind: str, match: re.Match[str], digests: set[str]) -> bool:
    value = match.group()
    if kind == "url_token":
        value = match.group("v") or match.group("u")
        return not value.startswith("redacted-") and "redacted-" not in value and not (
            _is_surrogate(value, digests)
        )
    if _is_surrogate(value, digests):
        return False
    if kind == "email":
        if value.startswith("redacted-"):  # the password half of a redacted URL userinfo
            return False
        return value.rsplit("@", 1)[1].lower() not in SURROGATE_EMAIL_DOMAINS
    if kind == "sin":
        return luhn_valid(value) and value[0] not in "08"
    if kind == "ipv6":
        try:
            addr = ipaddress.IPv6Address(value)
        except ValueError:
            return False
        doc = ipaddress.ip_network("2001:db8::/32")
        return not (addr.is_loopback or addr.is_unspecified or addr in doc)
    if kind == "us_phone":
        return _digits(value)[-7:-2] != "55501"
    if kind == "payment_card":
        return luhn_valid(value)
    if kind == "ssn":
        area = value[:3]
        return area not in ("000", "666") and not area.startswith("9") and value[4:6] != "00"
    if kind == "national_id":
        return not value.startswith("QQ") and value[:2] not in ("BG", "GB", "NK", "KN", "TN", "NT")
    if kind == "ipv4":
        try:
            addr = ipaddress.IPv4Address(value)
        except ValueError:
            return False
        if addr.is_loopback or addr.is_unspecified or str(addr) == "255.255.255.255":
            return False
        return not any(addr in net for net in _DOC_NETS)
    if kind == "phone":
        return 8 <= len(_digits(value)) <= 15
    if kind == "secret":
        return "EXAMPLE" not in value
    return True


def scan_messages(
    conversation_id: str, messages: list[dict[str, Any]], digests: Iterable[str]
) -> list[Hit]:
    """Every suspected leak in one de-identified conversation."""
    known = set(digests)
    hits: list[Hit] = []
    for index, text in _texts(messages):
        for span in deid.find_spans(text):
            if span.kind == deid.PERSON_NAME:
                tokens = _TOKEN_RE.findall(span.value)
                leaked = any(surrogate_digest(t) not in known for t in tokens)
            else:
                leaked = not _is_surrogate(span.value, known) and not _telltale(span)
            if leaked:
                hits.append(Hit(conversation_id, index, span.kind, "deid"))
        has_digit = _DIGIT_RE.search(text) is not None
        for kind, pattern in INDEPENDENT.items():
            if not _may_match(kind, text, has_digit):
                continue
            for m in pattern.finditer(text):
                if _independent_hit(kind, m, known):
                    label = _LABELS.get(kind, kind)
                    hits.append(Hit(conversation_id, index, label, "independent"))
    return hits


def _telltale(span: Any) -> bool:
    # find_spans already skips documentation IPs, SSN area 000 and Luhn-failing cards.
    value = span.value
    if span.kind == deid.EMAIL:
        return value.rsplit("@", 1)[1].lower() in SURROGATE_EMAIL_DOMAINS
    if span.kind == deid.SECRET:
        return "EXAMPLE" in value
    if span.kind == deid.URL_TOKEN:
        return "redacted-" in value
    return False


def scan_rows(rows: Iterable[dict[str, Any]]) -> tuple[int, list[Hit]]:
    """Scan ``sampled_conversations`` rows; returns (rows scanned, hits)."""
    hits: list[Hit] = []
    n = 0
    for row in rows:
        n += 1
        try:
            messages = json.loads(row["messages_json"])
        except (TypeError, ValueError):
            hits.append(Hit(str(row.get("conversation_id")), -1, "unreadable_row", "check"))
            continue
        raw = row.get("surrogate_digests")
        digests = json.loads(raw) if isinstance(raw, str) and raw else []
        hits.extend(scan_messages(str(row["conversation_id"]), messages, digests))
    return n, hits


def summarize(hits: list[Hit]) -> dict[str, int]:
    """Hits counted by PII type."""
    return dict(sorted(Counter(h.kind for h in hits).items()))

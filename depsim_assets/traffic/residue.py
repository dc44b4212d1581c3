"""Residual-PII scan of one de-identified conversation, run before anything is written.

This is the second, independent layer behind the de-identifier. It imports none of the
de-identifier's detectors: it knows de-identification only through the digests of the
surrogates it inserted (:mod:`depsim_assets.traffic.surrogates`), and it finds candidates by
other means, so a gap in one layer is not silently shared by the other:

- phones: every run of digits that could be a phone number is parsed by ``phonenumbers``
  against many regions (``+`` numbers against their own country); formatted runs count when
  valid somewhere, bare digit runs only with a phone word nearby (in several languages);
- identifiers with a checksum or a structure: ``python-stdnum`` validators (IBAN, payment
  cards by Luhn with an issuer range, ES DNI/NIE, IT codice fiscale, BR CPF, SE personnummer,
  IN Aadhaar/PAN, CN resident id, NL BSN, US SSN, CA SIN, FR NIR, KR RRN, MX CURP, DK CPR,
  FI HETU, PL PESEL, ...); weak checksums only next to their keyword;
- e-mail addresses, IDN ones and ``name at host dot com`` spellings included;
- secrets: provider prefixes at token boundaries (``wisk-couchbase`` is not ``sk-``), values
  after a secret keyword that look random (Shannon entropy), bearer tokens, passwords in
  prose, ``user:password@`` in URLs, token query parameters, JWTs and PEM private keys;
- IP addresses that are globally routed (documentation, private and well-known public
  resolver addresses are not personal); names right after a self-introduction and in the
  Name column of a markdown table.

Every string of a message is scanned: contents and text parts, refusals, tool names and
arguments, tool results, and inside JSON arguments/results every key, string and integer.
A hit names its type, the rule, the message and a field path
(``messages[3].tool_calls[0].function.arguments.$.card``), never the text. A candidate is not a
hit when it is a surrogate: its digest, or the digest of its digits, or of the token around
it, is among the row's surrogate digests; or it is reserved for documentation (``example.com``
and the other RFC 2606 names, documentation IP ranges).
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import ahocorasick_rs
import phonenumbers
from stdnum import iban as std_iban
from stdnum import luhn
from stdnum.br import cpf
from stdnum.ca import sin
from stdnum.cn import ric
from stdnum.de import idnr
from stdnum.dk import cpr
from stdnum.es import dni, nie
from stdnum.fi import hetu
from stdnum.fr import nir
from stdnum.in_ import aadhaar, pan
from stdnum.it import codicefiscale
from stdnum.kr import rrn
from stdnum.mx import curp
from stdnum.nl import bsn
from stdnum.no import fodselsnummer
from stdnum.pl import pesel
from stdnum.se import personnummer
from stdnum.tr import tckimlik
from stdnum.us import ssn
from stdnum.za import idnr as za_idnr

from depsim_assets.traffic.surrogates import MIN_DIGITS, digits_of, surrogate_digest

RESIDUE_VERSION = "residue-2"

EMAIL = "email"
PHONE = "phone"
PAYMENT_CARD = "payment_card"
IBAN = "iban"
NATIONAL_ID = "national_id"
PASSPORT = "passport"
SSN = "ssn"
IPV4 = "ipv4"
IPV6 = "ipv6"
SECRET = "secret"
URL_TOKEN = "url_token"
PERSON_NAME = "person_name"


@dataclass(frozen=True)
class Hit:
    """One suspected leak: where it is, what kind and which rule found it; never its text."""

    conversation_id: str
    message_index: int
    kind: str
    detector: str = "independent"
    path: str = ""
    rule: str = ""


# ------------------------------------------------------------------------------ text walking


def _fields(messages: list[dict[str, Any]]) -> Iterator[tuple[int, str, str]]:
    """Every string of a conversation as (message index, field path, text)."""
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            continue
        base = f"messages[{i}]"
        content = msg.get("content")
        if isinstance(content, str):
            yield i, f"{base}.content", content
            yield from _json_fields(i, f"{base}.content", content)
        elif isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict):
                    continue
                for key, value in part.items():
                    if isinstance(value, str) and key != "type":
                        yield i, f"{base}.content[{j}].{_safe_key(key)}", value
        for key in ("refusal", "name", "tool_call_id"):
            if isinstance(msg.get(key), str):
                yield i, f"{base}.{key}", msg[key]
        for k, call in enumerate(msg.get("tool_calls") or []):
            if not isinstance(call, dict):
                continue
            fn = call.get("function") or {}
            path = f"{base}.tool_calls[{k}].function"
            if isinstance(fn.get("name"), str):
                yield i, f"{path}.name", fn["name"]
            args = fn.get("arguments")
            if isinstance(args, str):
                yield i, f"{path}.arguments", args
                yield from _json_fields(i, f"{path}.arguments", args)


def _json_fields(i: int, path: str, text: str) -> Iterator[tuple[int, str, str]]:
    # JSON escapes (\u00e9, \n) hide text from patterns, and numbers hide digits' shape: scan
    # the decoded keys, strings and integers as well as the raw text.
    if not text.lstrip().startswith(("{", "[")):
        return
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return
    stack: list[tuple[str, Any]] = [(f"{path}.$", parsed)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, str):
            yield i, where, value
        elif isinstance(value, bool) or value is None:
            continue
        elif isinstance(value, int):
            yield i, where, str(value)
        elif isinstance(value, float) and value.is_integer() and abs(value) >= 1e6:
            yield i, where, str(int(value))
        elif isinstance(value, dict):
            for n, (key, item) in enumerate(value.items()):
                name = _safe_key(key, n)
                yield i, f"{where}.{{key {n}}}", key
                stack.append((f"{where}.{name}", item))
        elif isinstance(value, list):
            stack.extend((f"{where}[{n}]", item) for n, item in enumerate(value))


_SAFE_KEY_RE = re.compile(r"[a-z][a-z0-9_]{0,23}")


def _safe_key(key: Any, n: int | None = None) -> str:
    # A JSON key can itself be personal data: a path shows only short lower-case identifiers
    # and the key's position otherwise.
    if isinstance(key, str) and _SAFE_KEY_RE.fullmatch(key) and not _key_has_hit(key):
        return key
    return f"{{key {n}}}" if n is not None else "{key}"


def _key_has_hit(key: str) -> bool:
    return bool(scan_text(key, frozenset()))


# -------------------------------------------------------------------------------- exemptions

_RESERVED_TLDS = ("example", "test", "invalid", "localhost", "local")
_RESERVED_DOMAINS = ("example.com", "example.org", "example.net", "example.edu")
# Mailboxes that name a service, not a person.
_ROLE_MAILBOXES = frozenset(
    {"git", "noreply", "no-reply", "donotreply", "root", "postmaster", "hostmaster",
     "webmaster", "abuse", "nobody", "mailer-daemon"}
)  # fmt: skip
_DOC_NETS = tuple(
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)
# Public resolvers and the placeholder addresses code and docs use all the time; nobody's
# personal address.
_PUBLIC_RESOLVERS = frozenset(
    {"8.8.8.8", "8.8.4.4", "1.1.1.1", "1.0.0.1", "9.9.9.9", "149.112.112.112",
     "208.67.222.222", "208.67.220.220", "4.2.2.2", "4.2.2.1", "1.2.3.4", "4.3.2.1",
     "5.6.7.8", "2.2.2.2", "3.3.3.3", "4.4.4.4", "5.5.5.5", "6.6.6.6", "7.7.7.7"}
)  # fmt: skip


def _surrogate(value: str, text: str, start: int, end: int, digests: frozenset[str]) -> bool:
    """Whether the candidate at ``text[start:end]`` is (part of) an inserted surrogate."""
    if not digests:
        return False
    candidates = {value, value.strip(" .,;:()[]{}<>\"'")}
    digits = digits_of(value)
    if len(digits) >= MIN_DIGITS:
        candidates.add(digits)
    # The layers may cut a value differently: try the whitespace-delimited token around it.
    left = start
    while left > 0 and not text[left - 1].isspace():
        left -= 1
    right = end
    while right < len(text) and not text[right].isspace():
        right += 1
    token = text[left:right]
    candidates.update({token, token.strip(" .,;:()[]{}<>\"'`")})
    if "\\" in value:
        # Raw JSON text (tool arguments) holds a multi-line surrogate with its escapes.
        try:
            candidates.add(json.loads(f'"{value}"'))
        except ValueError:
            pass
    return any(surrogate_digest(c) in digests for c in candidates if c)


def _reserved_domain(domain: str) -> bool:
    d = domain.lower().rstrip(".")
    return (
        d in _RESERVED_DOMAINS
        or d.rsplit(".", 1)[-1] in _RESERVED_TLDS
        or any(d.endswith("." + r) for r in _RESERVED_DOMAINS)
    )


def _entropy(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


# ----------------------------------------------------------------------------------- context

_PHONE_WORDS = re.compile(
    r"(?i)(?:phone|\btel\b|tel\.|telephone|mobile|\bcell|call\b|call me|text me|whatsapp|"
    r"\bsms\b|\bfax\b|contact|reach me|my number|"
    r"телефон|тел\.|номер|电话|手机|電話|携帯|téléphone|\btél|portable|telefono|cellulare|"
    r"teléfono|móvil|movil|celular|telefone|\bhandy\b|rufnummer|\bmobil\b|휴대폰|전화|फ़ोन|फोन|"
    r"هاتف|جوال|telefon)"
)
_ID_WORDS: dict[str, re.Pattern[str]] = {
    "bsn": re.compile(r"(?i)\b(?:bsn|burgerservicenummer|sofinummer|sofi)\b"),
    "ssn": re.compile(r"(?i)\b(?:ssn|social security|tax id|tin)\b"),
    "cpf": re.compile(r"(?i)\bcpf\b"),
    "aadhaar": re.compile(r"(?i)\b(?:aadhaar|aadhar|uidai)\b|आधार"),
    "idnr": re.compile(r"(?i)\b(?:steuer-?id|steueridentifikationsnummer|idnr|identifikationsnr)"),
    "pesel": re.compile(r"(?i)\bpesel\b"),
    "tckimlik": re.compile(r"(?i)\b(?:tc kimlik|tckn|kimlik)\b"),
    "fodselsnummer": re.compile(r"(?i)fødselsnummer|fodselsnummer|personnummer"),
    "za_id": re.compile(r"(?i)\b(?:id number|identity number|id no)\b"),
    "nir": re.compile(r"(?i)\b(?:nir|sécurité sociale|securite sociale|numéro de sécu)"),
}
# Words that introduce any national number ("ID no.", a table column "National ID"): each
# context rule accepts them besides its own.
_GENERIC_ID = (
    r"(?i)\b(?:id\s*(?:no|nr|num|number|#)|national\s+id|identity\s+(?:no|number|card)"
    r"|personal\s+(?:id|number)|citizen\s+id|id\s+card|documento|ausweis|удостоверени\w*)\b"
)
_ID_WORDS = {
    key: re.compile(f"{p.pattern}|{_GENERIC_ID.removeprefix('(?i)')}", re.I)
    for key, p in _ID_WORDS.items()
}

_DIGIT_RE = re.compile(r"\d")
_CONTEXT_CHARS = 48


def _before(text: str, start: int) -> str:
    return text[max(0, start - _CONTEXT_CHARS) : start]


# ------------------------------------------------------------------------------------ phones

_REGIONS = (
    "US", "GB", "FR", "DE", "ES", "IT", "NL", "BE", "PT", "IE", "CH", "AT", "SE", "NO", "DK",
    "FI", "PL", "CZ", "RU", "UA", "TR", "IN", "PK", "BD", "CN", "HK", "TW", "JP", "KR", "SG",
    "MY", "ID", "TH", "VN", "PH", "AU", "NZ", "BR", "MX", "AR", "CL", "CO", "PE", "ZA", "NG",
    "KE", "EG", "SA", "AE", "IL", "GR", "RO", "HU",
)  # fmt: skip
# One separator between digit groups, an optional +CC and one parenthesised area code:
# the shapes phones are written in. Not inside a longer run of numbers (a table, a list).
_PHONE_CAND = re.compile(
    # A +CC number may follow "=" or ":" (phone=+61 ...); a national one may not (x=1234567).
    r"(?:(?<![\w+])\+\d{1,3}[ .\-\u00a0]?|(?<![\w@#$%&/\\=.:+,-])(?<!\d[ .\-\u00a0]))"
    r"(?:\(\d{1,4}\)[ .\-\u00a0]?)?\d{1,12}(?:[ .\-\u00a0]\d{1,8}){0,5}"
    r"(?![\w]|[.:/,-]\d|[ \u00a0]\d)"
)
_DATE_INSIDE = re.compile(
    r"(?:19|20)\d\d[-/.](?:0?[1-9]|1[0-2])(?:\D|$)|\d{1,2}[-/.](?:0?[1-9]|1[0-2])[-/.]"
    r"(?:19|20)?\d\d|(?:0?[1-9]|1[0-2])[-/.](?:19|20)\d\d"
)
_ZIP4 = re.compile(r"^\d{5}-\d{4}$")


def _phone_hits(text: str) -> Iterator[tuple[int, int, str]]:
    for m in _PHONE_CAND.finditer(text):
        raw = m.group()
        digits = digits_of(raw)
        if not 7 <= len(digits) <= 15:
            continue
        if raw.startswith("+"):
            if _valid_phone(raw, None):
                yield m.start(), m.end(), "phonenumbers:intl"
            continue
        if _DATE_INSIDE.search(raw) or _ZIP4.match(raw):
            continue
        if "." in raw and not _phone_dots(raw):
            continue
        if _PHONE_WORDS.search(_before(text, m.start())):
            if _valid_phone(raw, ()):
                yield m.start(), m.end(), "phonenumbers:context"
        elif re.search(r"[ .\-\u00a0()]", raw) and _valid_phone(raw, _groups(raw)):
            yield m.start(), m.end(), "phonenumbers:national"


def _groups(raw: str) -> tuple[int, ...]:
    return tuple(len(g) for g in re.findall(r"\d+", raw))


def _phone_dots(raw: str) -> bool:
    # Decimals, versions and IPs are dotted digit groups too: a dotted phone has short groups,
    # at least three of them, and five or more unless it starts with a trunk 0.
    groups = re.split(r"[.\s]", raw)
    if len(groups) < 3 or any(len(g) > 4 for g in groups):
        return False
    return len(groups) >= 5 or raw.startswith("0")


def _valid_phone(raw: str, shape: tuple[int, ...] | None) -> bool:
    """Valid in some region; with ``shape`` (digit-group lengths) also written the way that
    region writes its numbers, which separates phones from other grouped numbers.
    """
    for region in (None,) if shape is None else _REGIONS:
        try:
            number = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException:
            continue
        if not phonenumbers.is_valid_number(number):
            continue
        if not shape:
            return True
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        if _groups(national) == shape:
            return True
    return False


# ------------------------------------------------------------------------------ identifiers


def _card_ok(digits: str) -> bool:
    # Issuer ranges of the card networks (Visa, Mastercard, Amex, Discover, JCB, UnionPay,
    # Diners, Maestro): a Luhn-valid long int with another first digit is not a card.
    if not 13 <= len(digits) <= 19 or not luhn.is_valid(digits):
        return False
    two, four = int(digits[:2]), int(digits[:4])
    return (
        digits[0] == "4"
        or 51 <= two <= 55
        or 2221 <= four <= 2720
        or two in (34, 37, 36, 38, 62, 65, 50, 56, 57, 58, 63, 67)
        or 3528 <= four <= 3589
        or four == 6011
        or 644 <= int(digits[:3]) <= 649
        or 300 <= int(digits[:3]) <= 305
    )


def _valid(module: Any) -> Any:
    def check(value: str) -> bool:
        try:
            return bool(module.is_valid(value))
        except Exception:  # noqa: BLE001 - a validator that cannot read a value rejects it
            return False

    return check


# (kind, rule, pattern, validator, context word key or None)
_ID_RULES: list[tuple[str, str, re.Pattern[str], Any, str | None]] = [
    (
        IBAN,
        "stdnum:iban",
        re.compile(
            r"(?i)(?<![\w])[A-Z]{2}\d{2}"
            r"(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,4})?)(?![\w])"
        ),
        _valid(std_iban),
        None,
    ),
    (
        PAYMENT_CARD,
        "luhn+iin",
        re.compile(
            r"(?<![\w.+-])(?:\d{4}(?P<s>[ .\-/])\d{4}(?P=s)\d{4}(?P=s)\d{1,7}"
            r"|\d{4}(?P<t>[ .\-])\d{6}(?P=t)\d{4,5}|\d{13,19})(?![\w]|[.-]\d)"
        ),
        lambda v: _card_ok(digits_of(v)),
        None,
    ),
    (SSN, "stdnum:us.ssn", re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])"), _valid(ssn), None),
    (SSN, "stdnum:us.ssn", re.compile(r"(?<![\w-])\d{9}(?![\w-])"), _valid(ssn), "ssn"),
    (
        NATIONAL_ID,
        "stdnum:es.dni",
        re.compile(r"(?i)(?<![\w-])\d{8}[ -]?[A-Z](?![\w])"),
        _valid(dni),
        None,
    ),
    (
        NATIONAL_ID,
        "stdnum:es.nie",
        re.compile(r"(?i)(?<![\w-])[XYZ][ -]?\d{7}[ -]?[A-Z](?![\w])"),
        _valid(nie),
        None,
    ),
    (
        NATIONAL_ID,
        "stdnum:it.codicefiscale",
        re.compile(
            r"(?i)(?<![\w])[A-Z]{6}[\dLMNP-V]{2}[A-Z][\dLMNP-V]{2}[A-Z][\dLMNP-V]{3}[A-Z]"
            r"(?![\w])"
        ),
        _valid(codicefiscale),
        None,
    ),
    (
        NATIONAL_ID,
        "stdnum:br.cpf",
        re.compile(r"(?<![\w.-])\d{3}\.\d{3}\.\d{3}-\d{2}(?![\w-])"),
        _valid(cpf),
        None,
    ),
    # Bare 11 digits: CPF has two check digits and the German tax id a digit-repetition rule
    # besides its check digit, so either alone is rare enough in ordinary numbers.
    (NATIONAL_ID, "stdnum:br.cpf", re.compile(r"(?<![\w-])\d{11}(?![\w-])"), _valid(cpf), None),
    (
        NATIONAL_ID,
        "stdnum:de.idnr",
        re.compile(r"(?<![\w-])[1-9]\d{10}(?![\w-])"),
        _valid(idnr),
        None,
    ),
    (
        NATIONAL_ID,
        "stdnum:se.personnummer",
        re.compile(r"(?<![\w-])(?:\d{2})?\d{6}[-+]\d{4}(?![\w-])"),
        _valid(personnummer),
        None,
    ),
    (
        NATIONAL_ID,
        "stdnum:in.aadhaar",
        re.compile(r"(?<![\w-])[2-9]\d{3}[ -]\d{4}[ -]\d{4}(?![\w-])"),
        _valid(aadhaar),
        None,
    ),
    (
        NATIONAL_ID,
        "stdnum:in.aadhaar",
        re.compile(r"(?<![\w-])[2-9]\d{11}(?![\w-])"),
        _valid(aadhaar),
        "aadhaar",
    ),
    (
        NATIONAL_ID,
        "stdnum:in.pan",
        re.compile(r"(?<![\w])[A-Z]{3}[ABCFGHLJPT][A-Z]\d{4}[A-Z](?![\w])"),
        _valid(pan),
        None,
    ),
    (
        NATIONAL_ID,
        "stdnum:cn.ric",
        re.compile(r"(?i)(?<![\w-])\d{17}[\dX](?![\w-])"),
        _valid(ric),
        None,
    ),
    (NATIONAL_ID, "stdnum:nl.bsn", re.compile(r"(?<![\w-])\d{9}(?![\w-])"), _valid(bsn), "bsn"),
    (
        NATIONAL_ID,
        "stdnum:ca.sin",
        re.compile(r"(?<![\w-])[1-79]\d{2}(?P<s>[ -])\d{3}(?P=s)\d{3}(?![\w]|-\d)"),
        _valid(sin),
        None,
    ),
    (
        NATIONAL_ID,
        "stdnum:fr.nir",
        re.compile(r"(?<![\w-])[12] ?\d{2} ?\d{2} ?\d{2} ?\d{3} ?\d{3} ?\d{2}(?![\w-])"),
        _valid(nir),
        None,
    ),
    (
        NATIONAL_ID,
        "stdnum:kr.rrn",
        re.compile(r"(?<![\w-])\d{6}-\d{7}(?![\w-])"),
        _valid(rrn),
        None,
    ),
    (
        NATIONAL_ID,
        "stdnum:mx.curp",
        re.compile(r"(?i)(?<![\w])[A-Z]{4}\d{6}[HM][A-Z]{5}[A-Z\d]\d(?![\w])"),
        _valid(curp),
        None,
    ),
    (
        NATIONAL_ID,
        "stdnum:dk.cpr",
        re.compile(r"(?<![\w-])\d{6}-\d{4}(?![\w-])"),
        _valid(cpr),
        None,
    ),
    (
        NATIONAL_ID,
        "stdnum:fi.hetu",
        re.compile(r"(?i)(?<![\w-])\d{6}[-+A]\d{3}[0-9A-Y](?![\w-])"),
        _valid(hetu),
        None,
    ),
    (
        NATIONAL_ID,
        "stdnum:pl.pesel",
        re.compile(r"(?<![\w-])\d{11}(?![\w-])"),
        _valid(pesel),
        "pesel",
    ),
    (
        NATIONAL_ID,
        "stdnum:de.idnr",
        re.compile(r"(?<![\w-])\d{2} ?\d{3} ?\d{3} ?\d{3}(?![\w-])"),
        _valid(idnr),
        "idnr",
    ),
    (
        NATIONAL_ID,
        "stdnum:tr.tckimlik",
        re.compile(r"(?<![\w-])\d{11}(?![\w-])"),
        _valid(tckimlik),
        "tckimlik",
    ),
    (
        NATIONAL_ID,
        "stdnum:no.fodselsnummer",
        re.compile(r"(?<![\w-])\d{6} ?\d{5}(?![\w-])"),
        _valid(fodselsnummer),
        "fodselsnummer",
    ),
    (
        NATIONAL_ID,
        "stdnum:za.idnr",
        re.compile(r"(?<![\w-])\d{13}(?![\w-])"),
        _valid(za_idnr),
        "za_id",
    ),
    (
        NATIONAL_ID,
        "stdnum:fr.nir",
        re.compile(r"(?<![\w-])\d{15}(?![\w-])"),
        _valid(nir),
        "nir",
    ),
    (
        NATIONAL_ID,
        "gb.nino",
        # HMRC's published format: prefixes D F I Q U V never start one, BG GB NK KN TN NT ZZ
        # are never issued (QQ is its example prefix, and not valid either).
        re.compile(
            r"(?i)(?<![\w])(?!BG|GB|NK|KN|TN|NT|ZZ|QQ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
            r" ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![\w])"
        ),
        lambda v: True,
        None,
    ),
]


def _least_width(pattern: re.Pattern[str]) -> int:
    """The fewest characters a match of ``pattern`` consumes: the bound ``re`` computes when
    it compiles a pattern and checks before every search, read here to skip the search (and
    its Python loop) in a shorter window. 0, which skips nothing, if ``re`` cannot tell."""
    try:
        from re import _parser  # type: ignore[attr-defined]  # re's own parser, 3.11+

        return int(_parser.parse(pattern.pattern, pattern.flags).getwidth()[0])
    except Exception:  # noqa: BLE001 - no bound is always correct
        return 0


# Digits and ids sit right next to CJK text ("携帯は090-1234-5678です"): the boundaries are
# ASCII letters and digits, not every Unicode word character.
_PHONE_CAND = re.compile(_PHONE_CAND.pattern, re.ASCII)
_ID_RULES = [
    (kind, rule, re.compile(p.pattern, (p.flags & ~re.UNICODE) | re.ASCII), valid, ctx)
    for kind, rule, p, valid, ctx in _ID_RULES
]
_ID_LEAST = tuple(_least_width(pattern) for _, _, pattern, _, _ in _ID_RULES)
_PASSPORT_RE = re.compile(
    r"(?i)(?:passport|passeport|reisepass|pasaporte|passaporto|паспорт|护照|パスポート|"
    r"driver'?s licen[cs]e|driving licen[cs]e)[\s\S]{0,48}?"
    r"(?<![\w])((?=[A-Z]*\d)[A-Z0-9]{6,12})(?![\w])"
)

# -------------------------------------------------------------------------------- e-mails

_EMAIL_RE = re.compile(
    r"(?<![\w.+%-])([\w][\w.+%-]{0,63})@((?:[\w-]{1,63}\.)+[^\W\d_]{2,24})(?![\w-])"
)
_TLDS = (
    "com|net|org|edu|gov|io|co|uk|de|fr|es|it|ru|cn|jp|br|in|au|ca|nl|se|no|ch|me|info|biz|"
    "us|pl|mx|ar|kr|tw|hk|sg|za|be|at|dk|fi|ie|pt|tr|ua|cz|gr|il|nz"
)
_OBFUSCATED_EMAIL_RE = re.compile(
    r"(?i)(?<![\w])[\w][\w.+-]*(?:\s*(?:\[dot\]|\(dot\)|\{dot\}|\sdot\s)\s*[\w+-]+)*"
    r"\s*(?:\[at\]|\(at\)|\{at\}|\sat\s|\s@\s)\s*[\w-]+"
    r"(?:\s*(?:\[dot\]|\(dot\)|\{dot\}|\sdot\s|\.)\s*[\w-]+)*"
    rf"\s*(?:\[dot\]|\(dot\)|\{{dot\}}|\sdot\s|\.)\s*(?:{_TLDS})(?![\w])"
)


def _email_hits(
    text: str, digests: frozenset[str], lowered: str | None = None
) -> Iterator[tuple[int, int, str]]:
    if "@" in text:
        for m in _EMAIL_RE.finditer(text):
            local, domain = m.group(1), m.group(2)
            if _reserved_domain(domain) or local.lower() in _ROLE_MAILBOXES:
                continue
            yield m.start(), m.end(), "email"
    if lowered is None:
        lowered = text.lower()
    if "dot" in lowered or "[at]" in lowered or "(at)" in lowered or " @ " in text:
        for m in _OBFUSCATED_EMAIL_RE.finditer(text):
            spelled = m.group()
            if not re.search(r"(?i)\[at\]|\(at\)|\{at\}|\s@\s|dot", spelled):
                continue  # a plain "x at y.com" is prose; the spelled-out forms are not
            domain = re.sub(r"(?i)\s*(?:\[dot\]|\(dot\)|\{dot\}|\sdot\s)\s*", ".", spelled)
            domain = re.split(r"(?i)\[at\]|\(at\)|\{at\}|\sat\s|\s@\s", domain)[-1].strip()
            if _reserved_domain(domain):
                continue
            yield m.start(), m.end(), "email:spelled"


# -------------------------------------------------------------------------------- secrets

_PREFIXED_SECRET_RE = re.compile(
    r"(?<![A-Za-z0-9_\-])(?:"
    r"sk-(?:proj-|ant-(?:api\d\d-)?|live-|test-|svcacct-|admin-)?[A-Za-z0-9_\-]{20,}"
    r"|[sr]k_(?:live|test)_[0-9A-Za-z]{16,}"
    r"|(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}|glpat-[A-Za-z0-9_\-]{20,}"
    r"|xox[abprse]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_\-]{35}"
    r"|hf_[A-Za-z0-9]{30,}|gsk_[A-Za-z0-9]{30,}|SG\.[\w-]{16,}\.[\w-]{16,}"
    r"|npm_[A-Za-z0-9]{36}|pypi-[A-Za-z0-9_\-]{50,}|shpat_[a-f0-9]{32}|dop_v1_[a-f0-9]{64}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
    r"|https://hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+"
    r"|https://discord(?:app)?\.com/api/webhooks/\d+/[\w-]+"
    r")(?![A-Za-z0-9_\-])"
)
# The whole block when it is complete, so a surrogate block is known by its digest; the header
# alone otherwise (a key cut off mid-body is still a key).
_PEM_RE = re.compile(
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY(?: BLOCK)?-----"
    r"(?:[A-Za-z0-9+/=\s\\]{1,8192}?-----END \1PRIVATE KEY(?: BLOCK)?-----)?"
)
_KEYWORD_SECRET_RE = re.compile(
    r"(?i)(?:api[_ -]?key|apikey|secret(?:[_-]?key)?|access[_-]?key(?:[_-]?id)?|auth[_-]?token"
    r"|access[_-]?token|refresh[_-]?token|client[_-]?secret|private[_-]?key|token"
    r"|aws_secret_access_key|x-api-key|authorization"
    r"|(?:account|shared[_-]?access|storage|master|signing|encryption)[_-]?key)"
    r"[\"']?\s*(?:[:=]|=>|\bis\b)\s*[\"']?(?:Bearer\s+|Basic\s+|token\s+)?"
    r"(?P<v>[A-Za-z0-9+/_\-.~=]{16,})"
)
_BEARER_RE = re.compile(r"(?i)\bbearer\s+(?P<v>[A-Za-z0-9+/_\-.~=]{20,})")
_PASSWORD_RE = re.compile(
    r"(?i)(?:password|passwd|\bpwd\b|passphrase|passcode|mot de passe|contraseña|passwort"
    r"|senha|пароль|密码|パスワード)"
    r"[\"']?\s*(?:[:=]|=>|\bis\b|\bwas\b|\bist\b|\bes\b|\best\b|是|：)\s*[\"'`]?"
    r"(?P<v>[^\s\"'`,;]{6,64})"
)
_URL_USERINFO_RE = re.compile(r"://(?P<u>[^/\s:@\"'<>]+):(?P<v>[^/\s@\"'<>]+)@")
_URL_TOKEN_RE = re.compile(
    r"[?&;](?i:access_token|refresh_token|id_token|token|api_key|apikey|key|secret"
    r"|client_secret|password|passwd|sig|signature|auth|session|sessionid|sid)"
    r"=(?P<v>[^&#\s\"'<>]+)"
)
_PLACEHOLDER_RE = re.compile(
    r"(?i)^(?:[x*._#-]+|your[\w-]*|my[\w-]*|<.*>|\{.*\}|\$\{?.*|%\(?.*|\[.*\]|.*example.*|"
    r".*placeholder.*|changeme|password\d*|pass(?:word)?|secret|redacted.*|dummy.*|fake.*"
    r"|test[\w-]*|none|null|true|false|undefined|\*+)$"
)
_CODE_VALUE_RE = re.compile(r"[()\[\]{}$%<>]|^\w+\.\w+|^(?:self|os|env|config|settings)\b")


def _looks_random(value: str, minimum: float) -> bool:
    has_digit = any(c.isdigit() for c in value)
    has_alpha = any(c.isalpha() for c in value)
    return has_digit and has_alpha and _entropy(value) >= minimum


def _is_hashlike(value: str) -> bool:
    # Content hashes and uuids are everywhere in code and logs and identify no one.
    v = value.strip("\"'")
    return bool(
        re.fullmatch(r"(?i)[0-9a-f]{32}|[0-9a-f]{40}|[0-9a-f]{56}|[0-9a-f]{64}|[0-9a-f]{128}", v)
        or re.fullmatch(r"(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", v)
        or re.fullmatch(r"(?i)(?:sha\d+|md5)[-:=][A-Za-z0-9+/=]+", v)
    )


_SECRET_CUES = ("key", "secret", "token", "auth", "bearer")  # "key" covers AccountKey= too
_PASSWORD_CUES = ("pass", "pwd", "mot de", "contraseña", "senha", "пароль", "密码", "パスワード")


def _secret_hits(
    text: str, lowered: str, cues: int | None = None
) -> Iterator[tuple[int, int, str]]:
    # ``cues``: the bit mask of _cue_sets(lowered), when the caller has it already.
    if cues is None:
        cues = _cue_sets(lowered)
    for m in _PREFIXED_SECRET_RE.finditer(text) if _PREFIXES.find_matches_as_indexes(text) else ():
        body = m.group().split("_", 1)[-1] if "_" in m.group()[:12] else m.group()[3:]
        # Keys are random: a digit or mixed case. CSS classes and slugs ("sk-toggleable__")
        # share the prefixes but not that.
        if any(c.isdigit() for c in body) or (body.lower() != body and body.upper() != body):
            yield m.start(), m.end(), "secret:prefix"
    if "-----BEGIN" in text:
        for m in _PEM_RE.finditer(text):
            yield m.start(), m.end(), "secret:pem"
    keyword = bool(cues & _SECRET_CUE_BIT)
    for m in _KEYWORD_SECRET_RE.finditer(text) if keyword else ():
        v = m.group("v").rstrip(".")
        if _is_hashlike(v) or _PLACEHOLDER_RE.match(v) or not _looks_random(v, 3.5):
            continue
        yield m.start("v"), m.start("v") + len(v), "secret:keyword"
    for m in _BEARER_RE.finditer(text) if "bearer" in lowered else ():
        v = m.group("v")
        if not _PLACEHOLDER_RE.match(v) and _looks_random(v, 3.5):
            yield m.start("v"), m.end("v"), "secret:bearer"
    password = bool(cues & _PASSWORD_CUE_BIT)
    for m in _PASSWORD_RE.finditer(text) if password else ():
        v = m.group("v").rstrip(".!)")
        if (
            len(v) < 6
            or _PLACEHOLDER_RE.match(v)
            or _CODE_VALUE_RE.search(v)
            or re.fullmatch(r"[a-z_]+|[A-Z_]+|[a-z]+(?:[A-Z][a-z]*)+", v)
        ):
            continue
        yield m.start("v"), m.start("v") + len(v), "secret:password"
    if "://" in text:
        for m in _URL_USERINFO_RE.finditer(text):
            v = m.group("v")
            if len(v) >= 6 and not _PLACEHOLDER_RE.match(v) and not _CODE_VALUE_RE.search(v):
                yield m.start("v"), m.end("v"), "url:userinfo"
    if "=" in text:
        for m in _URL_TOKEN_RE.finditer(text):
            v = m.group("v")
            if len(v) >= 12 and not _PLACEHOLDER_RE.match(v) and _looks_random(v, 3.0):
                yield m.start("v"), m.end("v"), "url:token"


# ------------------------------------------------------------------------------ IP addresses

_IPV4_RE = re.compile(r"(?<![\w.:/-])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)")
_IPV6_RE = re.compile(
    r"(?<![\w:.])(?:[0-9A-Fa-f]{1,4}:){2,7}:?[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{1,4})*(?![\w:])"
)
_VERSION_CONTEXT = re.compile(
    r"(?i)(?:version|release|\bv|==|>=|<=|~=|!=|python|@)[\w\s=:\"']{0,6}$"
)


def _ip_hits(text: str) -> Iterator[tuple[int, int, str]]:
    if text.count(".") >= 3:
        for m in _IPV4_RE.finditer(text):
            try:
                addr = ipaddress.IPv4Address(m.group())
            except ValueError:
                continue
            if not addr.is_global or m.group() in _PUBLIC_RESOLVERS:
                continue
            if any(addr in net for net in _DOC_NETS[:3]):
                continue
            if _VERSION_CONTEXT.search(text[max(0, m.start() - 20) : m.start()]):
                continue
            yield m.start(), m.end(), IPV4
    if text.count(":") >= 3:
        for m in _IPV6_RE.finditer(text):
            value = m.group()
            if value.count(":") < 3 or not any(c.isdigit() for c in value):
                continue
            try:
                addr = ipaddress.IPv6Address(value)
            except ValueError:
                continue
            if addr.is_global and addr not in _DOC_NETS[3]:
                yield m.start(), m.end(), IPV6


# ------------------------------------------------------------------------------------- names

_INTRO_RE = re.compile(
    r"(?i)(?:\bmy name is|\bmy name's|\bmy full name is|\bje m'appelle|\bmon nom est"
    r"|\bich heiße|\bich heisse|\bmein name ist|\bme llamo|\bmi nombre es|\bmi chiamo"
    r"|\bmeu nome é|\bmeu nome e|меня зовут|моё имя|мое имя|मेरा नाम|اسمي)"
    r"[\s:,]+(?P<n>[^\W\d_][^\W\d_'’.-]*(?:[ -][^\W\d_][^\W\d_'’.-]*)?)"
    r"|(?:我叫|我的名字是|我的名字叫|私の名前は)\s*(?P<c>[\u4e00-\u9fff\u30a0-\u30ff]{2,4})"
)
_NOT_NAMES = frozenset(
    {"not", "a", "an", "the", "and", "is", "was", "of", "in", "on", "for", "to", "here",
     "there", "this", "that", "it", "also", "just", "actually", "no", "none", "unknown",
     "user", "admin", "root", "irrelevant", "private"}
)  # fmt: skip


def _name_hits(text: str, digests: frozenset[str]) -> Iterator[tuple[int, int, str]]:
    for m in _INTRO_RE.finditer(text):
        group = "n" if m.group("n") else "c"
        value = m.group(group)
        tokens = [t for t in re.split(r"[ -]", value) if t]
        if group == "n" and tokens[0].lower() in _NOT_NAMES:
            continue
        if group == "n":
            tokens = [t for t in tokens if t.lower() not in _NOT_NAMES]
        if all(surrogate_digest(t) in digests for t in tokens) or surrogate_digest(value) in (
            digests
        ):
            continue
        yield m.start(group), m.end(group), "intro"


# ------------------------------------------------------------------------------- the scanner


def scan_text(text: str, digests: frozenset[str]) -> list[tuple[str, str]]:
    """(kind, rule) of every suspected leak in one string; surrogates are not leaks."""
    out: list[tuple[str, str]] = []

    def keep(kind: str, spans: Iterable[tuple[int, int, str]]) -> None:
        for start, end, rule in spans:
            if not _surrogate(text[start:end], text, start, end, digests):
                out.append((kind, rule))

    has_digit = _has_digit(text)
    lowered = text.lower()
    cues = _cue_sets(lowered)
    if has_digit:
        phones = list(_phone_hits(text))
        if phones:
            keep(PHONE, phones)
        windows = _digit_windows(text)
        size = len(text)
        longest = max((endpos - pos for pos, endpos in windows), default=0)
        whole = [(0, size)]
        for kind, rule, pattern, valid, context, least, letters in _ID_RUNS:
            if least > (size if letters else longest):
                continue  # no window is as long as the rule's shortest match
            # Rules mostly of letters run on the whole text; the others only near digit runs.
            spans_in = whole if letters else windows
            spans = []
            for pos, endpos in spans_in:
                if endpos - pos < least:
                    continue  # shorter than any match of the rule: re would find nothing
                for m in pattern.finditer(text, pos, endpos):
                    if context is not None and not _ID_WORDS[context].search(
                        _before(text, m.start())
                    ):
                        continue
                    if valid(m.group()):
                        spans.append((m.start(), m.end(), rule))
            if spans:
                keep(kind, spans)
        if cues & _PASSPORT_CUE_BIT:
            keep(
                PASSPORT,
                (
                    (m.start(1), m.end(1), "keyword")
                    for m in _PASSPORT_RE.finditer(text)
                    if any(c.isdigit() for c in m.group(1))
                ),
            )
        ips = list(_ip_hits(text))
        if ips:
            keep(IPV4, ((s, e, "ipaddress") for s, e, k in ips if k == IPV4))
            keep(IPV6, ((s, e, "ipaddress") for s, e, k in ips if k == IPV6))
    emails = list(_email_hits(text, digests, lowered))
    if emails:
        keep(EMAIL, emails)
    secrets = list(_secret_hits(text, lowered, cues))
    if secrets:
        keep(SECRET, (h for h in secrets if not h[2].startswith("url:")))
        keep(URL_TOKEN, (h for h in secrets if h[2].startswith("url:")))
    if cues & _INTRO_CUE_BIT:
        keep(PERSON_NAME, _name_hits(text, digests))
    if "|" in text and "---" in text:
        keep(PERSON_NAME, _table_name_hits(text, digests))
    return out


_NAME_HEADERS = frozenset(
    {"name", "full name", "customer", "customer name", "client", "client name", "employee",
     "patient", "contact", "contact name", "nombre", "nom", "nome", "имя", "фио", "名前",
     "姓名", "名字", "이름", "الاسم", "नाम"}
)  # fmt: skip
_NAME_CELL = re.compile(r"[^\W\d_]{2,}(?:[ '’-][^\W\d_]{2,}){0,3}")
_TABLE_SEPARATOR = re.compile(r"\s*\|?\s*:?-{3,}")


def _table_name_hits(text: str, digests: frozenset[str]) -> Iterator[tuple[int, int, str]]:
    # A markdown table with a Name column lists people one per row, whatever their case.
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    column = None
    for n, line in enumerate(lines):
        stripped = line.strip()
        if not stripped.startswith("|"):
            column = None
            continue
        cells = stripped.strip("|").split("|")
        if n + 1 < len(lines) and _TABLE_SEPARATOR.match(lines[n + 1]):
            names = [c.strip().lower() for c in cells]
            column = next((i for i, c in enumerate(names) if c in _NAME_HEADERS), None)
            continue
        if column is None or column >= len(cells) or _TABLE_SEPARATOR.match(line):
            continue
        value = cells[column].strip()
        if not _NAME_CELL.fullmatch(value):
            continue
        tokens = re.split(r"[ '’-]", value)
        if all(surrogate_digest(t) in digests for t in tokens if t) or (
            surrogate_digest(value) in digests
        ):
            continue
        start = offsets[n] + line.index(value)
        yield start, start + len(value), "table_column"


_LETTER_RULES = frozenset(
    {"stdnum:iban", "stdnum:es.nie", "stdnum:it.codicefiscale", "stdnum:in.pan",
     "stdnum:mx.curp", "gb.nino"}
)  # fmt: skip
_DIGIT_CLUSTER = re.compile(r"\d(?:[\d .\-+/]{0,40}\d)?")
_PASSPORT_CUES = ("passport", "passeport", "reisepass", "pasaporte", "passaporto", "паспорт",
                  "护照", "パスポート", "licen")  # fmt: skip
_INTRO_CUES = ("my name", "my full name", "appelle", "nom est", "heiße", "heisse", "name ist",
               "llamo", "nombre es", "chiamo", "nome é", "nome e", "зовут", "имя", "नाम",
               "اسمي", "我叫", "名字", "名前")  # fmt: skip


# One Aho-Corasick automaton (ahocorasick-rs) over the cue words of every context rule: one
# pass over the lower-cased text tells which rules may apply, where ``any(w in lowered for w
# in cues)`` per rule cost more than the rules' own scans on ordinary chat turns.
_CUE_SETS = (_SECRET_CUES, _PASSWORD_CUES, _PASSPORT_CUES, _INTRO_CUES)
_SECRET_CUE_BIT, _PASSWORD_CUE_BIT, _PASSPORT_CUE_BIT, _INTRO_CUE_BIT = 1, 2, 4, 8
_CUE_WORDS: dict[str, int] = {}
for _bit, _words in enumerate(_CUE_SETS):
    for _word in _words:
        _CUE_WORDS[_word] = _CUE_WORDS.get(_word, 0) | 1 << _bit
_CUE_AUTOMATON = ahocorasick_rs.AhoCorasick(list(_CUE_WORDS))
_CUE_MASKS = tuple(_CUE_WORDS.values())
# Every alternative of _PREFIXED_SECRET_RE begins with one of these (case-sensitive, as it is).
_PREFIXES = ahocorasick_rs.AhoCorasick(
    ["sk-", "sk_", "rk_", "AKIA", "ASIA", "AGPA", "AIDA", "AROA", "ANPA", "ghp_", "gho_",
     "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xox", "AIza", "hf_", "gsk_", "SG.",
     "npm_", "pypi-", "shpat_", "dop_v1_", "eyJ", "https://hooks.slack.com/services/T",
     "https://discord"]
)  # fmt: skip


def _has_digit(text: str) -> bool:
    # _DIGIT_RE.search(text): ten ``in`` tests in an ASCII text, several times faster.
    if text.isascii():
        return (
            "0" in text or "1" in text or "2" in text or "3" in text or "4" in text
            or "5" in text or "6" in text or "7" in text or "8" in text or "9" in text
        )  # fmt: skip
    return _DIGIT_RE.search(text) is not None


def _cue_sets(lowered: str) -> int:
    """Bit mask of the cue sets (_SECRET_CUE_BIT...) with a word in ``lowered``."""
    found = 0
    for i, _, _ in _CUE_AUTOMATON.find_matches_as_indexes(lowered, True):
        found |= _CUE_MASKS[i]
    return found


# _ID_RULES with each rule's least width and whether it runs on the whole text.
_ID_RUNS = tuple(
    (kind, rule, pattern, valid, context, least, rule in _LETTER_RULES)
    for (kind, rule, pattern, valid, context), least in zip(_ID_RULES, _ID_LEAST, strict=True)
)


def _digit_windows(text: str) -> list[tuple[int, int]]:
    """Merged windows around runs holding four digits or more: where a numeric id can be."""
    out: list[tuple[int, int]] = []
    for m in _DIGIT_CLUSTER.finditer(text):
        if sum(c.isdigit() for c in m.group()) < 4:
            continue
        start, end = max(0, m.start() - 2), min(len(text), m.end() + 3)
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


_SPLIT_TAIL = re.compile(r"(\d[\d \-.]{2,22}\d)\W*$")
_SPLIT_HEAD = re.compile(r"^\W*(\d[\d \-.]{2,22}\d)")


def _split_card_hits(
    conversation_id: str, messages: list[dict[str, Any]], digests: frozenset[str]
) -> list[Hit]:
    # A card number typed in two turns ("4111 1111" / "1111 1111") is whole in neither: join
    # the digits ending one message with those starting the next message of the same role.
    hits = []
    for i, msg in enumerate(messages):
        a = msg.get("content") if isinstance(msg, dict) else None
        # The tail holds digits: the digit test skips the search in a turn without one.
        if not isinstance(a, str) or not _has_digit(a) or not (tail := _SPLIT_TAIL.search(a)):
            continue
        j = next(
            (
                k
                for k in range(i + 1, len(messages))
                if isinstance(messages[k], dict) and messages[k].get("role") == msg.get("role")
            ),
            None,
        )
        b = messages[j].get("content") if j is not None else None
        if not isinstance(b, str) or not (head := _SPLIT_HEAD.search(b)):
            continue
        first, second = digits_of(tail.group(1)), digits_of(head.group(1))
        joined = first + second
        if not _card_ok(joined) or {surrogate_digest(first), surrogate_digest(second)} & digests:
            continue
        if surrogate_digest(joined) not in digests:
            hits.append(
                Hit(
                    conversation_id,
                    i,
                    PAYMENT_CARD,
                    path=f"messages[{i}].content+messages[{j}].content",
                    rule="luhn+iin:split",
                )
            )
    return hits


def scan_messages(
    conversation_id: str, messages: list[dict[str, Any]], digests: Iterable[str]
) -> list[Hit]:
    """Every suspected leak in one de-identified conversation (``digests``: the row's
    surrogate digests), located by message and field path.
    """
    known = frozenset(digests)
    hits: list[Hit] = []
    for index, path, text in _fields(messages):
        for kind, rule in scan_text(text, known):
            hits.append(Hit(conversation_id, index, kind, path=path, rule=rule))
    hits.extend(_split_card_hits(conversation_id, messages, known))
    return _dedupe(hits)


def _dedupe(hits: list[Hit]) -> list[Hit]:
    # The raw JSON text and its decoded strings are both scanned: report a leak once, at the
    # most precise path.
    precise = {(h.message_index, h.kind, h.rule) for h in hits if ".$" in h.path}
    seen: set[tuple[int, str, str, str]] = set()
    out = []
    for h in hits:
        if (
            ".$" not in h.path
            and (h.message_index, h.kind, h.rule) in precise
            and (h.path.endswith((".arguments", ".content")))
        ):
            continue
        key = (h.message_index, h.kind, h.rule, h.path)
        if key not in seen:
            seen.add(key)
            out.append(h)
    return out


def scan_row_fields(conversation_id: str, fields: dict[str, str | None]) -> list[Hit]:
    """Suspected leaks in a row's short fields (id, source, model), located by column name."""
    hits = []
    for name, value in fields.items():
        if isinstance(value, str) and value:
            hits.extend(
                Hit(conversation_id, -1, kind, path=name, rule=rule)
                for kind, rule in scan_text(value, frozenset())
            )
    return hits


def describe(hits: list[Hit], limit: int = 12) -> str:
    """Types and locations of ``hits`` for a quarantine row; never their text."""
    parts = [f"{h.kind}({h.rule}) at {h.path}" for h in hits[:limit]]
    more = f"; +{len(hits) - limit} more" if len(hits) > limit else ""
    return "residual PII: " + "; ".join(parts) + more


def scan_rows(rows: Iterable[dict[str, Any]]) -> tuple[int, list[Hit]]:
    """Scan stored ``sampled_conversations`` rows; returns (rows scanned, hits)."""
    hits: list[Hit] = []
    n = 0
    for row in rows:
        n += 1
        try:
            messages = json.loads(row["messages_json"])
            raw = row.get("surrogate_digests")
            digests = json.loads(raw) if isinstance(raw, str) and raw else []
        except (TypeError, ValueError):
            hits.append(Hit(str(row.get("conversation_id")), -1, "unreadable_row", "check"))
            continue
        hits.extend(scan_messages(str(row["conversation_id"]), messages, digests))
    return n, hits


def summarize(hits: list[Hit]) -> dict[str, int]:
    """Hits counted by PII type."""
    return dict(sorted(Counter(h.kind for h in hits).items()))

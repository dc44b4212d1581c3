"""De-identification: identifying text replaced by consistent synthetic surrogates.

Every text a conversation carries (string contents, text parts, tool-call arguments and tool
results) is scanned for emails, phone numbers, payment cards, US social security numbers, IPv4
and IPv6 addresses, street addresses, person names in context, secrets (API keys) and token
values in URLs. Each found span is replaced by a surrogate from Faker, seeded from
``(salt, conversation, type, original)``: the same original gets the same surrogate throughout
one conversation, and unrelated surrogates elsewhere.

Surrogates are chosen so a later residue check can tell them from leaks: card numbers fail
the Luhn check, SSNs use the never-issued area 000, US phones use the fictional 555-01xx
range, IPs come from the documentation ranges, emails use example.com/.org/.net, secrets and
URL tokens carry an EXAMPLE/redacted marker.

Detection works in two passes over the whole conversation: the first finds spans by pattern
and context ("my name is ...", "Thanks, ..."), the second replaces every other standalone
occurrence of a name found in context, so a name introduced once is not left bare later
(in an assistant reply addressing the user, say). Spans are resolved by priority and never
overlap, and replacement happens once, so a surrogate is never scanned again.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import ipaddress
import json
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from faker import Faker
from stdnum import iban as _iban

from depsim_assets.traffic import detectors

DEID_VERSION = "deid-3"

EMAIL = "email"
PHONE = "phone"
PAYMENT_CARD = "payment_card"
SSN = "ssn"
NATIONAL_ID = "national_id"
IPV4 = "ipv4"
IPV6 = "ipv6"
STREET_ADDRESS = "street_address"
PERSON_NAME = "person_name"
PARTICIPANT_NAME = "participant_name"
SECRET = "secret"
URL_TOKEN = "url_token"
IBAN = detectors.IBAN
PASSPORT = detectors.PASSPORT

PII_TYPES = (
    EMAIL,
    PHONE,
    PAYMENT_CARD,
    SSN,
    NATIONAL_ID,
    IPV4,
    IPV6,
    STREET_ADDRESS,
    PERSON_NAME,
    PARTICIPANT_NAME,
    SECRET,
    URL_TOKEN,
    IBAN,
    PASSPORT,
)

SURROGATE_EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
SURROGATE_IPV4_NETS = ("192.0.2", "198.51.100", "203.0.113")
SURROGATE_IPV6_NET = ipaddress.ip_network("2001:db8::/32")
_DOC_IPV4_NETS = tuple(ipaddress.ip_network(f"{n}.0/24") for n in SURROGATE_IPV4_NETS)

# --- patterns ---------------------------------------------------------------------------------

_SECRET_RE = re.compile(
    r"(?<![\w-])(?:"
    r"sk-(?:proj-|live-|test-)?[A-Za-z0-9_\-]{20,}"
    r"|AKIA[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_\-]{35}"
    r"|[sr]k_(?:live|test)_[0-9A-Za-z]{16,}"
    r"|github_pat_[A-Za-z0-9_]{22,}"
    r"|glpat-[A-Za-z0-9_\-]{20,}"
    r"|eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"
    r")(?![\w-])"
)
_SECRET_PREFIX_RE = re.compile(
    r"^(?:sk-(?:proj-|live-|test-|ant-)?|AKIA|gh[pousr]_|xox[abprs]-|AIza|[sr]k_(?:live|test)_"
    r"|github_pat_|glpat-)"
)
_PEM_RE = re.compile(
    r"-----BEGIN (?P<k>(?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)?-----[\s\S]{0,20000}?"
    r"-----END (?P=k)PRIVATE KEY( BLOCK)?-----"
)
# user:password@ in a URL: the whole userinfo is a credential.
_URL_USERINFO_RE = re.compile(r"(?<=://)[^/\s:@\"'<>]+:[^/\s@\"'<>]+(?=@)")
# UK National Insurance number (HMRC's published format; prefixes D F I Q U V never start one).
_NINO_RE = re.compile(
    r"(?<![A-Za-z0-9])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]"
    r"(?P<s>[ ]?)\d{2}(?P=s)\d{2}(?P=s)\d{2}(?P=s)[A-D](?![A-Za-z0-9])"
)
# Canadian Social Insurance Number: 3-3-3 digits, Luhn-valid, never starting with 0 or 8.
# Not after "+CC " either: "+61 412 345 678" is a phone whose tail reads like a SIN.
_SIN_RE = re.compile(
    r"(?<![\w-])(?<!\+\d )(?<!\+\d\d )(?<!\+\d\d\d )"
    r"[1-79]\d{2}(?P<s>[ -])\d{3}(?P=s)\d{3}(?![\w]|-\d)"
)
_URL_TOKEN_RE = re.compile(
    r"(?<=[?&;])(?i:access_token|refresh_token|id_token|token|api_key|apikey|key|secret"
    r"|client_secret|password|passwd|pwd|sig|signature|auth|session|sessionid|sid|code)"
    r"=(?P<v>[^&#\s\"'<>]+)"
)
_EMAIL_RE = re.compile(
    r"(?<![\w.+%-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![\w-])"
)
# Cards in the usual groupings (4-4-4-4[-3], Amex 4-6-5) with one consistent separator, or
# 13-19 digits run together; Luhn decides.
_CARD_RE = re.compile(
    r"(?<![\d+.-])(?:"
    r"\d{4}(?P<s1>[ -]?)\d{4}(?P=s1)\d{4}(?P=s1)\d{4}(?:(?P=s1)\d{1,3})?"
    r"|\d{4}(?P<s2>[ -]?)\d{6}(?P=s2)\d{5}"
    r"|\d{13,19}"
    r")(?![\d]|-\d)"
)
_SSN_RE = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w]|-\d)")
_IPV4_RE = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?![\w]|\.\d)"
)
# A loose candidate; ipaddress decides what is an IPv6 address.
_IPV6_RE = re.compile(
    r"(?<![\w:.])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{2,39}"
    r"(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?(?![\w:]|\.\d)"
)
_PHONE_US_RE = re.compile(
    r"(?<![\w+.-])(?:\+?1[ .\-]?)?(?:\(\d{3}\)[ .\-]?|\d{3}[ .\-])\d{3}[ .\-]\d{4}(?![\w]|-\d)"
)
_PHONE_INTL_RE = re.compile(r"(?<![\w+])\+\d{1,3}(?:[ .\-]?\(?\d{1,5}\)?){1,6}(?![\w]|-\d)")
# Street suffixes: the common ones of USPS Publication 28 (and a few British ones), full
# words and abbreviations.
_SUFFIX_WORDS = """
    Street Streets Avenue Road Roads Boulevard Lane Drive Drives Court Courts Way Ways Place
    Terrace Circle Circles Parkway Parkways Highway Square Squares Trail Crescent Close Row
    Alley Plaza Branch Bridge Brook Brooks Burg Burgs Bypass Camp Canyon Cape Causeway Center
    Centers Cliff Cliffs Club Common Corner Corners Course Cove Coves Creek Crest Crossing
    Crossroad Curve Dale Dam Divide Estate Estates Expressway Extension Extensions Fall Falls
    Ferry Field Fields Flat Flats Ford Fords Forest Forge Forges Fork Forks Fort Freeway Garden
    Gardens Gateway Glen Glens Green Greens Grove Groves Harbor Harbors Haven Heights Hill
    Hills Hollow Inlet Island Islands Isle Junction Junctions Key Keys Knoll Knolls Lake Lakes
    Land Landing Light Lights Loaf Lock Locks Lodge Loop Mall Manor Manors Meadow Meadows Mews
    Mill Mills Mission Motorway Mount Mountain Mountains Neck Orchard Oval Overpass Park Parks
    Pass Passage Path Pike Pine Pines Plain Plains Point Points Port Ports Prairie Radial Ramp
    Ranch Rapid Rapids Rest Ridge Ridges River Route Rue Run Shoal Shoals Shore Shores Skyway
    Spring Springs Spur Spurs Station Stravenue Stream Summit Trace Track Trafficway Tunnel
    Turnpike Underpass Union Unions Valley Valleys Via Viaduct View Views Village Villages
    Ville Vista Walk Walks Wall Well Wells Gate Gardens Wynd
    St Ave Rd Blvd Ln Dr Ct Pl Ter Cir Pkwy Hwy Sq Trl Cres Expy Fwy Ctr Mt Pt Rte Tpke Xing
""".split()
_STREET_SUFFIX = "(?:" + "|".join(sorted(set(_SUFFIX_WORDS), key=len, reverse=True)) + ")"
_ADDRESS_RE = re.compile(
    r"(?<![\w.,-])\d{1,6}[A-Za-z]?[ \t]+(?:(?:N|S|E|W|North|South|East|West)\.?[ \t]+)?"
    r"(?:(?:\d{1,3}(?:st|nd|rd|th)|[A-Z][a-z]+)[ \t]+){1,3}"
    rf"{_STREET_SUFFIX}(?![\w])"
    r"(?:,?[ \t]+(?:Apt|Apartment|Suite|Ste|Unit|#)\.?[ \t]*#?[A-Za-z0-9-]+)?"
)

# Latin-1 letters plus Latin Extended-A (Ł, Ś, Ž, Ő...), which Central European names use.
_EXT_A = [chr(c) for c in range(0x100, 0x180)]
_UP = "A-ZÀ-ÖØ-Þ" + "".join(c for c in _EXT_A if c.isupper())
_LO = "a-zß-öø-ÿ" + "".join(c for c in _EXT_A if c.islower())
_TOKEN = rf"(?:[{_UP}][{_LO}]?['’])?[{_UP}][{_LO}]+(?:[{_UP}][{_LO}]+)?(?:-[{_UP}][{_LO}]+)?"
# Lower-case particles inside a full name ("Davi da Cunha", "Aimée van Hagen").
_PARTICLE = r"(?:da|de|del|della|der|di|do|dos|das|du|la|le|van|von|ten|ter|y|bin|al)"
_NAMES = rf"{_TOKEN}(?:[ \t]+(?:{_PARTICLE}[ \t]+){{0,2}}{_TOKEN}){{0,2}}"
_TOKEN_RE = re.compile(_TOKEN)
_DIGIT_RE = re.compile(r"\d")
_NAMES_FULL_RE = re.compile(_NAMES)

_RELATIONS = (
    r"wife|husband|partner|spouse|son|daughter|kid|child|mom|mum|mother|dad|father|brother"
    r"|sister|friend|best\s+friend|boss|manager|supervisor|colleague|coworker|co-worker"
    r"|neighbou?r|landlord|landlady|doctor|therapist|teacher|professor|roommate|flatmate"
    r"|boyfriend|girlfriend|fianc[ée]e?|client|customer|tenant|uncle|aunt|cousin|grandma"
    r"|grandpa|grandmother|grandfather|nephew|niece|employee|student|coach|lawyer|dentist"
)
_NAME_KEYS = (
    r"name|full[_ ]?name|first[_ ]?name|last[_ ]?name|given[_ ]?name|family[_ ]?name"
    r"|customer(?:[_ ]?name)?|contact(?:[_ ]?name)?|recipient(?:[_ ]?name)?"
    r"|sender(?:[_ ]?name)?|patient(?:[_ ]?name)?|employee(?:[_ ]?name)?|author|signed|attendee"
    r"|owner|to[_ ]name|from[_ ]name"
)
_NAME_KEY_RE = re.compile(rf"(?i:{_NAME_KEYS})")
_ADDRESS_KEY_RE = re.compile(
    r"(?i:(?:home|shipping|billing|mailing|postal|street|delivery)?[_ ]?address(?:[_ ]?(?:line)?"
    r"[_ ]?1)?|street|addr|address1)"
)

# (pattern, whether every token is a family name)
_NAME_PATTERNS: tuple[tuple[re.Pattern[str], bool], ...] = (
    (
        re.compile(
            r"(?i:\bmy\s+name\s+is|\bmy\s+name's|\bname's|\bi\s+am\s+called|\bi'm\s+called"
            r"|\bcall\s+me|\bi\s+go\s+by|\bsigned,?)"
            rf"[ \t]+(?P<n>{_NAMES})"
        ),
        False,
    ),
    (
        re.compile(
            r"(?:(?m:^)[ \t]*|(?<=[.!?])\s+|(?i:\b(?:hi|hello|hey|greetings))[,!.]?[ \t]+)"
            rf"(?i:i'm|i’m|i\s+am|this\s+is|it's|it’s)[ \t]+(?P<n>{_NAMES})"
        ),
        False,
    ),
    (re.compile(rf"(?<![\w])(?i:dear|hi|hello|hey)[ \t]+(?P<n>{_NAMES})[ \t]*[,!:\n]"), False),
    (
        re.compile(
            r"(?m)(?<![\w])(?i:thanks|thank\s+you|thx|cheers|regards|best|best\s+wishes"
            r"|kind\s+regards|warm\s+regards|warmly|sincerely|yours|yours\s+truly|love"
            r"|take\s+care|all\s+the\s+best)"
            rf"[ \t]*(?:[,!.][ \t]*\n?|\n)[ \t]*(?P<n>{_NAMES})[ \t]*[.!]?[ \t]*$"
        ),
        False,
    ),
    (re.compile(rf"(?m)(?:^|(?<=\s))(?:—|–|--|~)[ \t]*(?P<n>{_NAMES})[ \t]*$"), False),
    (
        re.compile(
            rf"(?i:\b(?:my|our|his|her|their|your)\s+(?:{_RELATIONS}))[ \t]*,?[ \t]+"
            rf"(?P<n>{_NAMES})"
        ),
        False,
    ),
    (
        re.compile(
            rf"(?m)(?:^|(?<=[\s{{,\"']))[\"']?(?i:{_NAME_KEYS})[\"']?[ \t]*[:=][ \t]*[\"']?"
            rf"(?P<n>{_NAMES})"
        ),
        False,
    ),
    (
        re.compile(rf"(?<![\w])(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame)\.?[ \t]+(?P<n>{_NAMES})"),
        True,
    ),
)

# The "key: value" pattern of _NAME_PATTERNS: its name must be the whole value.
_KEY_NAME_PATTERN = _NAME_PATTERNS[6][0]
_VALUE_END_RE = re.compile(r"[ \t]*(?:$|[\n\r\"',;}\])|])")

# Substrings of every word of _RELATIONS (the pattern after "my/our/his/her ...").
_RELATION_STEMS = (
    "wife", "husband", "partner", "spouse", "son", "daughter", "kid", "child", "mom", "mum",
    "dad", "father", "brother", "sister", "friend", "boss", "manager", "supervisor",
    "colleague", "worker", "neighbo", "landl", "doctor", "therapist", "teacher", "professor",
    "mate", "fianc", "client", "customer", "tenant", "uncle", "aunt", "cousin", "grand",
    "nephew", "niece", "employee", "student", "coach", "lawyer", "dentist", "mother",
)  # fmt: skip
# A pattern of _NAME_PATTERNS can only match text holding one of these words (lower-cased,
# except the titles of the last pattern): a substring test first skips most patterns on
# most texts, which made find_spans several times faster on ordinary chat.
_NAME_TRIGGERS: tuple[tuple[tuple[str, ...], bool], ...] = (
    (("name", "call", "by", "signed"), True),
    (("i'm", "i’m", "am", "this", "it's", "it’s"), True),
    (("dear", "hi ", "hi\t", "hello", "hey"), True),
    (("thank", "thx", "cheers", "regards", "best", "sincerely", "yours", "warmly", "love", "care"),
     True),
    (("—", "–", "--", "~"), False),
    (_RELATION_STEMS, True),
    ((":", "="), False),
    (("Mr", "Ms", "Mi", "Mx", "Dr", "Prof", "Sir", "Dame"), False),
)  # fmt: skip
# For an ASCII text, a necessary condition of each pattern of _NAME_PATTERNS (None: only its
# triggers), matched against the lower-cased text: the cue words that end each alternative
# and what must follow them. A pattern's trigger words are in most chat turns ("this",
# "best", "my"), its cue with a name after it in few, and the pattern costs a try of every
# alternative at every position. Outside ASCII re's IGNORECASE also maps "ı", "ſ"... onto
# ASCII letters, which a lower-cased text would not show, so there only the triggers count.
_NAME_GATES: tuple[re.Pattern[str] | None, ...] = (
    re.compile(r"(?:name\s+is|name's|called|call\s+me|go\s+by|signed,?)[ \t]"),
    re.compile(r"(?:i'm|i\s+am|this\s+is|it's)[ \t]"),
    None,
    re.compile(
        r"(?:thanks|you|thx|cheers|regards|best|wishes|warmly|sincerely|yours|truly|love|care)"
        r"[ \t]*[,!.\n]"
    ),
    None,
    re.compile(rf"(?:my|our|his|her|their|your)\s+(?:{_RELATIONS})"),
    re.compile(rf"(?:{_NAME_KEYS})[\"']?[ \t]*[:=]"),
    None,
)
# Any secret of _SECRET_RE starts with one of these.
_SECRET_TRIGGERS = (
    "sk-", "sk_", "rk_", "AKIA", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "xox", "AIza",
    "github_pat_", "glpat-", "eyJ",
)  # fmt: skip


def _trigger_index(
    sets: Sequence[tuple[str, ...]],
) -> tuple[detectors.Words, tuple[int, ...]]:
    """One automaton over the words of several trigger sets, and for each word the bit mask
    of the sets holding it: one pass over a text tells which sets occur in it."""
    masks: dict[str, int] = {}
    for bit, words in enumerate(sets):
        for word in words:
            masks[word] = masks.get(word, 0) | 1 << bit
    return detectors.Words(masks), tuple(masks.values())


def _present(index: tuple[detectors.Words, tuple[int, ...]], text: str) -> int:
    """Bit mask of the trigger sets of ``index`` that have a word in ``text``."""
    words, masks = index
    found = 0
    for i in words.found(text):
        found |= masks[i]
    return found


# The sets of _NAME_TRIGGERS searched in the lower-cased text, then those searched in the
# text as it is, with _SECRET_TRIGGERS last: bit i of _present is set i of the index.
_LOWER_SETS = [words for words, lowered in _NAME_TRIGGERS if lowered]
_CASED_SETS = [words for words, lowered in _NAME_TRIGGERS if not lowered]
_LOWER_INDEX = _trigger_index(_LOWER_SETS)
_CASED_INDEX = _trigger_index([*_CASED_SETS, _SECRET_TRIGGERS])
_SECRET_BIT = 1 << len(_CASED_SETS)


def _name_runs() -> tuple[tuple[re.Pattern[str], bool, bool, int, re.Pattern[str] | None], ...]:
    """(pattern, family only, triggers lower-cased, the triggers' bit, gate) of each name
    pattern, in order: the bit of its trigger set in _present's mask of that case."""
    runs = []
    bits = {True: 0, False: 0}
    for (pattern, family_only), (_, lowered), gate in zip(
        _NAME_PATTERNS, _NAME_TRIGGERS, _NAME_GATES, strict=True
    ):
        runs.append((pattern, family_only, lowered, 1 << bits[lowered], gate))
        bits[lowered] += 1
    return tuple(runs)


_NAME_RUNS = _name_runs()


# Capitalised words that follow a trigger ("I'm Sorry", "Hi Team,", "Thanks, Everyone") but
# are not names. A name stops at the first of these.
_NOT_NAMES = frozenset(
    """
    I A An The And But Or Nor So Yet Not No Yes Ok Okay Just Also Still Even Only Here There
    This That These Those It Its Is Am Are Was Were Be Been Being Do Does Did Have Has Had
    Sorry Going Trying Looking Working Writing Asking Wondering Hoping Planning Thinking
    Using Building Learning Getting Making Doing Feeling Reaching Following Back Done
    New Happy Glad Sure Fine Good Great Well Really Very Quite Pretty Totally Kind Sort
    Hi Hello Hey Dear Thanks Thank Please Cheers Regards Best Love Sincerely Yours Warmly
    What How Why When Where Who Whom Which Whose Can Could Would Should Will Shall May Might
    Must My Your Our Their His Her We You He She They Me Us Them Him
    In On At For From With To Of By As If Then Now Today Tomorrow Yesterday Tonight Again
    Monday Tuesday Wednesday Thursday Friday Saturday Sunday Weekend
    Sir Madam Team All Everyone Everybody Folks Guys World There Friend Friends Sirs
    Customer Support Service Admin Manager Bot Assistant Chatbot Gpt Chat User Guest
    English Spanish French German Chinese Python Java Excel Google Microsoft Apple Amazon
    Also Anyway Otherwise Regarding Re Fw Fwd Subject Note Update Question Quick
    None Any True False Null Self String Optional Object Boolean Float Integer
    """.split()
)

_PRIORITY = (
    SECRET,
    URL_TOKEN,
    EMAIL,
    IBAN,
    PAYMENT_CARD,
    SSN,
    NATIONAL_ID,
    PASSPORT,
    IPV6,
    IPV4,
    PHONE,
    STREET_ADDRESS,
)
# Sort rank of each kind in find_spans: _PRIORITY, then names.
_RANK = {kind: i for i, kind in enumerate((*_PRIORITY, PERSON_NAME))}


class _Span(NamedTuple):
    start: int
    end: int
    kind: str
    value: str
    family_only: bool = False
    # A locale or region hint for the surrogate (detectors.Detection.hint).
    hint: str = ""
    # A replacement decided in advance (the two halves of a card split across turns).
    forced: str = ""


# Issuer prefixes (IIN ranges) of the card networks people paste: Visa, Mastercard, Amex,
# Discover, JCB, Diners, UnionPay, Maestro. A digit run starting otherwise is data.
_CARD_PREFIX_RE = re.compile(r"4|5[0-9]|2[2-7]|3[4-9]|30|6[0-9]")


def _card_brand_ok(value: str) -> bool:
    """A grouped number is a card by its shape; an ungrouped run of 13-19 digits also needs a
    network's prefix and length (long integers in data and logs pass Luhn one time in ten)."""
    if not value.isdigit():
        return True
    return bool(_CARD_PREFIX_RE.match(value)) and (
        len(value) in (15, 16) or (value[0] == "4" and len(value) in (13, 19))
        or (value[0] in "56" and len(value) in (17, 18, 19))
    )  # fmt: skip


def luhn_valid(number: str) -> bool:
    """Whether the digits of ``number`` pass the Luhn check (payment card checksum)."""
    digits = [int(c) for c in number if c.isdigit()]
    if len(digits) < 2:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def surrogate_digests(values: set[str]) -> list[str]:
    """Short SHA-256 digests of surrogates as inserted (and of their digits, when they have
    seven or more), sorted. Stored with each row so the residue check can tell an inserted
    surrogate from a leak; surrogates are synthetic, so their digests reveal nothing.
    """
    out = set()
    for value in values:
        out.add(surrogate_digest(value))
        digits = _digits(value)
        if len(digits) >= 7:
            out.add(surrogate_digest(digits))
    return sorted(out)


def surrogate_digest(value: str) -> str:
    """The digest of one surrogate string (16 hex characters)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


def hash_user(user_id: str, salt: str) -> str:
    """Salted SHA-256 (HMAC) of an account id, 16 hex characters; the id itself is dropped."""
    return hmac.new(salt.encode(), user_id.encode(), hashlib.sha256).hexdigest()[:16]


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def _ipv6_candidate_ok(value: str) -> bool:
    groups = [g for g in re.split(r":+", value) if g]
    if len(groups) < 3 and "." not in value:
        return False
    try:
        addr = ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return not (addr.is_loopback or addr.is_unspecified or addr in SURROGATE_IPV6_NET)


def _ipv4_ok(value: str) -> bool:
    addr = ipaddress.IPv4Address(value)
    if addr.is_loopback or addr.is_unspecified or str(addr) == "255.255.255.255":
        return False
    return not any(addr in net for net in _DOC_IPV4_NETS)


def _clean_name(text: str, start: int) -> tuple[int, int] | None:
    """Trim a captured name at its first non-name word; None when nothing is left."""
    end = start
    for tok in _TOKEN_RE.finditer(text):
        if tok.group() in _NOT_NAMES:
            break
        end = start + tok.end()
    return (start, end) if end > start else None


def find_spans(text: str) -> list[_Span]:
    """Non-overlapping PII spans of one text by pattern and context, in text order."""
    found: list[_Span] = []

    def add(kind: str, start: int, end: int, family_only: bool = False, hint: str = "") -> None:
        found.append(_Span(start, end, kind, text[start:end], family_only, hint))

    cased = _present(_CASED_INDEX, text)
    if cased & _SECRET_BIT:
        for m in _SECRET_RE.finditer(text):
            add(SECRET, m.start(), m.end())
    if "-----BEGIN" in text:
        for m in _PEM_RE.finditer(text):
            add(SECRET, m.start(), m.end())
    if "://" in text:
        for m in _URL_USERINFO_RE.finditer(text):
            add(URL_TOKEN, m.start(), m.end())
    if "=" in text:
        for m in _URL_TOKEN_RE.finditer(text):
            add(URL_TOKEN, m.start("v"), m.end("v"))
    if "@" in text:
        for m in _EMAIL_RE.finditer(text):
            add(EMAIL, m.start(), m.end())
    if detectors.has_digit(text):
        for m in _CARD_RE.finditer(text):
            if luhn_valid(m.group()) and _card_brand_ok(m.group()):
                add(PAYMENT_CARD, m.start(), m.end())
        for m in _SSN_RE.finditer(text):
            add(SSN, m.start(), m.end())
        for m in _NINO_RE.finditer(text):
            add(NATIONAL_ID, m.start(), m.end())
        for m in _SIN_RE.finditer(text):
            if luhn_valid(m.group()):
                add(NATIONAL_ID, m.start(), m.end())
        for m in _IPV4_RE.finditer(text):
            if _ipv4_ok(m.group()):
                add(IPV4, m.start(), m.end())
        for m in _PHONE_US_RE.finditer(text):
            add(PHONE, m.start(), m.end())
        for m in _PHONE_INTL_RE.finditer(text):
            if 8 <= len(_digits(m.group())) <= 15:
                add(PHONE, m.start(), m.end())
        for m in _ADDRESS_RE.finditer(text):
            add(STREET_ADDRESS, m.start(), m.end())
    if ":" in text:
        for m in _IPV6_RE.finditer(text):
            if _ipv6_candidate_ok(m.group()):
                add(IPV6, m.start(), m.end())
    low = text.lower()
    lowered_sets = _present(_LOWER_INDEX, low)
    ascii_text = text.isascii()
    for pattern, family_only, lowered, bit, gate in _NAME_RUNS:
        if not (lowered_sets if lowered else cased) & bit:
            continue
        if ascii_text and gate is not None and not gate.search(low):
            continue
        for m in pattern.finditer(text):
            if pattern is _KEY_NAME_PATTERN and (
                not _VALUE_END_RE.match(text, m.end("n"))
                or re.fullmatch(r"[A-Z][a-z]+[A-Z]\w*|String|Boolean|Float|Object", m.group("n"))
            ):
                # "name: Build and test" (a workflow step): the value goes on past the name;
                # "name = 'PipelineTag'", "name: String": a class or type, not a person.
                continue
            cleaned = _clean_name(m.group("n"), m.start("n"))
            if cleaned:
                add(PERSON_NAME, *cleaned, family_only=family_only)
    if "\n" in text and ("," in text or "|" in text or "\t" in text):
        for kind, start, end in _table_spans(text):
            add(kind, start, end)
    for d in detectors.find_all(text):
        if d.end > d.start:
            add(d.kind, d.start, d.end, hint=d.hint)

    found.sort(key=lambda s: (_RANK[s.kind], s.start, -(s.end - s.start)))
    return _merge([], found)


def _cells(line: str, sep: str) -> list[tuple[int, int]]:
    """(start, end) of each cell of a delimited line, whitespace trimmed."""
    out = []
    pos = 0
    for piece in line.split(sep):
        lead = len(piece) - len(piece.lstrip())
        out.append((pos + lead, pos + len(piece.rstrip())))
        pos += len(piece) + 1
    return out


_HEADER_CELL_RE = re.compile(r"[\w#][\w .#/\-]{0,39}")


def _table_spans(text: str) -> list[tuple[str, int, int]]:
    """Personal data in the columns of CSV, TSV or markdown tables, found by header.

    A header cell named like a name (``name``, ``customer_name``...), an address, or any
    other kind :func:`detectors.kind_for_key` knows (``Phone``, ``IBAN``, ``ID no.``...) marks
    its column; every cell under it, until the table ends, is replaced when it fits the kind
    (:func:`detectors.value_fits`).
    """
    spans: list[tuple[str, int, int]] = []
    columns: dict[int, str] = {}
    sep = ""
    width = 0
    offset = 0
    for line in text.split("\n"):
        start = offset
        offset += len(line) + 1
        if columns and sep in line and len(line.split(sep)) == width:
            cells = _cells(line, sep)
            for index, kind in columns.items():
                a, b = cells[index]
                value = line[a:b].strip("\"'")
                a += line[a:b].find(value) if value else 0
                b = a + len(value)
                if not value or set(value) <= set("-: "):
                    continue
                if kind == PERSON_NAME and _NAMES_FULL_RE.fullmatch(value):
                    if value not in _NOT_NAMES:
                        spans.append((kind, start + a, start + b))
                elif kind == STREET_ADDRESS and _DIGIT_RE.search(value):
                    spans.append((kind, start + a, start + b))
                elif detectors.value_fits(
                    kind, value, generic_key=kind == PERSON_NAME, lower_known=True
                ):
                    spans.append((kind, start + a, start + b))
            continue
        columns = {}
        for candidate in ("|", "\t", ","):
            if candidate not in line:
                continue
            cells = [line[a:b].strip("\"' ") for a, b in _cells(line, candidate)]
            found = {}
            named = [c for c in cells if c]
            if len(named) < 2 or not all(_HEADER_CELL_RE.fullmatch(c) for c in named):
                # A header row holds two or more field names, not code ('name': x, f(a, b)).
                continue
            for i, c in enumerate(cells):
                if not c:
                    continue
                if _NAME_KEY_RE.fullmatch(c):
                    found[i] = PERSON_NAME
                elif _ADDRESS_KEY_RE.fullmatch(c):
                    found[i] = STREET_ADDRESS
                elif kind := detectors.kind_for_key(c):
                    found[i] = kind
            if found:
                columns, sep, width = found, candidate, len(cells)
                break
    return spans


def _merge(accepted: list[_Span], candidates: list[_Span]) -> list[_Span]:
    """Add candidates (in priority order) that overlap nothing already accepted."""
    kept = list(accepted)
    for span in candidates:
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    kept.sort(key=lambda s: s.start)
    return kept


@dataclass
class _Slot:
    """One string inside the copied messages: where it lives and what was found in it."""

    holder: Any
    key: Any
    text: str
    name_field: bool = False
    spans: list[_Span] = field(default_factory=list)
    address_field: bool = False
    # The PII kind the JSON key above this value announces (detectors.kind_for_key).
    key_kind: str | None = None
    generic_key: bool = False
    # A JSON integer, rewritten back to an integer when its surrogate is all digits.
    numeric: bool = False
    # Index of the message holding the slot and whether it is that message's user text.
    message: int = -1
    user_text: bool = False


@dataclass
class _JsonDoc:
    holder: Any
    key: Any
    parsed: Any
    compact: bool
    slots: list[_Slot]


class _KeyHolder:
    """Stands in for a dict whose *key* is a slot: a replacement is recorded and applied
    after every value is written, so value slots keep addressing the original key."""

    def __init__(self, target: dict[str, Any], renames: list[tuple[dict[str, Any], str, str]]):
        self.target = target
        self.renames = renames

    def __setitem__(self, key: str, new: str) -> None:
        self.renames.append((self.target, key, new))


def _apply_renames(renames: list[tuple[dict[str, Any], str, str]]) -> None:
    by_dict: dict[int, tuple[dict[str, Any], dict[str, str]]] = {}
    for target, old, new in renames:
        by_dict.setdefault(id(target), (target, {}))[1][old] = new
    for target, mapping in by_dict.values():
        items = list(target.items())
        target.clear()
        for key, value in items:
            new_key = mapping.get(key, key)
            # Two keys mapped to one surrogate would lose a value: keep the later one apart.
            while new_key in target:
                new_key += "_"
            target[new_key] = value


class Deidentifier:
    """Replaces identifying text in conversations with consistent Faker surrogates.

    ``salt`` keys every surrogate and user hash: the same salt reproduces the same output,
    another salt gives unrelated surrogates. One Faker instance per locale is reseeded per
    surrogate.
    """

    def __init__(self, salt: str, *, locale: str = "en_US") -> None:
        self.salt = salt
        self._locale = locale
        self._fake = Faker(locale)
        self._fakers: dict[str, Faker] = {locale: self._fake, "": self._fake}

    # --- public ---------------------------------------------------------------------------

    def deidentify_messages(
        self,
        messages: list[dict[str, Any]],
        conversation_id: str,
        *,
        surrogates: set[str] | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """De-identified copies of ``messages`` and the count of replaced spans by PII type.

        Only the OpenAI chat keys are kept (role, name, content, refusal, tool_calls,
        tool_call_id); non-text content parts are reduced to their type, since only text is
        de-identified. The input is not modified. Every surrogate inserted (name surrogates
        token by token) is added to ``surrogates`` when given.
        """
        out, _, counts = self.deidentify_conversation(
            messages, conversation_id, surrogates=surrogates
        )
        return out, counts

    def deidentify_conversation(
        self,
        messages: list[dict[str, Any]],
        conversation_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        surrogates: set[str] | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None, dict[str, int]]:
        """Like :meth:`deidentify_messages`, and the record's ``metadata`` with it.

        Metadata strings, keys and identifier-like numbers are de-identified with the same
        surrogates as the messages (one original, one surrogate, wherever it appears).
        Returns (messages, metadata, counts).
        """
        out, meta, _, counts = self._deidentify(
            messages, conversation_id, metadata=metadata, surrogates=surrogates
        )
        return out, meta, counts

    def deidentify_with_tools(
        self,
        messages: list[dict[str, Any]],
        conversation_id: str,
        *,
        tools: list[dict[str, Any]] | None,
        surrogates: set[str] | None = None,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None, dict[str, int]]:
        """Like :meth:`deidentify_messages`, and the record's declared ``tools`` with it.

        A tool schema keeps its structure: keys (property names), the function's name and the
        values of structural schema keywords (:data:`_SCHEMA_KEPT`: type, required, format...)
        are kept as they are; every other string (descriptions, titles, enums, defaults,
        examples) is de-identified with the same surrogates as the messages. Returns
        (messages, tools, counts); tools is None when none were given.
        """
        out, _, kept_tools, counts = self._deidentify(
            messages, conversation_id, tools=tools, surrogates=surrogates
        )
        return out, kept_tools, counts

    def _deidentify(
        self,
        messages: list[dict[str, Any]],
        conversation_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        tools: list[dict[str, Any]] | None = None,
        surrogates: set[str] | None = None,
    ) -> tuple[
        list[dict[str, Any]], dict[str, Any] | None, list[dict[str, Any]] | None, dict[str, int]
    ]:
        out = [_copy_message(m) for m in messages]
        meta = copy.deepcopy(metadata) if isinstance(metadata, dict) else None
        schemas = copy.deepcopy(tools) if tools else None
        renames: list[tuple[dict[str, Any], str, str]] = []
        slots, docs = _collect_slots(out, renames)
        if meta:
            _walk_json(meta, slots, False, renames=renames)
        if schemas:
            _schema_slots(schemas, slots)
        counts: Counter[str] = Counter()
        participants = [
            m["name"]
            for m in out
            if isinstance(m.get("name"), str) and m.get("role") != "tool" and m["name"]
        ]
        self._rewrite(slots, conversation_id, counts, surrogates, participants)
        _apply_renames(renames)
        for doc in docs:
            if any(s.spans for s in doc.slots):
                separators = (",", ":") if doc.compact else (", ", ": ")
                doc.holder[doc.key] = json.dumps(
                    doc.parsed, ensure_ascii=False, separators=separators
                )
        for msg in out:
            name = msg.get("name")
            if isinstance(name, str) and msg.get("role") != "tool" and name:
                msg["name"] = self._surrogate(PARTICIPANT_NAME, name, conversation_id, set())
                counts[PARTICIPANT_NAME] += 1
        return out, meta, schemas, dict(sorted(counts.items()))

    def deidentify_text(self, text: str, conversation_id: str) -> tuple[str, dict[str, int]]:
        """One text de-identified on its own (as if it were a whole conversation)."""
        holder = [text]
        slot = _Slot(holder, 0, text)
        counts: Counter[str] = Counter()
        self._rewrite([slot], conversation_id, counts)
        return holder[0], dict(sorted(counts.items()))

    # --- internals ------------------------------------------------------------------------

    def _rewrite(
        self,
        slots: list[_Slot],
        cid: str,
        counts: Counter[str],
        surrogates: set[str] | None = None,
        participants: list[str] | None = None,
    ) -> None:
        inserted = surrogates if surrogates is not None else set()
        for slot in slots:
            slot.spans = find_spans(slot.text)
            if slot.name_field and not any(s.kind == PERSON_NAME for s in slot.spans):
                stripped = slot.text.strip()
                if _NAMES_FULL_RE.fullmatch(stripped) and stripped not in _NOT_NAMES:
                    start = slot.text.index(stripped)
                    whole = _Span(start, start + len(stripped), PERSON_NAME, stripped)
                    slot.spans = _merge([], [whole, *slot.spans])
            if slot.address_field and not any(s.kind == STREET_ADDRESS for s in slot.spans):
                # A field named "address" holds one: its first line, when it has a number.
                line = slot.text.strip().split("\n")[0].strip()
                if _DIGIT_RE.search(line) and len(line) <= 200:
                    start = slot.text.index(line)
                    whole = _Span(start, start + len(line), STREET_ADDRESS, line)
                    slot.spans = _merge([], [whole, *slot.spans])
            if slot.key_kind and not any(s.kind == slot.key_kind for s in slot.spans):
                self._key_context(slot)
        self._split_cards(slots, cid)
        _propagate_values(slots)

        # Name tokens in first-seen order decide given/family roles deterministically.
        token_roles: dict[str, bool] = {}
        for slot in slots:
            for span in slot.spans:
                if span.kind == PERSON_NAME:
                    for i, tok in enumerate(_name_parts(span.value)):
                        token_roles.setdefault(tok, span.family_only or i > 0)
        for name in participants or ():
            # A chat "name" field (maria_garcia) names a person the text may mention too.
            spaced = re.sub(r"[_.]+", " ", name).strip()
            if detectors.looks_like_name(spaced):
                for i, tok in enumerate(_name_parts(spaced)):
                    if len(tok) >= 3:
                        token_roles.setdefault(tok, i > 0)
        token_re = _token_pattern(token_roles) if token_roles else None
        if token_re is not None:
            for slot in slots:
                extra = [
                    _Span(m.start(), m.end(), PERSON_NAME, m.group())
                    for m in token_re.finditer(slot.text)
                    if _token_key(m.group(), token_roles) is not None
                ]
                if extra:
                    slot.spans = _merge(slot.spans, extra)

        originals: dict[str, set[str]] = {}
        for slot in slots:
            for span in slot.spans:
                if span.kind != PERSON_NAME:
                    originals.setdefault(span.kind, set()).add(_normalise(span.kind, span.value))
        originals[PERSON_NAME] = {t.casefold() for t in token_roles}
        token_map = {
            tok: self._surrogate(
                PERSON_NAME, tok, cid, originals[PERSON_NAME], family=family,
                hint=detectors.script_locale(tok),
            )
            for tok, family in token_roles.items()
        }  # fmt: skip
        inserted.update(token_map.values())

        for slot in slots:
            if not slot.spans:
                continue
            pieces: list[str] = []
            pos = 0
            for span in slot.spans:
                pieces.append(slot.text[pos : span.start])
                if span.forced:
                    repl = span.forced
                    inserted.add(repl)
                elif span.kind == PERSON_NAME and token_re is not None:
                    repl = token_re.sub(
                        lambda m: _case_like(
                            m.group(), token_map.get(_token_key(m.group(), token_roles) or "")
                        ),
                        span.value,
                    )
                    # The whole replaced name too ("Rose da Singleton"), not only its words.
                    inserted.add(repl)
                else:
                    repl = self._surrogate(
                        span.kind, span.value, cid, originals.get(span.kind, set()),
                        hint=span.hint,
                    )  # fmt: skip
                    inserted.add(repl)
                    inserted.update(_surrogate_pieces(span.kind, repl, slot.text, span.end))
                pieces.append(repl)
                counts[span.kind] += 1
                pos = span.end
            pieces.append(slot.text[pos:])
            new = "".join(pieces)
            if slot.numeric and new.isdigit() and not new.startswith("0"):
                slot.holder[slot.key] = int(new)
            else:
                slot.holder[slot.key] = new

    def _key_context(self, slot: _Slot) -> None:
        """The whole value of a field whose key names a PII kind (``"phone": "0412..."``)."""
        kind = slot.key_kind
        assert kind is not None
        stripped = slot.text.strip()
        if not detectors.value_fits(kind, stripped, generic_key=slot.generic_key):
            # A key that names a phone makes a bare digit run one (JSON numbers, keys).
            if kind == PHONE:
                for d in detectors.find_phones(slot.text, cue_window="phone"):
                    span = _Span(d.start, d.end, PHONE, slot.text[d.start : d.end], hint=d.hint)
                    slot.spans = _merge([], [span, *slot.spans])
            return
        start = slot.text.index(stripped)
        whole = _Span(start, start + len(stripped), kind, stripped)
        slot.spans = _merge([], [whole, *slot.spans])

    def _split_cards(self, slots: list[_Slot], cid: str) -> None:
        """A card number typed across two user turns: both halves get one surrogate's halves."""
        for first, second, span_a, span_b in _split_card_spans(slots):
            joined = _digits(span_a.value) + _digits(span_b.value)
            # Made like any card's surrogate (it fails Luhn), then cut where the user cut.
            whole = self._surrogate(PAYMENT_CARD, joined, cid, set())
            n = len(_digits(span_a.value))
            span_a = span_a._replace(forced=_format_like(span_a.value, whole[:n]))
            span_b = span_b._replace(forced=_format_like(span_b.value, whole[n:]))
            first.spans = _merge([], [span_a, *first.spans])
            second.spans = _merge([], [span_b, *second.spans])

    def _faker(self, locale: str) -> Faker:
        fake = self._fakers.get(locale)
        if fake is None:
            try:
                fake = Faker(locale)
            except AttributeError:
                fake = self._fake
            self._fakers[locale] = fake
        return fake

    def _surrogate(
        self,
        kind: str,
        original: str,
        cid: str,
        avoid: set[str],
        *,
        family: bool = False,
        hint: str = "",
    ) -> str:
        norm = _normalise(kind, original)
        make = _MAKERS[kind]
        fake = self._faker(_surrogate_locale(kind, original, hint))
        value = original
        for attempt in range(20):
            digest = hashlib.sha256(f"{self.salt}|{cid}|{kind}|{norm}|{attempt}".encode()).digest()
            fake.seed_instance(int.from_bytes(digest[:8], "big"))
            value = make(fake, original, family)
            if _normalise(kind, value) not in avoid and _normalise(kind, value) != norm:
                break
        return value


def _surrogate_locale(kind: str, original: str, hint: str) -> str:
    """The Faker locale a surrogate of ``kind`` is drawn from: the script of a name, the
    country form of an address."""
    if kind == PERSON_NAME:
        return detectors.script_locale(original) or "en_US"
    if kind == STREET_ADDRESS:
        script = detectors.script_locale(original)
        if script:
            return script
        first = original.strip().split(" ")[0].lower()
        by_word = {
            "via": "it_IT", "viale": "it_IT", "piazza": "it_IT", "corso": "it_IT",
            "rua": "pt_BR", "travessa": "pt_BR", "praça": "pt_BR", "ul.": "pl_PL",
            "al.": "pl_PL", "os.": "pl_PL", "plac": "pl_PL", "ulica": "pl_PL",
        }  # fmt: skip
        if first in by_word:
            return by_word[first]
        if re.search(r"(?i)(?:straat|gracht|laan|plein|kade|singel|dijk)\b", original):
            return "nl_NL"
        if re.search(r"(?i)(?:gatan|vägen|gränd|torget)\b", original):
            return "sv_SE"
        if hint in ("es_ES", "fr_FR", "de_DE", "ru_RU", "zh_CN", "ja_JP", "ko_KR"):
            return hint
    return "en_US"


_LATIN_TOKEN_RE = re.compile(r"[A-Za-zÀ-ɏḀ-ỿ]")


def _name_parts(value: str) -> list[str]:
    """The words of a name: spaced-script words, and CJK or Hangul names whole."""
    parts = re.findall(
        r"[\u3400-\u4dbf\u4e00-\u9fff\u3040-\u30ff]+|[\uac00-\ud7a3]+", value
    )  # fmt: skip
    parts.extend(w for w in detectors._WORD_RE.findall(value) if w.casefold() not in _PARTICLE_SET)
    return [p for p in parts if p]


_PARTICLE_SET = frozenset(
    "da de del della der di do dos das du la le van von ten ter y bin al".split()
)


def _token_key(found: str, roles: dict[str, bool]) -> str | None:
    if found in roles:
        return found
    folded = found.casefold()
    for tok in roles:
        if tok.casefold() == folded and len(tok) >= 4:
            return tok
    return None


def _token_pattern(roles: dict[str, bool]) -> re.Pattern[str]:
    """Every other occurrence of a name word: whole words (case-folded from four letters on,
    so "maria" signed in lower case is found as "Maria" too); CJK names anywhere."""
    spaced = [t for t in roles if not _is_cjk(t)]
    cjk = [t for t in roles if _is_cjk(t)]
    alternatives = []
    if spaced:
        words = "|".join(
            (re.escape(t) if len(t) < 4 else f"(?i:{re.escape(t)})")
            for t in sorted(spaced, key=len, reverse=True)
        )
        alternatives.append(rf"(?<![\w-])(?:{words})(?![\w-])")
    if cjk:
        alternatives.append("|".join(re.escape(t) for t in sorted(cjk, key=len, reverse=True)))
    return re.compile("|".join(alternatives))


def _is_cjk(token: str) -> bool:
    return bool(re.match(r"[\u3400-\u4dbf\u4e00-\u9fff\u3040-\u30ff\uac00-\ud7a3]", token))


def _case_like(original: str, surrogate: str | None) -> str:
    if surrogate is None:
        return original
    if original.islower():
        return surrogate.lower()
    if original.isupper() and len(original) > 1:
        return surrogate.upper()
    return surrogate


def _surrogate_pieces(kind: str, repl: str, text: str, end: int) -> set[str]:
    """Parts of an inserted surrogate a residue scan may read on their own, so they are known
    as synthetic too: runs of two or more digit groups ("6328 1520 1457" of a card surrogate
    reads as an Aadhaar number), and a URL password surrogate with the host after it
    ("redacted-...@host.com" reads as an e-mail)."""
    pieces: set[str] = set()
    groups = list(re.finditer(r"\d+", repl))
    if 3 <= len(groups) <= 8:
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                pieces.add(repl[groups[i].start() : groups[j].end()])
    if kind == URL_TOKEN and ":" in repl and text[end : end + 1] == "@":
        host = re.match(r"@[^/\s\"'<>?#:]+", text[end:])
        if host:
            pieces.add(repl + host.group())
            pieces.add(repl.split(":", 1)[1] + host.group())
    return pieces


def _split_card_spans(slots: list[_Slot]) -> list[tuple[_Slot, _Slot, _Span, _Span]]:
    """Pairs of user texts whose end and start hold one card number's two halves."""
    out = []
    user = [s for s in slots if s.user_text]
    for first, second in zip(user, user[1:], strict=False):
        if second.message <= first.message:
            continue
        found = detectors.split_card(first.text, second.text)
        if not found:
            continue
        (a0, a1), (b0, b1) = found
        span_a = _Span(a0, a1, PAYMENT_CARD, first.text[a0:a1])
        span_b = _Span(b0, b1, PAYMENT_CARD, second.text[b0:b1])
        out.append((first, second, span_a, span_b))
    return out


_PROPAGATED = (SECRET, NATIONAL_ID, PASSPORT, IBAN, PAYMENT_CARD, PHONE, EMAIL, SSN)


def _propagate_values(slots: list[_Slot]) -> None:
    """Every other occurrence of a value found somewhere in the conversation (a password
    typed after its cue, then echoed bare by the assistant)."""
    values: dict[str, str] = {}
    for slot in slots:
        for span in slot.spans:
            if span.kind in _PROPAGATED and len(span.value) >= 6 and not span.forced:
                values.setdefault(span.value, span.kind)
    if not values:
        return
    ordered = sorted(values, key=len, reverse=True)
    for slot in slots:
        extra = [
            _Span(start, start + len(value), values[value], value)
            for start, value in _whole_word_matches(slot.text, ordered)
        ]
        if extra:
            slot.spans = _merge(slot.spans, extra)


def _whole_word_matches(text: str, ordered: list[str]) -> list[tuple[int, str]]:
    r"""(start, value) of what ``re.finditer(r"(?<![\w])(?:v1|v2|...)(?![\w])", text)`` finds
    for the escaped literal ``ordered`` values (longest first), found with ``str.find``.

    Compiling that pattern, new for every conversation with a value to propagate, cost more
    than de-identifying the conversation. This is the same search: positions in order, from
    the end of the last match on; at each, the first value (in ``ordered``) that occurs there
    with no word character before or after it (``\w`` is ``str.isalnum()`` or "_").
    """
    at: dict[int, list[str]] = {}
    for value in ordered:
        i = text.find(value)
        while i != -1:
            at.setdefault(i, []).append(value)
            i = text.find(value, i + 1)
    out: list[tuple[int, str]] = []
    pos = 0
    size = len(text)
    for start in sorted(at):
        if start < pos or (start and (text[start - 1].isalnum() or text[start - 1] == "_")):
            continue
        for value in at[start]:
            end = start + len(value)
            if end < size and (text[end].isalnum() or text[end] == "_"):
                continue
            out.append((start, value))
            pos = end
            break
    return out


def _normalise(kind: str, value: str) -> str:
    if kind == PHONE:
        digits = _digits(value)
        # "+1 415 ..." and "(415) ..." are one North American number.
        return digits[1:] if len(digits) == 11 and digits.startswith("1") else digits
    if kind in (PAYMENT_CARD, SSN):
        return _digits(value)
    if kind in (NATIONAL_ID, IBAN, PASSPORT):
        return re.sub(r"[\s.\-/]", "", value).upper()
    if kind in (EMAIL, IPV6):
        return value.lower()
    if kind == PERSON_NAME:
        return value.casefold()
    return value


# --- surrogate makers -------------------------------------------------------------------------


def _format_like(original: str, digits: str) -> str:
    """Put ``digits`` into the digit positions of ``original``, keeping its separators."""
    it = iter(digits)
    return "".join(next(it) if c.isdigit() else c for c in original)


def _shape_like(fake: Faker, original: str) -> str:
    """A random value of the shape of ``original``: digits, upper- and lower-case letters
    replaced by random ones of their class, separators kept."""
    out = []
    for c in original:
        if c.isdigit():
            out.append(str(fake.random_digit()))
        elif c.isalpha() and c.isascii():
            letter = fake.random_element("ABCDEFGHJKLMNPRSTUVWXYZ")
            out.append(letter if c.isupper() else letter.lower())
        else:
            out.append(c)
    return "".join(out)


def _random_digits(fake: Faker, n: int) -> str:
    return "".join(str(fake.random_digit()) for _ in range(n))


def _make_email(fake: Faker, original: str, family: bool) -> str:
    return f"{fake.user_name()}@{fake.random_element(SURROGATE_EMAIL_DOMAINS)}"


def _phone_region(original: str) -> str | None:
    return detectors._phone_ok(original, True)


def _make_phone(fake: Faker, original: str, family: bool) -> str:
    digits = _digits(original)
    text = original.strip()
    region = _phone_region(original) if not text.startswith(("+", "00")) else None
    nanp = text.startswith("+1") or (
        region in ("US", "CA")
        or (region is None and not text.startswith(("+", "0")) and len(digits) in (10, 11))
    )
    if nanp and len(digits) >= 10:
        # North American: keep a leading 1, use the fictional 555-0100..0199 range.
        lead = digits[:-10]
        new = f"{lead}{fake.random_int(201, 989)}55501{fake.random_int(0, 99):02d}"
        return _format_like(original, new)
    if text.startswith(("+", "00")):
        country = re.match(r"(?:\+|00)(\d+)", text)
        cc_len = len(country.group(1)) if country else 2
        cc_len = cc_len if cc_len <= 3 else 2
        if text.startswith("00"):
            cc_len += 2
        try:
            parsed = detectors.phonenumbers.parse("+" + text.lstrip("+").removeprefix("00"))
            cc_len = len(str(parsed.country_code)) + (2 if text.startswith("00") else 0)
        except detectors.phonenumbers.NumberParseException:
            pass
        keep = min(cc_len + 1, len(digits) - 4)
    else:
        # A national number keeps its trunk prefix and first digit (a mobile stays mobile).
        keep = min(2, len(digits) - 4)
    new = digits[:keep] + _random_digits(fake, len(digits) - keep)
    return _format_like(original, new)


def _make_card(fake: Faker, original: str, family: bool) -> str:
    digits = _digits(original)
    body = digits[0] + _random_digits(fake, len(digits) - 2)
    good = next(d for d in "0123456789" if luhn_valid(body + d))
    bad = str((int(good) + fake.random_int(1, 9)) % 10)
    return _format_like(original, body + bad)


def _make_ssn(fake: Faker, original: str, family: bool) -> str:
    return _format_like(original, "000" + _random_digits(fake, len(_digits(original)) - 3))


def _make_national_id(fake: Faker, original: str, family: bool) -> str:
    compact = re.sub(r"[\s\-]", "", original)
    if re.fullmatch(r"[A-Z]{2}\d{6}[A-D]", compact) and original[:1].isalpha():
        # QQ is HMRC's never-issued prefix, used in its own examples.
        return "QQ" + _format_like(original[2:-1], _random_digits(fake, 6)) + original[-1]
    if re.fullmatch(r"\d{3}([ -])\d{3}\1\d{3}", original) and luhn_valid(original):
        # A SIN starting with 0 is never issued; the check digit is made to fail Luhn as well.
        body = "0" + _random_digits(fake, 7)
        good = next(d for d in "0123456789" if luhn_valid(body + d))
        return _format_like(original, body + str((int(good) + fake.random_int(1, 9)) % 10))
    # Any other country's id: same shape, and never a valid id of the schemes we validate.
    value = _shape_like(fake, original)
    for _ in range(20):
        if not _valid_national_id(value):
            break
        value = _shape_like(fake, original)
    return value


def _valid_national_id(value: str) -> bool:
    from stdnum import luhn as _luhn
    from stdnum.br import cpf
    from stdnum.cn import ric
    from stdnum.de import idnr
    from stdnum.es import dni, nie
    from stdnum.in_ import aadhaar
    from stdnum.it import codicefiscale
    from stdnum.nl import bsn
    from stdnum.pl import pesel
    from stdnum.se import personnummer

    checks = (cpf, ric, idnr, dni, nie, aadhaar, codicefiscale, bsn, pesel, personnummer)
    if any(detectors.stdnum_valid(module, value) for module in checks):
        return True
    digits = _digits(value)
    return (
        len(digits) >= 9
        and digits == re.sub(r"[\s\-.]", "", value)
        and detectors.stdnum_valid(_luhn, digits)
    )


def _make_iban(fake: Faker, original: str, family: bool) -> str:
    # Same country and layout; the check digits are made wrong so the surrogate can never be
    # a real account (and a residue check can tell it from a leak).
    compact = re.sub(r"[^A-Za-z0-9]", "", original)
    country = compact[:2].upper()
    if len(compact) < 8 or not country.isalpha():
        return _shape_like(fake, original)
    bban = _shape_like(fake, compact[4:])
    good = _iban.calc_check_digits(country + "00" + bban.upper())
    bad = f"{(int(good) + fake.random_int(1, 96)) % 97 + 2:02d}"
    if bad == good:
        bad = f"{(int(good) + 1) % 97 + 2:02d}"
    new = (country if original[:2].isupper() else country.lower()) + bad + bban
    it = iter(new)
    return "".join(next(it) if c.isalnum() else c for c in original)


def _make_passport(fake: Faker, original: str, family: bool) -> str:
    return _shape_like(fake, original)


def _make_ipv4(fake: Faker, original: str, family: bool) -> str:
    return f"{fake.random_element(SURROGATE_IPV4_NETS)}.{fake.random_int(1, 254)}"


def _make_ipv6(fake: Faker, original: str, family: bool) -> str:
    a, b, c = (fake.random_int(1, 0xFFFF) for _ in range(3))
    return f"2001:db8:{a:x}:{b:x}::{c:x}"


def _make_address(fake: Faker, original: str, family: bool) -> str:
    return fake.street_address().replace("\n", ", ")


def _make_person(fake: Faker, original: str, family: bool) -> str:
    if _is_cjk(original):
        # CJK and Hangul names are written whole, surname first, without a space.
        return fake.name().replace(" ", "").replace("\u3000", "")
    # A surrogate must stay one token so multi-token names keep their shape.
    for _ in range(10):
        name = fake.last_name() if family else fake.first_name()
        if " " not in name:
            return name
    return name.replace(" ", "-")


def _make_participant(fake: Faker, original: str, family: bool) -> str:
    return fake.user_name()


def _make_secret(fake: Faker, original: str, family: bool) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    if original.startswith("-----BEGIN"):
        body = "".join(fake.random_element(alphabet) for _ in range(40))
        return f"-----BEGIN PRIVATE KEY-----\nEXAMPLE{body}\n-----END PRIVATE KEY-----"
    if original.startswith("eyJ"):
        # An unsigned-looking JWT whose payload reads {"sub":"EXAMPLE"}.
        tail = "".join(fake.random_element(alphabet) for _ in range(24))
        return f"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJFWEFNUExFIn0.EXAMPLE{tail}"
    if original.startswith("https://"):
        # A webhook URL: same host, a path that is plainly not a real hook.
        host = original.split("/")[2]
        tail = "".join(fake.random_element(alphabet) for _ in range(24))
        return f"https://{host}/EXAMPLE/{tail}"
    prefix = _SECRET_PREFIX_RE.match(original) or _MORE_PREFIX_RE.match(original)
    head = prefix.group() if prefix else ""
    tail_len = max(len(original) - len(head) - len("EXAMPLE"), 8 if head else 4)
    tail = "".join(fake.random_element(alphabet) for _ in range(tail_len))
    return f"{head}EXAMPLE{tail}"


_MORE_PREFIX_RE = re.compile(r"^(?:hf_|SG\.|gsk_|npm_|pypi-|xapp-|r8_|dop_v1_|ya29\.)")


def _make_url_token(fake: Faker, original: str, family: bool) -> str:
    if ":" in original:  # user:password of a URL
        return f"{fake.user_name()}:redacted-{fake.hexify('^' * 12)}"
    return "redacted-" + fake.hexify("^" * 12)


_MAKERS: dict[str, Callable[[Faker, str, bool], str]] = {
    EMAIL: _make_email,
    PHONE: _make_phone,
    PAYMENT_CARD: _make_card,
    SSN: _make_ssn,
    NATIONAL_ID: _make_national_id,
    IPV4: _make_ipv4,
    IPV6: _make_ipv6,
    STREET_ADDRESS: _make_address,
    PERSON_NAME: _make_person,
    PARTICIPANT_NAME: _make_participant,
    SECRET: _make_secret,
    URL_TOKEN: _make_url_token,
    IBAN: _make_iban,
    PASSPORT: _make_passport,
}


# --- message walking --------------------------------------------------------------------------

_KEPT_KEYS = ("role", "name", "content", "refusal", "tool_calls", "tool_call_id")


def _copy_message(msg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in _KEPT_KEYS:
        if key not in msg:
            continue
        value = msg[key]
        if key == "content" and isinstance(value, list):
            value = [_copy_part(p) for p in value]
        elif key == "tool_calls" and isinstance(value, list):
            value = [_copy_call(c) for c in value]
        else:
            value = copy.deepcopy(value)
        out[key] = value
    return out


def _copy_part(part: dict[str, Any]) -> dict[str, Any]:
    kind = part.get("type")
    if kind in ("text", "refusal"):
        return {"type": kind, kind: part.get(kind)}
    return {"type": kind}


def _copy_call(call: dict[str, Any]) -> dict[str, Any]:
    fn = call.get("function") or {}
    return {
        "id": call.get("id"),
        "type": call.get("type", "function"),
        "function": {"name": fn.get("name"), "arguments": fn.get("arguments")},
    }


def _collect_slots(
    messages: list[dict[str, Any]],
    renames: list[tuple[dict[str, Any], str, str]] | None = None,
) -> tuple[list[_Slot], list[_JsonDoc]]:
    slots: list[_Slot] = []
    docs: list[_JsonDoc] = []
    renames = renames if renames is not None else []

    def add_text(holder: Any, key: Any, allow_json: bool, index: int, user: bool) -> None:
        text = holder[key]
        if not isinstance(text, str) or not text:
            return
        # Any text that is a JSON object or array is walked (keys, values, numbers), not
        # only tool messages: users paste JSON too.
        parsed = _maybe_json(text) if allow_json or text[:1] in "[{" else None
        if parsed is None:
            slots.append(_Slot(holder, key, text, message=index, user_text=user))
            return
        doc_slots: list[_Slot] = []
        _walk_json(parsed, doc_slots, name_field=False, renames=renames)
        for s in doc_slots:
            s.message = index
        docs.append(_JsonDoc(holder, key, parsed, '": ' not in text, doc_slots))
        slots.extend(doc_slots)

    for index, msg in enumerate(messages):
        is_tool = msg.get("role") == "tool"
        user = msg.get("role") == "user"
        content = msg.get("content")
        if isinstance(content, str):
            add_text(msg, "content", is_tool, index, user)
        elif isinstance(content, list):
            for part in content:
                kind = part.get("type")
                if kind in ("text", "refusal"):
                    add_text(part, kind, is_tool, index, user)
        if isinstance(msg.get("refusal"), str):
            add_text(msg, "refusal", False, index, False)
        for call in msg.get("tool_calls") or []:
            add_text(call["function"], "arguments", True, index, False)
    return slots, docs


def _maybe_json(text: str) -> Any:
    stripped = text.lstrip()
    if not stripped or stripped[0] not in "[{":
        return None
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return parsed if isinstance(parsed, dict | list) else None


# JSON integers with this many digits or more may be identifiers (cards, phones, ids).
_MIN_ID_DIGITS = 7


def _walk_json(
    value: Any,
    slots: list[_Slot],
    name_field: bool,
    key_kind: str | None = None,
    *,
    renames: list[tuple[dict[str, Any], str, str]] | None = None,
    depth: int = 0,
) -> None:
    if depth > 200:
        return  # deeper than any real payload; the record is quarantined upstream
    renames = renames if renames is not None else []
    if isinstance(value, dict):
        for key, item in value.items():
            is_name = isinstance(key, str) and bool(_NAME_KEY_RE.fullmatch(key))
            kind = detectors.kind_for_key(key) if isinstance(key, str) else None
            if isinstance(key, str) and key:
                # A key can itself be personal data ({"+44 7700 900123": {...}}), with the
                # kind of the field above it as context.
                slots.append(_Slot(_KeyHolder(value, renames), key, key, key_kind=key_kind))
            if isinstance(item, str):
                is_address = isinstance(key, str) and bool(_ADDRESS_KEY_RE.fullmatch(key))
                slots.append(
                    _Slot(
                        value, key, item, name_field=is_name, address_field=is_address,
                        key_kind=kind, generic_key=isinstance(key, str) and key.lower() == "name",
                    )
                )  # fmt: skip
            elif _id_like_int(item):
                slots.append(_Slot(value, key, str(item), key_kind=kind, numeric=True))
            else:
                _walk_json(item, slots, is_name, kind or key_kind, renames=renames, depth=depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                slots.append(_Slot(value, i, item, name_field=name_field, key_kind=key_kind))
            elif _id_like_int(item):
                slots.append(_Slot(value, i, str(item), key_kind=key_kind, numeric=True))
            else:
                _walk_json(item, slots, name_field, key_kind, renames=renames, depth=depth + 1)


# JSON-schema keywords whose string values are the schema's structure, not text about anyone:
# kept in tool schemas (a renamed "required" entry or "type" would break the schema). ``name``
# is the function's name, which the candidate must call by.
_SCHEMA_KEPT = frozenset(
    {"type", "name", "required", "format", "$ref", "$schema", "$id", "pattern", "strict"}
)


def _schema_slots(value: Any, slots: list[_Slot], depth: int = 0) -> None:
    """Slots for the free-text strings of tool schemas (keys and structure kept)."""
    if depth > 200:
        return  # deeper than any real schema; the record is refused upstream
    if isinstance(value, dict):
        for key, item in value.items():
            if key in _SCHEMA_KEPT and (
                isinstance(item, str)
                or isinstance(item, list) and all(isinstance(i, str) for i in item)
            ):
                continue
            if isinstance(item, str):
                slots.append(_Slot(value, key, item))
            else:
                _schema_slots(item, slots, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str):
                slots.append(_Slot(value, i, item))
            else:
                _schema_slots(item, slots, depth + 1)


def _id_like_int(item: Any) -> bool:
    return (
        isinstance(item, int)
        and not isinstance(item, bool)
        and abs(item) >= 10 ** (_MIN_ID_DIGITS - 1)
    )

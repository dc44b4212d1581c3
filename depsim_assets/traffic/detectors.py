"""Detectors for personal data in international forms, built on maintained libraries.

:mod:`deid` finds the familiar US-centric shapes with its own patterns; this module finds what
real traffic from other countries carries, and what people type to dodge filters:

- **Presidio's predefined recognizers**, called directly (``recognizer.analyze(text, entities,
  None)``, no spaCy model and no ``AnalyzerEngine``): IBANs of every country with their mod-97
  check, Spanish DNI/NIE, Italian codice fiscale, Indian Aadhaar and PAN, Swedish
  personnummer, Polish PESEL, German tax id, Korean RRN, Finnish HETU, Turkish TCKN. Each
  validates its checksum, which keeps random digit runs from being taken for ids.
- **python-stdnum** for the ids Presidio lacks: Brazilian CPF and Chinese resident id by
  checksum. Ids whose checksum passes too many random numbers (Dutch BSN: one in eleven;
  PESEL, German tax id, Aadhaar written as one digit run) count only after a word that names
  them ("BSN", "PESEL", "ID number"...) or under a field that does.
- **phonenumbers** for telephone numbers in national formats without ``+`` over a configurable
  set of regions. A cheap pattern proposes candidates and ``phonenumbers`` decides whether
  one is a valid number of some region; running its ``PhoneNumberMatcher`` over whole texts
  for a dozen regions was measured at about 50 ms per 3 kB, two orders of magnitude slower.
- **Faker's per-locale name lists** as dictionaries for names in Cyrillic, Greek, Arabic,
  Hebrew, Devanagari, CJK and Hangul, and for Latin first+last pairs.
- Our own context rules: passwords and keys named by their context (``my password is``,
  ``Authorization: Bearer``, ``AWS_SECRET_ACCESS_KEY=``), provider keys by prefix, obfuscated
  and internationalised emails, passports and ids after a cue, international street
  addresses, names after cues and in signatures in any script and case, and the PII kind a
  field name (JSON key, table header, ``key: value`` line) announces.

Everything here is plain functions over text; :mod:`deid` decides priorities and surrogates.
"""

from __future__ import annotations

import bisect
import re
import threading
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import NamedTuple

import ahocorasick_rs
import phonenumbers
from stdnum.br import cpf as _cpf
from stdnum.cn import ric as _ric

# Kinds (the same strings deid uses for its types).
EMAIL = "email"
PHONE = "phone"
PAYMENT_CARD = "payment_card"
NATIONAL_ID = "national_id"
PASSPORT = "passport"
IBAN = "iban"
STREET_ADDRESS = "street_address"
PERSON_NAME = "person_name"
SECRET = "secret"

# Regions whose national formats (no "+") are recognised. Order matters only for speed: the
# first region a number is valid in wins. Configurable through :func:`set_phone_regions`.
DEFAULT_PHONE_REGIONS = (
    "US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "PL", "BR", "MX", "IN", "CN", "JP", "KR",
    "AU", "RU", "CA", "IE", "PT", "CH", "AT", "BE", "TR", "ZA", "NG", "AR", "CO",
)  # fmt: skip
_phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS


def set_phone_regions(regions: Iterable[str]) -> None:
    """Set the regions whose national phone formats are recognised (ISO 3166 alpha-2)."""
    global _phone_regions
    chosen = tuple(r.upper() for r in regions)
    unknown = [r for r in chosen if r not in phonenumbers.SUPPORTED_REGIONS]
    if unknown:
        raise ValueError(f"unknown phone regions: {', '.join(unknown)}")
    _phone_regions = chosen


_ANY_DIGIT_RE = re.compile(r"\d")


def has_digit(text: str) -> bool:
    r"""``re.search(r"\d", text)``: in an ASCII text the ten ``in`` tests, several times faster
    than the regex; elsewhere the regex (``\d`` is every decimal digit of Unicode)."""
    if text.isascii():
        return (
            "0" in text or "1" in text or "2" in text or "3" in text or "4" in text
            or "5" in text or "6" in text or "7" in text or "8" in text or "9" in text
        )  # fmt: skip
    return _ANY_DIGIT_RE.search(text) is not None


class Detection(NamedTuple):
    """One found span: offsets in the text, its kind, and a locale hint for the surrogate."""

    start: int
    end: int
    kind: str
    hint: str = ""


# --- character classes ------------------------------------------------------------------------


def _chars(ranges: Iterable[tuple[int, int]], category: str | None = None) -> str:
    out = []
    for lo, hi in ranges:
        for cp in range(lo, hi + 1):
            ch = chr(cp)
            if category is None or unicodedata.category(ch) == category:
                out.append(ch)
    return "".join(re.escape(c) for c in out)


_CASED_RANGES = ((0x41, 0x24F), (0x1E00, 0x1EFF), (0x370, 0x3FF), (0x400, 0x4FF))
_UP = _chars(_CASED_RANGES, "Lu")
_LO = _chars(_CASED_RANGES, "Ll") + "\u0300-\u036f"
# Caseless scripts: Arabic, Hebrew, Devanagari, Bengali, Thai (with their combining marks).
_CASELESS = (
    "\u0600-\u06ff\u0750-\u077f\u0590-\u05ff\u0900-\u097f\u0980-\u09ff\u0e00-\u0e7f"
    "\u200c\u200d"  # zero-width (non-)joiners inside Indic and Arabic words
)
_HAN = "\u3005\u3400-\u4dbf\u4e00-\u9fff"
_KANA = "\u3040-\u30ff"
_HANGUL = "\uac00-\ud7a3"
_LETTER = f"{_UP}{_LO}{_CASELESS}"
_WORD_RE = re.compile(rf"[{_LETTER}](?:[{_LETTER}]|['’\-](?=[{_LETTER}]))*")


def script_locale(text: str) -> str:
    """A Faker locale for surrogates in the script of ``text`` ("" for Latin)."""
    for ch in text:
        cp = ord(ch)
        if 0x400 <= cp <= 0x4FF:
            return "ru_RU"
        if 0x370 <= cp <= 0x3FF:
            return "el_GR"
        if 0x600 <= cp <= 0x6FF or 0x750 <= cp <= 0x77F:
            return "ar_SA"
        if 0x590 <= cp <= 0x5FF:
            return "he_IL"
        if 0x900 <= cp <= 0x97F:
            return "hi_IN"
        if 0x980 <= cp <= 0x9FF:
            return "bn_BD"
        if 0xE00 <= cp <= 0xE7F:
            return "th_TH"
        if 0xAC00 <= cp <= 0xD7A3:
            return "ko_KR"
        if 0x3040 <= cp <= 0x30FF:
            return "ja_JP"
        if 0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF:
            return "zh_CN"
    return ""


@lru_cache(maxsize=65536)
def _fold(word: str) -> str:
    """Case- and accent-folded form, so 'María', 'maria' and 'MARIA' compare equal."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


class Words:
    """A fixed set of words found in one pass: every occurrence of every word of the set.

    An Aho-Corasick automaton (``ahocorasick-rs``, Rust): one scan of the text reports all
    occurrences, overlapping ones included, which the cue windows below need (a regex
    alternation reports only non-overlapping leftmost matches). It replaced one ``str.find``
    loop per word and ``in`` tests over tuples of dozens of words, which cost more than the
    patterns they guard (3.9 million ``find`` calls per 10,000 demo conversations); it was
    measured about 3x faster than ``pyahocorasick`` on chat turns.
    """

    __slots__ = ("_automaton", "words")

    def __init__(self, words: Iterable[str]) -> None:
        self.words = tuple(words)
        # A DFA: the sets are small, and it scanned chat turns 1.8x faster than the default
        # automaton for the largest one (_OBFUSCATION_WORDS).
        self._automaton = ahocorasick_rs.AhoCorasick(
            list(self.words), implementation=ahocorasick_rs.Implementation.DFA
        )

    def any_in(self, text: str) -> bool:
        """Whether one of the words occurs in ``text`` (``any(w in text for w in words)``)."""
        return bool(self._automaton.find_matches_as_indexes(text))

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) in code points of every occurrence of every word."""
        return [(a, b) for _, a, b in self._automaton.find_matches_as_indexes(text, True)]

    def matches(self, text: str) -> list[tuple[int, int, int]]:
        """(index into ``words``, start, end) of every occurrence of every word."""
        return self._automaton.find_matches_as_indexes(text, True)

    def found(self, text: str) -> set[int]:
        """Indexes (into ``words``) of the words that occur in ``text``."""
        return {i for i, _, _ in self._automaton.find_matches_as_indexes(text, True)}


def _any_in(text: str, words: Words) -> bool:
    return words.any_in(text)


def _cue_finditer(
    pattern: re.Pattern[str],
    text: str,
    low: str,
    triggers: Words,
    *,
    before: int = 24,
    after: int = 80,
    starts: Words | None = None,
) -> Iterable[re.Match[str]]:
    r"""``pattern.finditer(text)`` restricted to windows around the cue words it starts with.

    A cue regex is an alternation of dozens of words; Python's ``re`` tries each at every
    position, which cost about 1 ms per kB of code. Finding the words (all of them in one
    pass, :class:`Words`) and running the regex only around them gives the same matches (a
    match cut by a window's end is dropped) at a fraction of the cost.

    ``starts``: words one of which (lower-cased) begins every match of ``pattern`` in an
    ASCII text, right after a word boundary. In an ASCII text the regex is then tried only
    where one begins, which finds what ``finditer`` over the window finds: a match cannot
    begin anywhere else, and ``match`` at a position runs the very matcher ``finditer`` runs
    there (a lookbehind or ``\b`` sees the text before it either way). Outside ASCII,
    ``re``'s IGNORECASE also maps ``ı``, ``ſ``... onto ASCII letters, so the whole window is
    searched.
    """
    if len(low) != len(text):
        if triggers.any_in(low):
            yield from pattern.finditer(text)
        return
    size = len(text)
    windows = [
        (start - before if start > before else 0, end + after if end + after < size else size)
        for _, start, end in triggers.matches(low)
    ]
    if not windows:
        return
    windows.sort()
    merged = [list(windows[0])]
    for a, b in windows[1:]:
        if a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    if starts is not None and text.isascii():
        matches = _matches_at(pattern, text, low, merged, starts)
    else:
        matches = (m for a, b in merged for m in pattern.finditer(text, a, b))
    last = -1
    for m in matches:
        b = m.endpos
        if m.start() < last or (m.end() == b and b < size):
            continue
        last = m.end()
        yield m


def _matches_at(
    pattern: re.Pattern[str], text: str, low: str, windows: list[list[int]], starts: Words
) -> Iterable[re.Match[str]]:
    """``pattern.finditer(text, a, b)`` for each window, tried only where a start word
    begins after a word boundary (see :func:`_cue_finditer`)."""
    candidates = sorted(
        {
            a
            for _, a, _ in starts.matches(low)
            if a == 0 or not (low[a - 1].isalnum() or low[a - 1] == "_")
        }
    )
    if not candidates:
        return
    for a, b in windows:
        pos = a
        for p in candidates[bisect.bisect_left(candidates, a) :]:
            if p >= b:
                break
            if p < pos:
                continue
            m = pattern.match(text, p, b)
            if m is not None:
                yield m
                pos = m.end() if m.end() > p else p + 1


# --- name dictionaries (Faker's per-locale lists) ------------------------------------------

_NAME_LOCALES = (
    "en_US", "en_GB", "en_IE", "de_DE", "fr_FR", "es_ES", "es_MX", "it_IT", "pt_BR", "pt_PT",
    "nl_NL", "sv_SE", "pl_PL", "tr_TR", "vi_VN", "cs_CZ", "ro_RO", "hu_HU", "fi_FI", "da_DK",
    "no_NO", "id_ID", "ru_RU", "uk_UA", "bg_BG", "el_GR", "ar_AA", "ar_SA", "ar_EG", "ar_JO",
    "ar_PS", "fa_IR", "he_IL", "hi_IN", "bn_BD", "th_TH", "zh_CN", "zh_TW", "ja_JP", "ko_KR",
)  # fmt: skip
# Capitalised English words that are also in some locale's name list: as the first word of a
# pair they start sentences far more often than they name people.
_COMMON_WORDS = frozenset(
    """
    will may june april august mark rose grant hope faith joy bill art page summer winter
    autumn dawn ray sky sunny rich frank earl king guy lane chase hunter gray grey brown
    white black green young long short price case wood hill field stone street park ford
    bay love golden star bishop rock river lake cliff glen dale miles jack penny don major
    china india paris sydney florence georgia virginia jordan chelsea austin dallas carolina
    new old big little great good best first last north south east west general admin test
    user data server client main error warning info debug note read write open close save
    """.split()
)


class _Names:
    """First and last names of many locales, folded, with CJK surname/given sets."""

    def __init__(self) -> None:
        from faker import Faker  # imported here: building the lists costs ~1 s, once

        first: set[str] = set()
        last: set[str] = set()
        self.cjk_last: set[str] = set()
        self.cjk_first: set[str] = set()
        self.ko_last: set[str] = set()
        self.ko_first: set[str] = set()
        for loc in _NAME_LOCALES:
            try:
                fake = Faker(loc)
            except AttributeError:
                continue
            person = next(
                (p for p in fake.get_providers() if type(p).__module__.endswith(".person")
                 or ".person." in type(p).__module__),
                None,
            )  # fmt: skip
            if person is None:
                continue
            f_names = _names_of(person, "first_names")
            l_names = _names_of(person, "last_names")
            if loc in ("zh_CN", "zh_TW", "ja_JP"):
                self.cjk_first.update(f_names)
                self.cjk_last.update(l_names)
            elif loc == "ko_KR":
                self.ko_first.update(f_names)
                self.ko_last.update(l_names)
            else:
                first.update(_fold(n) for n in f_names if " " not in n)
                last.update(_fold(n) for n in l_names if " " not in n)
        self.first = frozenset(first - _COMMON_WORDS)
        self.last = frozenset(last - _COMMON_WORDS)
        self.all = self.first | self.last


def _names_of(person: object, attr: str) -> set[str]:
    out: set[str] = set()
    for name in dir(person):
        if name.startswith(attr) or name.startswith(attr.replace("names", "name_")):
            value = getattr(person, name, None)
            if isinstance(value, dict):
                out.update(k for k in value if isinstance(k, str))
            elif isinstance(value, list | tuple):
                out.update(v for v in value if isinstance(v, str))
    return out


_names_lock = threading.Lock()


@lru_cache(maxsize=1)
def _names() -> _Names:
    with _names_lock:
        return _Names()


# --- structured values: Presidio, stdnum, phonenumbers -------------------------------------

# (recognizer, kind, quick test a text must pass before the recognizer is run at all)
_PRESIDIO: tuple[tuple[object, str, re.Pattern[str]], ...] = ()
_PRESIDIO_LOCK = threading.Lock()


def _presidio() -> tuple[tuple[object, str, re.Pattern[str]], ...]:
    global _PRESIDIO
    if not _PRESIDIO:
        with _PRESIDIO_LOCK:
            # Imported on first use: presidio_analyzer takes about 0.7 s to import, and every
            # Dagster step process loads the code location, most of them never de-identify.
            from presidio_analyzer.predefined_recognizers import (
                DeTaxIdRecognizer,
                EsNieRecognizer,
                EsNifRecognizer,
                FiPersonalIdentityCodeRecognizer,
                IbanRecognizer,
                InAadhaarRecognizer,
                InPanRecognizer,
                ItFiscalCodeRecognizer,
                KrRrnRecognizer,
                PlPeselRecognizer,
                SePersonnummerRecognizer,
                TrNationalIdRecognizer,
            )

            digits = re.compile(r"\d{4}")
            _PRESIDIO = (
                (IbanRecognizer(), IBAN, re.compile(r"(?i)\b[a-z]{2}\d{2}[ ]?[a-z0-9]{4}")),
                (EsNifRecognizer(), NATIONAL_ID, re.compile(r"\d{8}-?[A-Za-z]\b")),
                (EsNieRecognizer(), NATIONAL_ID, re.compile(r"(?i)\b[xyz]-?\d{7}")),
                (ItFiscalCodeRecognizer(), NATIONAL_ID, re.compile(r"(?i)[a-z]{6}\d{2}[a-z]")),
                (InAadhaarRecognizer(), NATIONAL_ID, re.compile(r"\d{4}[ -]?\d{4}[ -]?\d{4}")),
                (InPanRecognizer(), NATIONAL_ID, re.compile(r"(?i)\b[a-z]{5}\d{4}[a-z]\b")),
                (SePersonnummerRecognizer(), NATIONAL_ID, re.compile(r"\d{6}[-+]?\d{4}")),
                (PlPeselRecognizer(), NATIONAL_ID, re.compile(r"\d{11}")),
                (DeTaxIdRecognizer(), NATIONAL_ID, re.compile(r"\d{2} ?\d{3} ?\d{3} ?\d{3}")),
                (KrRrnRecognizer(), NATIONAL_ID, re.compile(r"\d{6}-?[1-4]\d{6}")),
                (FiPersonalIdentityCodeRecognizer(), NATIONAL_ID, re.compile(r"\d{6}[-+A]")),
                (TrNationalIdRecognizer(), NATIONAL_ID, digits),
            )
    return _PRESIDIO


# Presidio scores its checksum-validated matches 1.0; lower scores are pattern-only guesses
# that its AnalyzerEngine would raise or drop by context, which we do not run.
_PRESIDIO_MIN_SCORE = 0.5

_CPF_RE = re.compile(r"(?<![\d.])\d{3}\.\d{3}\.\d{3}-\d{2}(?![\d])")
_RIC_RE = re.compile(r"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])")
# Ids after a word that names them, any country: the word is the evidence, so no checksum.
_ID_CUE_RE = re.compile(
    # A bare "id" is a request, order or user id in logs; only "my id", "ID number"... count.
    r"(?:(?i:\b(?:(?:my|your|his|her|their|national|personal|citizen|government)[ \t]+id"
    r"|id(?=[ \t]*(?:number|num\b|no\b|no\.|nr\b|nr\.|#|card))|identity|identification"
    r"|dni|cpf|cnpj|personnummer|codice[ \t]+fiscale|aadhaar|aadhar|bsn|burgerservicenummer"
    r"|sofinummer|pesel|insee|steuer-?id|steuernummer|tax[ \t]+id|ssn|nino"
    r"|national[ \t]+insurance|social[ \t]+security|nric|hetu|tckn|ИНН|СНИЛС))"
    # Short ones that are also words (nie, pan, sin, rut...) only in capitals.
    r"|\b(?:NIE|NIF|RG|PAN|NIP|NIR|TIN|SIN|CURP|RFC|RUT)"
    r"|身份证号?|马来西亚身份证|マイナンバー|주민등록번호)(?!\w)"
    r"(?:[ \t]*(?:number|num|no\.?|nr\.?|#|n[º°o]\.?|号码|号|номер))?"
    r"(?:[ \t]*(?:is|es|est|è|é|ist|:|=|-|—|：|：)?[ \t]*){1,2}"
    # The value starts with a digit within its first seven characters ("was 550e..." is not)
    # and goes on over spaces only into digits or one- or two-letter groups ("AB 12 34 56 C").
    r"(?P<v>(?=[A-Za-z]{0,6}\d)[A-Za-z0-9]"
    r"(?:[A-Za-z0-9]|[.\-/](?=[A-Za-z0-9])|[ ](?=\d|[A-Z]{1,2}(?![A-Za-z]))){4,24})"
)
_ID_WORD_RE = re.compile(
    r"(?i:\bid\b|identi|dni|cpf|personnummer|fiscal|aadha|pesel|steuer|tax|ssn|insurance"
    r"|security|tckn|kimlik|hetu|henkilötunnus|ИНН|СНИЛС|национальн)|\b(?:NIE|NIF|PAN|TIN|SIN)\b"
    r"|身份证|マイナンバー|주민등록"
)
_UUID_LIKE_RE = re.compile(r"(?i)[0-9a-f]{8}-[0-9a-f]{4}")
_ID_TRIGGERS = Words((
    "id", "ident", "dni", "nie", "nif", "cpf", "cnpj", "rg", "personnummer", "fiscale",
    "aadha", "pan", "bsn", "burgerservice", "sofi", "pesel", "nip", "nir", "insee", "steuer",
    "tax", "tin", "ssn", "sin", "nino", "insurance", "security", "curp", "rfc", "rut", "nric",
    "hetu", "tckn", "инн", "снилс", "身份证", "マイナンバー", "주민등록",
))  # fmt: skip
_PASSPORT_TRIGGERS = Words((
    "pass", "pasaporte", "paspoort", "паспорт", "护照", "パスポート", "여권",
))  # fmt: skip
_PASSPORT_CUE_RE = re.compile(
    r"(?i:\b(?:passport|passeport|pasaporte|passaporto|paspoort|passnummer|reisepass"
    r"(?:nummer)?|pass[ \t]+nr\.?|паспорт|护照|パスポート|여권)"
    r"(?:[ \t]*(?:number|num|no\.?|nr\.?|#|n[º°o]\.?|numéro|número|numero|nummer|номер|号码|号))?)"
    r"(?:[ \t]*(?:is|es|est|è|ist|:|=|-|：)?[ \t]*){1,2}"
    r"(?P<v>[A-Za-z0-9](?:[A-Za-z0-9]|[ \-](?=[0-9])){5,11})(?![A-Za-z0-9])"
)
_PHONE_CANDIDATE_RE = re.compile(
    r"(?<![\w+/.:#-])(?:(?:\+|00)\d{1,3}[ .\-]?)?(?:\(\d{1,5}\)[ .\-]?)?\d[\d .\-]{5,16}\d"
    r"(?![\w]|[.\-/]\d)"
)
_PHONE_CUE_RE = re.compile(
    r"(?i)(?:phone|tel\b|tél|telefon|teléfono|telefone|telefono|téléphone|mobile|mobil|cell"
    r"|handy|whatsapp|call[ \t]+(?:me|us|him|her|them)|call[ \t]+(?:at|on)|calling|ring[ \t]+me"
    r"|text[ \t]+me|sms|fax|anruf|ruf[ \t]+mich|appelle|appeler|llámame|llamar|chiamami"
    r"|ligue|zadzwoń|позвони|звоните|bel[ \t]+(?:me|mij)|ring[ \t]+(?:mig|meg)|soita|zavolej"
    # "number" alone precedes order, case and reference numbers; a possessive makes it a phone.
    r"|(?:my|your|his|her|our|mon|ma|mi|mein|meine|mio|meu|mój|мой)[ \t]+(?:numéro|número"
    r"|numero|nummer|number|numer|номер)"
    r"|номер|телефон|тел\.|звоните|电话|手机|電話|携帯|전화|핸드폰|연락처|फ़ोन|फोन|هاتف|جوال)"
)
_DATE_LIKE_RE = re.compile(
    r"^(?:\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})(?:[ T]\d|$)"
    r"|^(?:19|20)\d\d[-/.]"  # a year first: a date or a reference (2024-0043-17)
    r"|^(?:19|20)\d\d[01]\d[0-3]\d(?!\d)"  # a compact date (20160525 13:30)
)


def _phone_ok(candidate: str, has_cue: bool) -> str | None:
    """The region ``candidate`` is a valid phone number of, or None."""
    digits = re.sub(r"\D", "", candidate)
    if not 7 <= len(digits) <= 15 or _DATE_LIKE_RE.match(candidate):
        return None
    formatted = bool(re.search(r"[ .\-()]", candidate.strip())) or candidate.startswith("+")
    stripped = candidate.strip()
    if re.search(r"(?:19|20)\d\d-[01]\d-[0-3]\d", stripped):
        return None  # a timestamp column (0 2011-01-01 09...)
    if re.fullmatch(r"\d+\.\d+", stripped):
        return None  # a decimal number (0.36787944), whatever the context
    groups = re.findall(r"\d+", stripped)
    if not has_cue and (
        "  " in stripped
        or ("." in stripped and re.search(r"[ \-]", stripped))
        or any(len(g) == 1 for g in groups[1:])
        or len(digits) < 9
    ):
        # Number columns and data ("0.8188 0.2458", "12 6 4 3 2 2 1") are not phones unless
        # something says so; people group a phone in one style, in groups of two or more.
        return None
    # Bare digit runs are order numbers and ids far more often than phones: only with a cue.
    if not formatted and not has_cue:
        return None
    if "." in candidate and not has_cue and candidate.count(".") >= 2:
        # 1.2.3-like version strings and dotted decimals need a cue to be phones.
        if re.fullmatch(r"\d{1,3}(?:\.\d{1,3}){2,}", candidate.strip()):
            return None
    text = candidate.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    regions = ("ZZ",) if text.startswith("+") else _phone_regions
    for region in regions:
        try:
            number = phonenumbers.parse(text, None if region == "ZZ" else region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return phonenumbers.region_code_for_number(number) or region
    return None


# A token with a digit right before a candidate: the candidate continues a longer code.
_CODE_BEFORE_RE = re.compile(r"(?:^|[\s(])[A-Za-z]*\d[A-Za-z0-9]*[ \-]$")


def find_phones(text: str, cue_window: str = "") -> list[Detection]:
    """Valid phone numbers of the configured regions, national formats included.

    ``cue_window`` is extra text counted as context (a JSON key such as ``phone``).
    """
    out = []
    for m in _PHONE_CANDIDATE_RE.finditer(text):
        before = text[max(0, m.start() - 40) : m.start()]
        has_cue = bool(_PHONE_CUE_RE.search(before) or _PHONE_CUE_RE.search(cue_window))
        if not has_cue and (
            _CODE_BEFORE_RE.search(before)
            or before.endswith("  ")
            or text[m.end() : m.end() + 2] == "  "
        ):
            # The tail of a longer code ("tracking 1Z 999 AA1 01 2345 6784"), or a column of
            # numbers ("501  502  503 ...  999 1000 1001"), not a phone.
            continue
        region = _phone_ok(m.group(), has_cue)
        if region:
            out.append(Detection(m.start(), m.end(), PHONE, region))
    return out


def find_ids(text: str) -> list[Detection]:
    """National ids (checksum-validated, or named by a cue) and passport numbers by cue."""
    out: list[Detection] = []
    if has_digit(text):
        for recognizer, kind, quick in _presidio():
            if not quick.search(text):
                continue
            entities = recognizer.supported_entities  # type: ignore[attr-defined]
            subject = text
            if kind == IBAN:
                # People type IBANs in lower case too; Presidio's pattern wants capitals.
                upper = text.upper()
                subject = upper if len(upper) == len(text) else text
            for r in recognizer.analyze(subject, entities, None):  # type: ignore[attr-defined]
                if r.score < _PRESIDIO_MIN_SCORE:
                    continue
                if text[r.start : r.end].isdigit() and not _ID_WORD_RE.search(
                    text[max(0, r.start - 48) : r.start]
                ):
                    # A bare digit run passing a one-in-ten checksum (PESEL, tax id, Aadhaar)
                    # is data in code and logs far more often than an id: only after a cue.
                    continue
                out.append(Detection(r.start, r.end, kind, type(recognizer).__name__))
        for m in _CPF_RE.finditer(text):
            if stdnum_valid(_cpf, m.group()):
                out.append(Detection(m.start(), m.end(), NATIONAL_ID, "pt_BR"))
        for m in _RIC_RE.finditer(text):
            if stdnum_valid(_ric, m.group()):
                out.append(Detection(m.start(), m.end(), NATIONAL_ID, "zh_CN"))
        low = text.lower()
        for m in _cue_finditer(_ID_CUE_RE, text, low, _ID_TRIGGERS):
            value = m.group("v")
            if (
                sum(c.isdigit() for c in value) >= 4
                and not _DATE_LIKE_RE.match(value)
                and not _UUID_LIKE_RE.match(value)
            ):
                out.append(Detection(m.start("v"), m.end("v"), NATIONAL_ID, "cue"))
        for m in _cue_finditer(_PASSPORT_CUE_RE, text, low, _PASSPORT_TRIGGERS):
            value = m.group("v")
            if sum(c.isdigit() for c in value) >= 3:
                out.append(Detection(m.start("v"), m.end("v"), PASSPORT, "cue"))
    return out


def stdnum_valid(module: object, value: str) -> bool:
    """``module.is_valid(value)`` of a python-stdnum module, False on any error (some raise
    more than ``ValidationError`` on odd input: cn.ric a KeyError for an unknown county)."""
    try:
        return bool(module.is_valid(value))  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - a validator's crash means "not this id"
        return False


# --- cards -------------------------------------------------------------------------------

_CARD_SEP_RE = re.compile(
    r"(?<![\d.\-/])\d{4}(?P<s>[./])\d{4}(?P=s)\d{4}(?P=s)\d{4}(?:(?P=s)\d{1,3})?(?![\d]|[./]\d)"
)


def luhn_ok(digits: str) -> bool:
    """Luhn check over the digits of ``digits``."""
    total = 0
    ds = [int(c) for c in digits if c.isdigit()]
    if len(ds) < 12:
        return False
    for i, d in enumerate(reversed(ds)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find_cards(text: str) -> list[Detection]:
    """Card numbers grouped with dots or slashes (deid's pattern covers spaces and dashes)."""
    return [
        Detection(m.start(), m.end(), PAYMENT_CARD)
        for m in _CARD_SEP_RE.finditer(text)
        if luhn_ok(m.group())
    ]


_SPLIT_TAIL_RE = re.compile(r"(?<![\w.\-])(\d{4}(?:[ \-]?\d{1,4}){0,3})[ \t]*[.,;:!?]?\s*$")
_SPLIT_HEAD_RE = re.compile(r"^\s*(\d{1,4}(?:[ \-]?\d{1,4}){0,3})(?![\d])")


def split_card(first: str, second: str) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """A card number whose digits end ``first`` and continue at the start of ``second``.

    Returns the (start, end) of each part when the joined digits are 13-19 long and pass the
    Luhn check, and neither part is a card on its own.
    """
    # The tail starts with a digit: the digit test skips searching (from every position of)
    # a turn without one.
    tail = _SPLIT_TAIL_RE.search(first) if has_digit(first) else None
    if not tail:
        return None
    head = _SPLIT_HEAD_RE.match(second)
    if not head:
        return None
    a, b = re.sub(r"\D", "", tail.group(1)), re.sub(r"\D", "", head.group(1))
    joined = a + b
    if not 13 <= len(joined) <= 19 or not luhn_ok(joined) or luhn_ok(a) or luhn_ok(b):
        return None
    return (tail.start(1), tail.end(1)), (head.start(1), head.end(1))


# --- emails --------------------------------------------------------------------------------

# Internationalised: Unicode letters in local part and domain (RFC 6531 / IDNA U-labels).
_IDN_EMAIL_RE = re.compile(
    r"(?<![\w.+%-])\w[\w.%+-]*@\w(?:[\w-]*\w)?(?:\.\w(?:[\w-]*\w)?)*\.(?:[^\W\d_]{2,24})(?![\w-])"
)
_TLDS = (
    "com|net|org|edu|gov|io|co|me|info|biz|de|fr|es|it|nl|se|pl|pt|br|mx|in|cn|jp|kr|ru|uk"
    "|au|ca|ch|at|be|dk|no|fi|ie|tr|za|ar|cl|us|eu|рф"
)
_AT = (
    r"(?:[ \t]*(?:\[at\]|\(at\)|\{at\}|<at>|\[@\]|\(@\))[ \t]*|[ \t]+(?:at|AT|At)[ \t]+"
    r"|[ \t]*@[ \t]*)"
)
_DOT = (
    r"(?:[ \t]*(?:\[dot\]|\(dot\)|\{dot\}|<dot>|\[\.\]|\(\.\))[ \t]*"
    r"|[ \t]+(?:dot|DOT|Dot)[ \t]+|\.)"
)
_LABEL = r"[\w][\w+\-]*"
_OBFUSCATED_EMAIL_RE = re.compile(
    rf"(?<![\w.])(?P<e>{_LABEL}(?:{_DOT}{_LABEL}){{0,3}}{_AT}{_LABEL}(?:{_DOT}{_LABEL}){{0,2}}"
    rf"{_DOT}(?i:{_TLDS}))(?![\w])"
)


def find_emails(text: str) -> list[Detection]:
    """Internationalised emails and emails spelled out to dodge filters (``x dot y at z dot
    com``, ``x [at] y [dot] es``); plain ASCII ones are deid's."""
    out = []
    if "@" in text:
        for m in _IDN_EMAIL_RE.finditer(text):
            if not m.group().isascii():
                out.append(Detection(m.start(), m.end(), EMAIL))
    if _obfuscation_possible(text) and _OBFUSCATION_HINT_RE.search(text):
        for m in _OBFUSCATED_EMAIL_RE.finditer(text):
            value = m.group("e")
            spelled_dot = re.search(r"(?i)[\[({<](?:dot|\.)[\])}>]|\sdot\s", value)
            bracket_at = re.search(r"(?i)[\[({<](?:at|@)[\])}>]", value)
            if not (spelled_dot or bracket_at or re.search(r"(?i)\sat\s", value)):
                continue
            if not (spelled_dot or bracket_at):
                # "x at y.com" only: prose says "available at amazon.com" too; a local part
                # with a dot, digit or underscore reads as a mailbox.
                local = re.split(r"(?i)\s+at\s+", value)[0]
                if not re.search(r"[._\d]", local):
                    continue
            out.append(Detection(m.start("e"), m.end("e"), EMAIL))
    return out


_OBFUSCATION_HINT_RE = re.compile(
    r"(?i)\bdot\b|[\[({<](?:at|@|dot|\.)[\])}>]|\sat\s+[\w-]+\.[a-z]{2,}"
)
# What re's \s matches in a str pattern (str.isspace(); a test checks every code point).
WHITESPACE = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
# A necessary condition of _OBFUSCATION_HINT_RE, in the lower-cased text: "dot", an opening
# bracket, or "at" between white space (re's IGNORECASE maps no character but the ASCII ones
# onto a, d, o or t, and lower-casing changes no white space or bracket).
_OBFUSCATION_WORDS = Words(
    ("dot", "[", "(", "{", "<", *(f"{a}at{b}" for a in WHITESPACE for b in WHITESPACE))
)


def _obfuscation_possible(text: str) -> bool:
    """Whether _OBFUSCATION_HINT_RE may match ``text``: one automaton pass, where the regex
    tries its alternatives at every position."""
    return _OBFUSCATION_WORDS.any_in(text.lower())


# --- secrets -------------------------------------------------------------------------------

_PROVIDER_KEY_RE = re.compile(
    r"(?<![\w-])(?:"
    r"hf_[A-Za-z0-9]{30,}"  # Hugging Face
    r"|SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"  # SendGrid
    r"|gsk_[A-Za-z0-9]{40,}"  # Groq
    r"|npm_[A-Za-z0-9]{30,}"  # npm
    r"|pypi-[A-Za-z0-9_\-]{40,}"  # PyPI
    r"|xapp-[A-Za-z0-9\-]{20,}"  # Slack app
    r"|sk_[a-z0-9]{32,}"  # ElevenLabs-style
    r"|r8_[A-Za-z0-9]{30,}"  # Replicate
    r"|dop_v1_[a-f0-9]{40,}"  # DigitalOcean
    r"|ya29\.[A-Za-z0-9_\-]{20,}"  # Google OAuth access token
    r"|(?:ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}"  # other AWS key ids
    r")(?![\w-])"
)
_WEBHOOK_RE = re.compile(
    r"https://(?:hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/_\-]{20,}"
    r"|(?:discord(?:app)?\.com)/api/webhooks/\d+/[A-Za-z0-9_\-]{20,}"
    r"|[\w-]+\.webhook\.office\.com/[\w/@\-]{20,})"
)
_BEARER_RE = re.compile(
    r"(?i:\b(?:bearer|token|basic))[ \t]+(?P<v>[A-Za-z0-9\-._~+/]{16,}=*)(?![\w\-.~+/=])"
)
_PASSWORD_CUE_RE = re.compile(
    r"(?i:\b(?:pass(?:word|wd|code)?|pwd|pw|pin|mot[ \t]+de[ \t]+passe|mdp|contraseña|clave"
    r"|senha|passwort|kennwort|password|пароль|密码|密碼|パスワード|비밀번호|wachtwoord"
    r"|lösenord|hasło|haslo|parola|şifre|sifre|salasana|adgangskode|heslo|jelszó)"
    r"(?:[ \t]+(?:for|of|de|du|für|для|del|di)[ \t]+\S+){0,1})"
    r"(?P<c>[ \t]+(?:is|was|will[ \t]+be|es|est|ist|è|é|era)[ \t]+"
    r"|[ \t]*(?:=|:|：|-|—|→|->)[ \t]*|[ \t]+)"
    r"(?P<q>[\"'`«“]?)(?P<v>[^\s\"'`«»“”]{4,64})"
)
# Cue words that are also ordinary words ("pass", "pin", "pw"): only with "is", ":" or "=".
_AMBIGUOUS_PASSWORD_CUES = frozenset(("pass", "pin", "pw", "pwd", "clave", "parola", "mdp"))
# Type names and keywords that follow "password:" in code.
_CODE_WORDS = frozenset(
    """
    str string int bool bytes none null optional any list dict self true false secretstr
    char varchar text field input type required object number undefined nil void
    """.split()
)
_PASSPHRASE_RE = re.compile(
    r"(?i:\bpass[ \t]?phrase)[ \t]*(?:is|=|:)?[ \t]*(?P<v>[^\n\"'`]{8,80}?)[ \t]*(?:$|[\"'`\n])",
    re.M,
)
# Words that follow "password is" without being one.
_NOT_PASSWORDS = frozenset(
    """
    incorrect wrong invalid correct expired required missing empty blank reset changed
    change weak strong same different saved stored hashed encrypted too not the a an my
    your our their this that it its still now also already just being set sent there here
    protected manager managers policy field fields length rules hint hints reset-link
    please sorry which what where when how why who same-as none null undefined true false
    yes no ok okay fine mandatory optional enabled disabled case-sensitive forgotten lost
    longer shorter secure insecure safe unsafe visible hidden masked needed necessary
    again anymore everywhere somewhere reused recovery protection authentication based
    """.split()
)


_PASSWORD_TRIGGERS = Words((
    "pass", "pwd", "pw", "pin", "mot de passe", "mdp", "contraseña", "clave", "senha",
    "kennwort", "пароль", "密码", "密碼", "パスワード", "비밀번호", "wachtwoord", "lösenord",
    "hasło", "haslo", "parola", "şifre", "sifre", "salasana", "adgangskode", "heslo", "jelszó",
))  # fmt: skip


def _password_ok(value: str) -> bool:
    bare = value.rstrip(".,;:)!?") if not re.search(r"[!?.]$", value[:-1] or "x") else value
    folded = bare.casefold()
    if folded in _NOT_PASSWORDS or folded in _CODE_WORDS or len(bare) < 4:
        return False
    if _CODE_VALUE_RE.search(bare) or bare.startswith(("-", "#", "os.", "self.")):
        return False
    if re.fullmatch(r"[a-z]+", bare) and len(bare) < 6:
        return False
    if bare.startswith(("$", "{", "<", "%", "*", "•")) or "..." in bare:
        return False
    return True


# Every alternative of _PROVIDER_KEY_RE begins with one of these (case-sensitive, as it is).
_PROVIDER_PREFIXES = Words((
    "hf_", "SG.", "gsk_", "npm_", "pypi-", "xapp-", "sk_", "r8_", "dop_v1_", "ya29.", "ASIA",
    "AGPA", "AIDA", "AROA", "ANPA", "ANVA", "AIPA",
))  # fmt: skip


def find_secrets(text: str) -> list[Detection]:
    """Provider keys beyond deid's prefixes, webhook URLs, bearer tokens, passwords in
    prose and passphrases."""
    out = []
    for m in _PROVIDER_KEY_RE.finditer(text) if _PROVIDER_PREFIXES.any_in(text) else ():
        out.append(Detection(m.start(), m.end(), SECRET))
    if "hook" in text:
        for m in _WEBHOOK_RE.finditer(text):
            out.append(Detection(m.start(), m.end(), SECRET))
    low = text.lower()
    if "bearer" in low or "token" in low or "basic" in low:
        for m in _BEARER_RE.finditer(text):
            value = m.group("v")
            if any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
                out.append(Detection(m.start("v"), m.end("v"), SECRET))
    for m in _cue_finditer(_PASSWORD_CUE_RE, text, low, _PASSWORD_TRIGGERS, after=120):
        value = m.group("v")
        connector = m.group("c").strip().lower()
        cue = text[m.start() : m.start("c")].strip().lower()
        if not connector and (
            cue.split()[-1] in _AMBIGUOUS_PASSWORD_CUES or re.fullmatch(r"[^\W\d_]+", value)
        ):
            continue  # "pass through", "a password during development"
        if connector in ("=", ":", "：") and re.fullmatch(r"[a-z]+", value):
            continue  # "password: str", "pin = filter" in code
        end = m.end("v")
        # Sentence punctuation after a password is not part of it unless quoted.
        if not m.group("q"):
            while value and value[-1] in ".,;:)" and len(value) > 4:
                value, end = value[:-1], end - 1
        if _password_ok(value):
            out.append(Detection(m.start("v"), end, SECRET))
    if "phrase" in low:
        for m in _PASSPHRASE_RE.finditer(text):
            out.append(Detection(m.start("v"), m.end("v"), SECRET))
    return out


# --- field names: the kind a key, header or "key: value" line announces ------------------

_KEY_EXCLUDE_RE = re.compile(
    r"(?:^|_)(?:name|names|ref|file|path|env|var|url|uri|id|type|length|len|count|policy"
    r"|header|field|prefix|hint|expiry|expires|expires_at|ttl|hash|salt|format|mask|regex"
    r"|pattern|min|max|size|limit|usage|template|label|placeholder|column|required|rules"
    r"|strength|reset|changed_at|updated_at|created_at|enabled|provider|region|scope|scopes)$"
    r"|tokens|tokenizer|token_type|^(?:max|min)_|ip_?address|mac_?address|email_?verified"
    r"|(?:bind|listen|server|remote|local|host|base|wallet|contract|memory|return|web|url)"
    r"_?address|file_?name|user_?name|host_?name|model_?name|display_?name|first_name_field"
)
_KEY_KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (PASSPORT, re.compile(r"passport|reisepass|passeport|pasaporte|passaporto|paspoort")),
    (IBAN, re.compile(r"iban|bank_?account|account_?(?:number|no|num)$|kontonummer")),
    (PAYMENT_CARD, re.compile(r"card_?(?:number|no|num)|credit_?card|^card$|^cc$|cc_?num")),
    (
        NATIONAL_ID,
        re.compile(
            r"ssn|social_?security|national_?id|id_?(?:number|no|num|card)$|identity|^dni$|^nie$"
            r"|^nif$|^cpf$|cnpj|personnummer|codice_?fiscale|fiscal_?code|aadhaar|^pan$"
            r"|pan_?(?:number|no|card)|^bsn$|pesel|nino|insurance_?number|tax_?id|steuer|^sin$"
            r"|^tin$|document_?(?:number|no)|身份证|инн|снилс"
        ),
    ),
    (EMAIL, re.compile(r"e_?mail|^mail$|mail_?address|courriel|correo|почта")),
    (
        PHONE,
        re.compile(
            r"phone|^tel$|telephone|telefon|telefono|teléfono|téléphone|mobile|^mobil$|^cell"
            r"|^handy$|whatsapp|^fax$|msisdn|телефон|电话|手机|電話|전화"
        ),
    ),
    (
        STREET_ADDRESS,
        re.compile(
            r"address|^addr|street|adresse|direcci[oó]n|indirizzo|endere[cç]o|^adres$|адрес"
            r"|地址|住所|주소"
        ),
    ),
    (
        PERSON_NAME,
        re.compile(
            r"(?:^|_)(?:full_?name|first_?name|last_?name|given_?name|family_?name|surname"
            r"|customer|contact|recipient|sender|patient|employee|author|attendee|owner"
            r"|account_?holder|holder|cardholder|signed_?by|nombre|apellido|prenom|prénom|nom"
            r"|vorname|nachname|cognome|nome|имя|фамилия|фио|姓名|名前|氏名|이름)(?:_?name)?$"
            r"|^name$|(?:^|_)(?:customer|contact|person|user|client|patient|holder|sender"
            r"|recipient|emergency_contact|guest|passenger|traveller|traveler)_?name$"
        ),
    ),
    (
        SECRET,
        re.compile(
            r"pass(?:word|wd|phrase|code)?$|^pwd$|secret|token$|^auth$|authorization|api_?key"
            r"|apikey|access_?key|private_?key|credential|account_?key|shared_?access_?key|webhook"
            r"|master_?key|encryption_?key|secret_?key|shared_?key|license_?key"
            r"|client_?secret|signing_?key|auth_?token|session_?key|mot_?de_?passe|contrase"
            r"|senha|passwort|пароль|密码"
        ),
    ),
)


def _normal_key(key: str) -> str:
    # camelCase and kebab/space/dot separators to snake_case, lower-cased.
    key = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key.strip().strip("\"'`"))
    return re.sub(r"[\s.\-]+", "_", key).lower().strip("_")


_KEY_TAIL_RE = re.compile(
    r"(?:s|_?(?:number|numbers|no|num|nr|value|str|string|text|raw|full|key|line_?\d|\d)|_?\d)?"
)


@lru_cache(maxsize=4096)
def kind_for_key(key: str) -> str | None:
    """The PII kind a field name announces (``customer_phone`` -> phone), or None."""
    norm = _normal_key(key)
    if not norm or len(norm) > 60:
        return None
    base = norm.removeprefix("by_").removeprefix("customer_").removeprefix("user_")
    for kind, pattern in _KEY_KINDS:
        for candidate in (norm, base):
            # A field is named after what it holds, last: "customer_phone", "phone_number";
            # "secrets_manager_source" or "phone_validator" hold something else.
            if any(
                _KEY_TAIL_RE.fullmatch(candidate[m.end() :]) for m in pattern.finditer(candidate)
            ):
                if _KEY_EXCLUDE_RE.search(norm) and kind not in (PERSON_NAME, NATIONAL_ID):
                    return None
                if kind == PERSON_NAME and re.search(
                    r"(?:file|host|model|display|user|tool|function|field|class|app|project"
                    r"|bucket|table|column|queue|topic|repo|branch|service|package|module"
                    r"|image|container|node|cluster)_?name$",
                    norm,
                ):
                    return None
                return kind
    return None


_PLACEHOLDER_RE = re.compile(
    r"^(?:\$|%|\{\{|<|\[|os\.|process\.env|env\(|getenv|none$|null$|nil$|true$|false$"
    r"|undefined$|\*+$|x+$|redacted|changeme$|your[_\-a-z]*$|example|placeholder|todo$|tbd$"
    r"|n/?a$|-+$|\.\.\.)",
    re.I,
)


# A value that is code, not data: calls, indexing, attribute paths, operators.
_CODE_VALUE_RE = re.compile(
    r"[()\[\]{}]|^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+$|^(?:self|this|cls|os|sys|None|True|False)\b"
    r"|\s(?:==|=>|->|&&|\|\|)\s|^[a-z]+(?:_[a-z0-9]+)+$"
)


def value_fits(
    kind: str, value: str, *, generic_key: bool = False, lower_known: bool = False
) -> bool:
    """Whether ``value``, found under a field of ``kind``, should be replaced whole.

    ``generic_key``: the field is called just ``name`` (stricter: see :func:`looks_like_name`);
    ``lower_known``: a lower-case word from the name lists still counts (table cells).
    """
    value = value.strip()
    if not value or len(value) > 200 or _PLACEHOLDER_RE.match(value):
        return False
    if kind != PHONE and _CODE_VALUE_RE.search(value):
        return False
    digits = sum(c.isdigit() for c in value)
    if kind == PERSON_NAME:
        return looks_like_name(value, strict=generic_key, lower_known=lower_known)
    if kind == STREET_ADDRESS:
        if re.fullmatch(r"[\w.\-]+:\d+|[\d.:a-fA-F/]+|https?://\S+|0x[0-9a-fA-F]+", value):
            return False
        words = [w for w in _WORD_RE.findall(value) if len(w) >= 2]
        han = re.search(rf"[{_HAN}{_HANGUL}]{{3}}", value)
        return bool(words or han) and (digits > 0 or len(words) >= 2 or bool(han))
    if kind == SECRET:
        if "\n" in value or re.fullmatch(r"[a-z]{1,5}", value) or value.lower() in _CODE_WORDS:
            return False
        if re.fullmatch(r"(?:[A-Z][a-z]+)+", value) or value.startswith("#"):
            return False  # a class or type name (Credentials), a colour or comment (#d0d0d0)
        if " " in value and not re.fullmatch(r"[a-z]+(?: [a-z]+){1,5}", value):
            return False  # a passphrase is lower-case words; "Port number as integer" is prose
        return len(value) >= 4 and (not value.isdigit() or len(value) >= 8)
    if kind == EMAIL:
        return "@" in value or bool(re.search(r"(?i)\s(?:at|dot)\s|\[(?:at|dot)\]", value))
    if len(value) > 48 or not re.fullmatch(r"[\w .\-()/+#]+", value):
        return False
    return digits >= (3 if kind == PASSPORT else 5)


_NAME_STOP = frozenset(
    """
    and or the a an of to in on at for from with by is am are was be i me my you your we our
    he she they it this that here there not no yes ok please thanks thank hi hello hey dear
    team support admin user guest test unknown none null n/a sir madam everyone all customer
    """.split()
)


def looks_like_name(value: str, *, strict: bool = False, lower_known: bool = False) -> bool:
    """Whether ``value`` reads as a person's name in any script (1-4 words, letters only).

    ``strict`` (a field called just ``name``): Latin words must be capitalised and a single
    word must be in the name lists, so ``name: Checkout`` in a workflow file stays.
    """
    value = value.strip()
    if not value or len(value) > 60 or any(c.isdigit() for c in value):
        return False
    compact = value.replace(" ", "")
    if re.fullmatch(rf"[{_HAN}{_KANA}]{{2,5}}", compact):
        names = _names()
        return any(compact[:n] in names.cjk_last for n in (1, 2, 3))
    if re.fullmatch(rf"[{_HANGUL}]{{2,5}}", compact):
        return compact[:1] in _names().ko_last and len(compact) <= 4
    words = value.replace(".", " ").split()
    if not 1 <= len(words) <= 4 or not all(_WORD_RE.fullmatch(w) for w in words):
        return False
    if any(_fold(w) in _NAME_STOP or _fold(w) in _CODE_WORDS for w in words):
        return False
    if strict:
        if not any(_fold(w) in _names().all for w in words) and not any(
            script_locale(w) for w in words
        ):
            return False  # name = 'TLS Presentation Language'
        cased = [w for w in words if w[0].isupper() or w[0].islower()]
        names = _names()
        if any(
            w[0].islower()
            and _fold(w) not in _PARTICLES
            and not (lower_known and _fold(w) in names.all)
            for w in cased
        ):
            return False
        if len(words) == 1 and _fold(words[0]) not in _names().all:
            return False
    return True


_PARTICLES = frozenset(
    "da de del della der di do dos das du la le van von ten ter y bin al".split()
)
_KV_RE = re.compile(
    r"(?m)(?:^|(?<=[\s{,;(\[]))[\"']?(?P<k>[A-Za-z_\u0400-\u04ff][\w.\-\u0400-\u04ff]{1,48}"
    r"|[\u4e00-\u9fff]{2,4})[\"']?[ \t]*(?:=|:|：|=>)[ \t]*"
    # The value is only looked at, not consumed: "note: API_KEY=..." holds two pairs.
    r"(?=(?P<q>[\"'])(?P<qv>[^\"'\n]{1,200})(?P=q)|(?P<v>[^\n\"'{}\[\],;|]{1,200}))"
)


def _trim_structured(value: str) -> str:
    """The identifier at the start of a ``key: value`` tail: groups of digits and capitals,
    up to the first ordinary word ("GB29 NWBK 6016 ... is confidential" -> the IBAN)."""
    kept: list[str] = []
    for token in value.split(" "):
        core = token.strip("()")
        if not core:
            if kept:
                kept.append(token)
            continue
        if any(c.isdigit() for c in core) or (core.isupper() and len(core) <= 5):
            kept.append(token)
            if re.search(r"[,;:.]$", token) or token.count(")") > token.count("("):
                break
            continue
        break
    out = " ".join(kept).rstrip()
    while out and out[-1] in ".,;:)" and out.count("(") < out.count(")") + (out[-1] != ")"):
        out = out[:-1]
    return out.rstrip(" .,;:")


def _leading_name(value: str, *, generic: bool) -> str:
    """The longest run of leading words that reads as a name ("Ana Ruiz) is ..." -> Ana Ruiz)."""
    head = re.split(r"[()\[\],;|]", value, maxsplit=1)[0].strip()
    words = head.split()
    for n in range(min(4, len(words)), 0, -1):
        candidate = " ".join(words[:n])
        if looks_like_name(candidate, strict=generic):
            return candidate
    return ""


def find_key_values(text: str) -> list[Detection]:
    """Values of ``key: value`` / ``KEY=value`` / ``"key": "value"`` lines whose key names a
    PII kind (configs, YAML, .env files, code literals, signature blocks)."""
    out = []
    if ":" not in text and "=" not in text:
        return out
    for m in _KV_RE.finditer(text):
        kind = kind_for_key(m.group("k"))
        if kind is None:
            continue
        start, end = (m.start("qv"), m.end("qv")) if m.group("q") else (m.start("v"), m.end("v"))
        value = text[start:end]
        if not m.group("q") and re.match(r"[A-Za-z_]\w*[\[(.]\w", value):
            continue  # colors['base0'], f(x), obj.attr: code, not a value
        if _normal_key(value.strip().rstrip(",;")).strip("_") == _normal_key(
            m.group("k").split(".")[-1]
        ).strip("_"):
            continue  # authorization=authorization, self._credentials = credentials
        stripped = value.rstrip()
        if kind == SECRET:
            # "Authorization: Bearer <token>": the scheme word is not the secret.
            scheme = re.match(r"(?i)(?:bearer|basic|token)[ \t]+", stripped)
            if scheme:
                start += scheme.end()
                stripped = stripped[scheme.end() :]
            stripped = stripped.split()[0] if stripped.split() and not re.search(
                r"(?i)phrase", m.group("k")) else stripped  # fmt: skip
        if kind == SECRET and not m.group("q") and re.fullmatch(r"[a-z]+", stripped.strip()):
            continue  # "passwd: secret" in a sample config, "token: before": a word, unquoted
        if kind in (PHONE, IBAN, NATIONAL_ID, PASSPORT, PAYMENT_CARD):
            stripped = _trim_structured(stripped)
        elif kind == PERSON_NAME:
            stripped = _leading_name(stripped, generic=_normal_key(m.group("k")) == "name")
        elif kind in (EMAIL, SECRET):
            stripped = stripped.rstrip(".)")
        # In free text a name value must be capitalised or a known name ("owner: type" is a
        # type annotation, "customer_name: maria" a name).
        strict = kind == PERSON_NAME
        if not value_fits(kind, stripped, generic_key=strict, lower_known=True):
            continue
        lead = len(value) - len(value.lstrip())
        out.append(Detection(start + lead, start + len(stripped), kind, "key"))
    return out


# --- addresses outside the US ----------------------------------------------------------------

_CAP = rf"[{_UP}][{_LO}'’\-]*"
_STREET_NAME = (
    rf"(?:{_CAP}|\d{{1,2}}(?:er|e|º|ª)?)(?:[ \t]+(?:{_CAP}|de|del|della|di|da|do|dos|das|du"
    r"|des|la|le|l'|d'|von|van|der|am|an|im|y|e|i))*"
)
# ", 75001 Paris", ", 00-514 Warszawa", ", 111 21 Stockholm", ", 1016 GV Amsterdam"
_POSTAL_TAIL = (
    rf"(?:,?[ \t]+(?:\d{{5}}|\d{{2}}-\d{{3}}|\d{{3}}[ \t]\d{{2}}|\d{{4}}(?:[ \t]?[A-Z]{{2}})?)"
    rf"[ \t]+{_CAP}(?:[ \t]+{_CAP})?)?"
)
_UNIT = (
    r"(?:,?[ \t]*(?:\d{1,2}º[ \t]*[A-Z]?|\d{1,2}[ \t]*(?:izq|dcha|piso)\.?"
    r"|(?:app?t?|bte|esc|piso|int|m|lok|kv|кв)\.?[ \t]*\d+[A-Za-z]?))?"
)
_ADDRESS_RES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Romance languages, Polish, Portuguese, Dutch "street-word name number": Calle Mayor 10
    (
        re.compile(
            r"(?<![\w])(?:Calle|C/|Avenida|Avda\.|Av\.|Paseo|Plaza|Pza\.|Camino|Carrer|Carretera"
            r"|Ronda|Travesía|Via|Viale|Piazza|Piazzale|Corso|Vicolo|Largo|Strada|Rua|Travessa"
            r"|Praça|Alameda|Estrada|ul\.|ulica|al\.|aleja|os\.|osiedle|pl\.|plac)"
            rf"[ \t]+{_STREET_NAME},?[ \t]+(?:n[º°o]\.?[ \t]*)?\d{{1,4}}(?:[/\-]\d{{1,4}})?"
            r"[A-Za-z]?"
            rf"{_UNIT}{_POSTAL_TAIL}",
            re.I,
        ),
        "es_ES",
    ),
    # French: 12 rue de Rivoli, 5 bis avenue Foch
    (
        re.compile(
            r"(?<![\w])\d{1,4}(?:[ \t]?(?:bis|ter|[A-Ba-b]))?,?[ \t]+(?:rue|avenue|av\.|boulevard"
            r"|bd|chemin|place|allée|allee|impasse|quai|route|cours|square|passage|voie)"
            rf"[ \t]+{_STREET_NAME}{_POSTAL_TAIL}",
            re.I,
        ),
        "fr_FR",
    ),
    # German, Dutch, Nordic compounds: Hauptstraße 5, Prinsengracht 263, Drottninggatan 53
    (
        re.compile(
            rf"(?<![\w])(?:{_CAP}[ \t\-])?[{_UP}][{_LO}\-]*(?:straße|strasse|str\.|weg|gasse"
            r"|allee|platz|ring|damm|ufer|chaussee|steig|pfad|straat|gracht|laan|plein|kade"
            r"|singel|dijk|gatan|vägen|gränd|torget|stigen|gata|gate|veien|vej|gade|tie|katu)"
            rf"[ \t]+\d{{1,4}}[a-zA-Z]?(?:[ \t]*[/\-][ \t]*\d{{1,4}})?{_POSTAL_TAIL}"
        ),
        "de_DE",
    ),
    # Russian / Ukrainian: ул. Тверская, д. 7, кв. 12
    (
        re.compile(
            r"(?<![\w])(?:ул\.|улица|пр\.|просп\.|проспект|пер\.|переулок|бул\.|бульвар|ш\."
            r"|шоссе|наб\.|набережная|пл\.|площадь|вул\.|вулиця)[ \t]*"
            rf"{_CAP}(?:[ \t]+{_CAP})*,?[ \t]*(?:д\.|дом)?[ \t]*\d{{1,4}}[\w/]*"
            r"(?:,?[ \t]*(?:кв\.|корп\.|стр\.|к\.)[ \t]*\d+[\w/]*)*"
        ),
        "ru_RU",
    ),
    # Chinese: 北京市朝阳区建国路88号
    (
        re.compile(
            rf"(?:[{_HAN}]{{1,8}}(?:省|市|区|县|镇|乡))*[{_HAN}]{{1,10}}(?:路|街|大道|道|巷|弄|胡同)"
            rf"[ \t]?(?:\d{{1,5}}|[一二三四五六七八九十百]+)号"
            rf"(?:[{_HAN}\d]{{0,8}}(?:室|楼|单元|栋))?"
        ),
        "zh_CN",
    ),
    # Japanese: 東京都千代田区丸の内1-9-1
    (
        re.compile(
            rf"(?:東京都|北海道|大阪府|京都府|[{_HAN}]{{2,3}}県)[{_HAN}{_KANA}]{{1,8}}[市区町村]"
            rf"[{_HAN}{_KANA}]{{0,10}}\d{{1,4}}(?:(?:丁目|番地?|号|[-－])\d{{0,4}}){{1,4}}"
        ),
        "ja_JP",
    ),
    # Korean road addresses: 서울특별시 강남구 테헤란로 152
    (
        re.compile(
            rf"(?:[{_HANGUL}]{{2,8}}(?:시|도)[ \t]+)?[{_HANGUL}]{{1,6}}(?:구|군)[ \t]+"
            rf"[{_HANGUL}\d]{{1,10}}(?:로|길)[ \t]*\d{{1,4}}(?:-\d{{1,4}})?"
        ),
        "ko_KR",
    ),
)


# Words one of which a text must hold before each address pattern runs (same order).
_ADDRESS_TRIGGERS: tuple[Words, ...] = tuple(Words(words) for words in (
    ("calle", "c/", "avenida", "avda", "av.", "paseo", "plaza", "pza", "camino", "carrer",
     "carretera", "ronda", "travesía", "via", "piazza", "corso", "vicolo", "largo", "strada",
     "rua", "travessa", "praça", "alameda", "estrada", "ul.", "ulica", "al.", "aleja", "os.",
     "osiedle", "pl.", "plac"),
    ("rue", "avenue", "av.", "boulevard", "bd", "chemin", "place", "allée", "allee",
     "impasse", "quai", "route", "cours", "square", "passage", "voie"),
    ("str", "weg", "gasse", "allee", "platz", "ring", "damm", "ufer", "chaussee", "steig",
     "pfad", "gracht", "laan", "plein", "kade", "singel", "dijk", "gatan", "vägen", "gränd",
     "torget", "stigen", "gata", "gate", "veien", "vej", "gade", "tie", "katu"),
    ("ул", "улица", "пр.", "просп", "пер.", "переулок", "бул", "ш.", "шоссе", "наб", "пл.",
     "площадь", "вул"),
    ("路", "街", "道", "巷", "弄", "胡同"),
    ("都", "道", "府", "県"),
    ("로", "길"),
))  # fmt: skip


def find_addresses(text: str) -> list[Detection]:
    """Street addresses in the forms used outside the US (street word before or after the
    name, house number after it, postal code and city), in Latin, Cyrillic, CJK and Hangul."""
    out = []
    low = text.lower()
    for (pattern, locale), triggers in zip(_ADDRESS_RES, _ADDRESS_TRIGGERS, strict=True):
        if not _any_in(low, triggers):
            continue
        for m in pattern.finditer(text):
            out.append(Detection(m.start(), m.end(), STREET_ADDRESS, locale))
    return out


# --- names -----------------------------------------------------------------------------------

# Strong cues: what follows is a name whatever its case ("my name is maria").
_STRONG_CUE_RE = re.compile(
    r"(?i:\bmy[ \t]+name[ \t]+is|\bmy[ \t]+name's|\bname's|\bcall[ \t]+me|\bi[ \t]+go[ \t]+by"
    r"|\bi[ \t]+am[ \t]+called|\bje[ \t]+m'appelle|\bje[ \t]+m’appelle|\bmon[ \t]+nom[ \t]+est"
    r"|\bme[ \t]+llamo|\bmi[ \t]+nombre[ \t]+es|\bich[ \t]+heiße|\bich[ \t]+heisse"
    r"|\bmein[ \t]+name[ \t]+ist|\bmi[ \t]+chiamo|\bil[ \t]+mio[ \t]+nome[ \t]+è"
    r"|\bmeu[ \t]+nome[ \t]+é|\bme[ \t]+chamo|\bmijn[ \t]+naam[ \t]+is|\bik[ \t]+heet"
    r"|\bjag[ \t]+heter|\bmitt[ \t]+namn[ \t]+är|\bnazywam[ \t]+się|\bmam[ \t]+na[ \t]+imię"
    r"|\bbenim[ \t]+adım|\badım|меня[ \t]+зовут|моё[ \t]+имя|мое[ \t]+имя|мене[ \t]+звати"
    r"|με[ \t]+λένε|ονομάζομαι|اسمي|انا[ \t]+اسمي|मेरा[ \t]+नाम|שמי|קוראים[ \t]+לי"
    r"|제[ \t]+이름은|내[ \t]+이름은|저는|私の名前は|私は|我叫|我的名字是|我的名字叫|我是)"
    r"[ \t]*[:,]?[ \t]*"
)
# Weaker cues: a name follows only when it is capitalised or in a caseless script, or a
# lower-case word that is in the name lists.
_WEAK_CUE_RE = re.compile(
    r"(?i:\bi'm|\bi’m|\bi[ \t]+am|\bthis[ \t]+is|\bit's|\bit’s|\bsoy|\bje[ \t]+suis|\bich[ \t]+bin"
    r"|\bsono|\bsou|\bэто|\bя|\bhi|\bhello|\bhey|\bdear|\bпривет|\bздравствуйте|\bhola"
    r"|\bbonjour|\bhallo|\bciao|\bolá|\bcześć|\bhej|\bmy[ \t]+(?:wife|husband|partner|son"
    r"|daughter|friend|boss|manager|colleague|neighbou?r|landlord|doctor|brother|sister|mom"
    r"|mum|dad|mother|father|client|tenant|cousin)|\bmr\.?|\bmrs\.?|\bms\.?|\bdr\.?)"
    r"(?<=[.\w])(?![\w])[ \t]*,?[ \t]*"
)
_STRONG_TRIGGERS = Words((
    "name", "call me", "go by", "called", "appelle", "nom est", "llamo", "nombre", "heiße",
    "heisse", "chiamo", "nome", "chamo", "naam", "heet", "heter", "namn", "nazywam", "imię",
    "adım", "зовут", "имя", "звати", "λένε", "ονομάζομαι", "اسمي", "नाम", "שמי", "קוראים",
    "이름은", "저는", "名前", "私は", "我叫", "名字", "我是",
))  # fmt: skip
_WEAK_TRIGGERS = Words((
    "i'm", "i’m", "i am", "this is", "it's", "it’s", "soy", "suis", "bin", "sono", "sou",
    "это", "я", "hi", "hello", "hey", "dear", "привет", "здравств", "hola", "bonjour",
    "hallo", "ciao", "olá", "cześć", "hej", "my", "mr", "ms", "dr",
))  # fmt: skip
# What every match of _STRONG_CUE_RE / _WEAK_CUE_RE in an ASCII text begins with (lower-cased,
# after \b): their alternatives' ASCII openings. "adim" is there because re's IGNORECASE
# matches the dotless "ı" of "adım" to "i"; the other non-ASCII alternatives cannot match
# ASCII text.
_STRONG_STARTS = Words((
    "my", "name's", "call", "i ", "i\t", "je", "mon", "me", "mi", "ich", "mein", "il", "meu",
    "mijn", "ik", "jag", "mitt", "nazywam", "mam", "benim", "adim",
))  # fmt: skip
_WEAK_STARTS = Words((
    "i'm", "i ", "i\t", "this", "it's", "soy", "je", "ich", "sono", "sou", "hi", "hello", "hey",
    "dear", "hola", "bonjour", "hallo", "ciao", "hej", "my", "mr", "ms", "dr",
))  # fmt: skip
_SIGNOFF_TRIGGERS = Words((
    "regards", "best", "thank", "thx", "cheers", "sincerely", "yours", "love", "br", "mvh",
    "lg", "vg", "уважением", "спасибо", "saludo", "atentamente", "cordialement", "vous",
    "merci", "grüß", "gruß", "saluti", "grazie", "obrigad", "abraços", "atenciosamente",
    "pozdrawiam", "groet", "hälsningar", "此致", "谢谢", "敬上", "よろしく", "감사합니다", "التحية",
    "धन्यवाद",
))  # fmt: skip
_SIGNOFF_RE = re.compile(
    r"(?im)^[ \t]*(?:regards|best[ \t]+regards|kind[ \t]+regards|warm[ \t]+regards|best"
    r"|best[ \t]+wishes|thanks|thank[ \t]+you|thx|cheers|sincerely|yours|yours[ \t]+truly"
    r"|love|br|mvh|lg|vg|с[ \t]+уважением|спасибо|saludos|un[ \t]+saludo|atentamente"
    r"|cordialement|bien[ \t]+à[ \t]+vous|merci|grüße|viele[ \t]+grüße|liebe[ \t]+grüße"
    r"|mit[ \t]+freundlichen[ \t]+grüßen|gruß|distinti[ \t]+saluti|cordiali[ \t]+saluti"
    r"|saluti|grazie|obrigado|obrigada|abraços|atenciosamente|pozdrawiam|groeten"
    r"|met[ \t]+vriendelijke[ \t]+groet|hälsningar|med[ \t]+vänliga[ \t]+hälsningar"
    r"|此致|谢谢|敬上|よろしくお願いします|감사합니다|مع[ \t]+التحية|धन्यवाद)"
    r"[ \t]*[,.!:]?[ \t]*\n[ \t]*(?P<n>[^\n]{1,40})[ \t]*$"
)
_DASH_SIG_RE = re.compile(r"(?m)^[ \t]*(?:--|—|–|~)[ \t]*(?P<n>[^\n\-—–~][^\n]{0,39})[ \t]*$")


def _name_tokens(text: str, pos: int, *, any_case: bool, limit: int = 3) -> tuple[int, int] | None:
    """The span of up to ``limit`` name words starting at ``pos`` (None when none)."""
    names = _names()
    tail = text[pos : pos + 80]
    # CJK right after the cue: surname + given name, no spaces.
    han = re.match(rf"[{_HAN}]{{2,4}}", tail)
    if han:
        span = _cjk_name(han.group(), 0, cue=True)
        return (pos + span[0], pos + span[1]) if span else None
    hangul = re.match(rf"[{_HANGUL}]{{2,4}}", tail)
    if hangul:
        stem = _strip_korean(hangul.group())
        return (pos, pos + len(stem)) if 2 <= len(stem) <= 4 else None
    end = None
    count = 0
    for m in re.finditer(rf"[ \t]*(?P<w>{_WORD_RE.pattern})", tail):
        if m.start() != (end - pos if end is not None else 0):
            break
        word = m.group("w")
        folded = _fold(word)
        if folded in _NAME_STOP or folded in _CUE_STOP:
            break
        caseless = not (word[0].isupper() or word[0].islower())
        if word[0].islower() and not caseless:
            known = folded in names.all
            if folded in _PARTICLES and count:
                pass
            elif not (any_case and count == 0) and not known:
                break
        end = pos + m.end()
        count += 1
        if count >= limit:
            break
    if end is None:
        return None
    return (pos + (len(tail[: end - pos]) - len(tail[: end - pos].lstrip())), end)


_CUE_STOP = frozenset(
    """
    sorry going trying looking working writing asking wondering hoping planning thinking
    using building learning getting making doing feeling reaching back done new happy glad
    sure fine good great well really very quite pretty totally kind sort also just still
    not here there from with about at in on to for and but so because when if as is was
    will would can could should have has had been being need needs needed want wants
    """.split()
)
_KO_SUFFIX_RE = re.compile(r"(?:입니다|이에요|예요|이고|씨|님|은|는|이|가|을|를|에게|의)$")


def _strip_korean(token: str) -> str:
    return _KO_SUFFIX_RE.sub("", token)


def _cjk_name(run: str, offset: int, *, cue: bool) -> tuple[int, int] | None:
    """Surname + given name at the start of a Han run (2-4 characters)."""
    names = _names()
    for surname_len in (3, 2, 1):
        surname = run[:surname_len]
        if surname not in names.cjk_last:
            continue
        rest = run[surname_len:]
        for given_len in (2, 1):
            given = rest[:given_len]
            if len(given) == given_len and given in names.cjk_first:
                return offset, offset + surname_len + given_len
        if cue and 1 <= len(rest):
            return offset, offset + surname_len + min(len(rest), 2)
    return None


_HONORIFIC_RE = re.compile(r"(?:先生|女士|小姐|老师|同学|经理|さん|様|さま|君|ちゃん|氏|씨|님)")
_CJK_CUE_BEFORE_RE = re.compile(
    r"(?:叫|是|名字|姓名|联系人|联系|收件人|致|给|和|与|跟|找|告诉|通知|私は|名前は|氏名|担当)"
    r"[:：]?[ \t]*$"
)


def _cjk_names(text: str) -> list[Detection]:
    out = []
    names = _names()
    for m in re.finditer(rf"[{_HAN}]{{2,12}}", text):
        run = m.group()
        before = text[max(0, m.start() - 6) : m.start()]
        after = text[m.end() : m.end() + 3]
        alone = (
            len(run) <= 4
            and not re.search(rf"[{_HAN}{_KANA}]$", before)
            and not re.match(rf"[{_KANA}]", after)
        )
        if alone:
            span = _cjk_name(run, m.start(), cue=False)
            if span and span[1] - span[0] == 2 and run[:2] not in names.cjk_last:
                # Two characters alone are a word more often than a name (强调, 谢谢).
                span = None
            if span and span[1] == m.end():
                out.append(Detection(*span, PERSON_NAME, script_locale(run)))
                continue
            if span is None and (run[:2] in names.cjk_last or run[:3] in names.cjk_last):
                out.append(Detection(m.start(), m.end(), PERSON_NAME, script_locale(run)))
                continue
        # Inside a longer run: a name after a cue word or before an honorific.
        for i in range(len(run) - 1):
            head = text[max(0, m.start() + i - 6) : m.start() + i]
            span = _cjk_name(run[i:], m.start() + i, cue=False)
            if span is None:
                continue
            honorific = _HONORIFIC_RE.match(text, span[1])
            if _CJK_CUE_BEFORE_RE.search(head) or honorific:
                out.append(Detection(*span, PERSON_NAME, script_locale(run)))
                break
    for m in re.finditer(rf"(?<![{_HANGUL}])[{_HANGUL}]{{2,8}}", text):
        stem = _strip_korean(m.group())
        if len(stem) == 3 and stem[0] in names.ko_last and stem[1:] in names.ko_first:
            out.append(Detection(m.start(), m.start() + 3, PERSON_NAME, "ko_KR"))
    return out


_SURNAME_ENDING_RE = re.compile(r"(?:ов|ев|ин|ская|ский|ова|ева|ина|ко|ук|юк|ης|ος|ου|ας)$")


_TITLE_WORD = rf"[{_UP}][{_LO}]+(?:['’\-][{_UP}{_LO}][{_LO}]+)?"
_CASELESS_WORD = rf"[{_CASELESS}]+"
# Two or three adjacent capitalised words, or caseless-script words: the only places a pair
# of names can be, found by the regex engine rather than a Python loop over every word.
_PAIR_RE = re.compile(
    rf"(?=(?<![\w'’\-])(?:(?P<a>{_TITLE_WORD})[ \t](?P<b>{_TITLE_WORD})"
    rf"(?:[ \t](?P<c>{_TITLE_WORD}))?|(?P<x>{_CASELESS_WORD})[ \t](?P<y>{_CASELESS_WORD}))"
    r"(?![\w'’\-]))"
)


_HAN_RE = re.compile(rf"[{_HAN}]")
_HAN_HANGUL_RE = re.compile(rf"[{_HAN}{_HANGUL}]")
# In an ASCII text a match of _PAIR_RE holds a lower-case letter (the end of its first title
# word), a space or tab, then a capital and a lower-case letter (its second): without one,
# _PAIR_RE cannot match and is not run (it costs a lookahead at every position).
_PAIR_HINT_RE = re.compile(r"[ \t][A-Z][a-z]")


def _pair_possible(text: str) -> bool:
    r"""Whether an ASCII ``text`` holds ``[a-z][ \t][A-Z][a-z]`` (the regex searched from its
    rarer second character on; two of its matches cannot overlap)."""
    for m in _PAIR_HINT_RE.finditer(text):
        start = m.start()
        if start and "a" <= text[start - 1] <= "z":
            return True
    return False


def _pair_names(text: str) -> list[Detection]:
    """Adjacent first+last (or last+first) names from the lists, any spaced script."""
    names = _names()
    out = []
    last_end = -1
    for m in _PAIR_RE.finditer(text):
        if m.start() < last_end:
            continue
        caseless = m.group("x") is not None
        wa, wb = (m.group("x"), m.group("y")) if caseless else (m.group("a"), m.group("b"))
        fa, fb = _fold(wa), _fold(wb)
        latin = not caseless and ord(wa[0]) < 0x250
        pair = (fa in names.first and fb in names.last) or (fa in names.last and fb in names.first)
        if not pair and caseless and fa in names.first:
            # Arabic: given name + father's or family name (al-...).
            pair = fb in names.first or wb.startswith("ال")
        if not pair and not latin and not caseless and fa in names.first:
            pair = bool(_SURNAME_ENDING_RE.search(wb))  # Cyrillic/Greek surname endings
        if not pair:
            continue
        end = m.end("y") if caseless else m.end("b")
        third = None if caseless else m.group("c")
        if third and _fold(third) in names.all:
            end = m.end("c")
        out.append(Detection(m.start("x" if caseless else "a"), end, PERSON_NAME,
                             script_locale(wa)))  # fmt: skip
        last_end = end
    return out


def find_names(text: str) -> list[Detection]:
    """Person names: after cues in many languages (any case after strong cues), in
    signatures, as CJK surname+given name, and as first+last pairs from the name lists."""
    out: list[Detection] = []
    low = text.lower()
    for m in _cue_finditer(_STRONG_CUE_RE, text, low, _STRONG_TRIGGERS, starts=_STRONG_STARTS):
        if m.group()[-1:].isascii() and m.group()[-1:].isalpha() and text[m.end() : m.end() + 1]:
            if text[m.end()].isalpha():
                continue  # "call meeting": the cue word goes on
        span = _name_tokens(text, m.end(), any_case=True)
        if span:
            out.append(Detection(*span, PERSON_NAME, script_locale(text[span[0] : span[1]])))
    for m in _cue_finditer(_WEAK_CUE_RE, text, low, _WEAK_TRIGGERS, starts=_WEAK_STARTS):
        span = _name_tokens(text, m.end(), any_case=False, limit=3)
        if span and _cased_or_known(text[span[0] : span[1]]):
            out.append(Detection(*span, PERSON_NAME, script_locale(text[span[0] : span[1]])))
    if "\n" in text and _any_in(low, _SIGNOFF_TRIGGERS):
        for m in _cue_finditer(_SIGNOFF_RE, text, low, _SIGNOFF_TRIGGERS, after=120):
            value = m.group("n").strip()
            if looks_like_name(value.rstrip(".!")):
                start = m.start("n") + m.group("n").find(value)
                out.append(Detection(start, start + len(value.rstrip(".!")), PERSON_NAME,
                                     script_locale(value)))  # fmt: skip
    dashed = "--" in text or "—" in text or "–" in text or "~" in text
    for m in _DASH_SIG_RE.finditer(text) if dashed else ():
        value = m.group("n").strip()
        if looks_like_name(value.rstrip(".!")) and len(value.split()) <= 3:
            start = m.start("n") + m.group("n").find(value)
            out.append(Detection(start, start + len(value.rstrip(".!")), PERSON_NAME,
                                 script_locale(value)))  # fmt: skip
    if not text.isascii() and _HAN_HANGUL_RE.search(text):
        out.extend(_cjk_names(text))
    if not text.isascii() or _pair_possible(text):
        out.extend(_pair_names(text))
    return out


def _cased_or_known(value: str) -> bool:
    words = value.split()
    if not words:
        return False
    first = words[0]
    if not (first[0].isupper() or first[0].islower()):
        return True  # caseless script
    # deid's own patterns take capitalised Latin names after these cues (with its list of
    # capitalised non-names); here a cased word must be capitalised and in the name lists
    # ("Hello World", "This is Python", "it's parent" stay).
    names = _names()
    if first[0].islower():
        # "soy josé": a lower-case word only when it is a given name of four letters or more.
        return len(first) >= 4 and _fold(first) in names.first and _fold(first) not in _CUE_STOP
    return _fold(first) in names.all and _fold(first) not in _CUE_STOP


# --- everything ------------------------------------------------------------------------------


def find_all(text: str) -> list[Detection]:
    """Every detection of this module in ``text`` (overlaps allowed; deid resolves them)."""
    out: list[Detection] = []
    digits = has_digit(text)
    out.extend(find_secrets(text))
    out.extend(find_emails(text))
    if digits:
        out.extend(find_cards(text))
        out.extend(find_ids(text))
        out.extend(find_phones(text))
        out.extend(find_addresses(text))
    elif not text.isascii() and _HAN_RE.search(text):
        out.extend(find_addresses(text))
    out.extend(find_key_values(text))
    out.extend(find_names(text))
    return out

"""The shortcuts that made de-identification and the residue check cheaper find what the slow
searches they stand for find.

Each shortcut is either a necessary condition checked before a search (no text without it
can match, so skipping the search changes nothing), or the same search done another way. The
tests draw many texts from fragments that make the patterns match, nearly match and fail, and
compare. ``benchmarks/deid_cost.py --equal REV`` compares whole sampled rows and residue hits
with the code before the shortcuts on five corpora.
"""

from __future__ import annotations

import random
import re

from depsim_assets.traffic import deid, detectors, residue

# Pieces of cues, names, keys and separators, in mixed case when drawn (see _text).
_PIECES = (
    "i'm", "i am", "i\tam", "this is", "it's", "my", "my wife", "my name is", "my name's",
    "name's", "call me", "i go by", "i am called", "je suis", "je m'appelle", "mon nom est",
    "me llamo", "mi nombre es", "ich bin", "ich heisse", "mein name ist", "mi chiamo",
    "me chamo", "mijn naam is", "ik heet", "jag heter", "mitt namn", "nazywam", "mam na imie",
    "benim adim", "adim", "soy", "sono", "sou", "hi", "hello", "hey", "dear", "hola", "bonjour",
    "hallo", "ciao", "hej", "mr", "mrs.", "ms.", "dr.", "Maria", "Tom Novak", "anna", "Priya",
    "Ana de la Cruz", "thanks", "thank you", "best", "best wishes", "regards", "cheers",
    "sincerely", "yours truly", "take care", "love", "my friend", "our landlord", "their son",
    "name:", "customer_name =", "'owner':", "signed,", "--", "~", " dot ", " at ", "[at]", "(",
    "example", "com", "sk_", "hf_", "SG.", "AKIA", "ASIA", "ya29.", "Hello World", "New York",
    "O'Neil", "Jean-Luc", "\nI'm Maria", ". This is Tom Novak", "Hello, it's Anna Berg",
    "Thanks,\nPriya", "my wife Maria", "name: Ana Ruiz", "Dr. Smith", "Signed Tom",
    "x", "_", "1", "42", "-", "'", ".", ",", "!", "?", ":", "=", " ",
    " ", " ", "\t", "\n", "  ",
)  # fmt: skip


def _case(rng: random.Random, piece: str) -> str:
    roll = rng.random()
    if roll < 0.15:
        return piece.upper()
    if roll < 0.3:
        return piece.capitalize()
    if roll < 0.4:
        return "".join(c.upper() if rng.random() < 0.5 else c for c in piece)
    return piece


def _text(rng: random.Random, pieces: tuple[str, ...] = _PIECES, most: int = 24) -> str:
    return "".join(_case(rng, rng.choice(pieces)) for _ in range(rng.randrange(0, most)))


def _texts(seed: int, n: int, pieces: tuple[str, ...] = _PIECES) -> list[str]:
    rng = random.Random(seed)
    return [_text(rng, pieces) for _ in range(n)]


# --- finding words in one pass --------------------------------------------------------------


def _occurrences(text: str, words: tuple[str, ...]) -> set[tuple[int, int]]:
    out = set()
    for word in words:
        i = text.find(word)
        while i != -1:
            out.add((i, i + len(word)))
            i = text.find(word, i + 1)
    return out


def test_words_finds_every_occurrence_of_every_word():
    sets = [
        detectors._STRONG_TRIGGERS, detectors._WEAK_TRIGGERS, detectors._SIGNOFF_TRIGGERS,
        detectors._PASSWORD_TRIGGERS, detectors._ID_TRIGGERS, detectors._PASSPORT_TRIGGERS,
        *detectors._ADDRESS_TRIGGERS, detectors._STRONG_STARTS, detectors._WEAK_STARTS,
    ]  # fmt: skip
    rng = random.Random(1)
    for words in sets:
        pieces = (*words.words, " ", "a", "i", "s", "\n", "ß", "😀")
        for _ in range(400):
            text = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 10)))
            assert set(words.spans(text)) == _occurrences(text, words.words), text
            assert words.any_in(text) == any(w in text for w in words.words), text
            found = {words.words[i] for i in words.found(text)}
            assert found == {w for w in words.words if w in text}, text


def test_trigger_index_tells_which_trigger_sets_occur():
    rng = random.Random(2)
    lower_sets = deid._LOWER_SETS
    cased_sets = [*deid._CASED_SETS, deid._SECRET_TRIGGERS]
    pieces = tuple({w for ws in [*lower_sets, *cased_sets] for w in ws}) + (" ", "x", "M")
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 6)))
        low = text.lower()
        expected_lower = sum(1 << i for i, ws in enumerate(lower_sets) if any(w in low for w in ws))
        expected_cased = sum(
            1 << i for i, ws in enumerate(cased_sets) if any(w in text for w in ws)
        )
        assert deid._present(deid._LOWER_INDEX, low) == expected_lower, text
        assert deid._present(deid._CASED_INDEX, text) == expected_cased, text


def test_residue_cue_sets_match_the_word_tests_they_replace():
    rng = random.Random(3)
    pieces = tuple(w for words in residue._CUE_SETS for w in words) + (" ", "x", "É")
    bits = (
        residue._SECRET_CUE_BIT, residue._PASSWORD_CUE_BIT, residue._PASSPORT_CUE_BIT,
        residue._INTRO_CUE_BIT,
    )  # fmt: skip
    for _ in range(3000):
        low = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 6))).lower()
        mask = residue._cue_sets(low)
        for bit, words in zip(bits, residue._CUE_SETS, strict=True):
            assert bool(mask & bit) == any(w in low for w in words), low


# --- cue regexes tried only where a cue begins ------------------------------------------------


def _spans(matches: object) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group()) for m in matches]  # type: ignore[attr-defined]


def test_cue_search_at_start_words_equals_the_window_search():
    cases = (
        (detectors._STRONG_CUE_RE, detectors._STRONG_TRIGGERS, detectors._STRONG_STARTS),
        (detectors._WEAK_CUE_RE, detectors._WEAK_TRIGGERS, detectors._WEAK_STARTS),
    )
    for seed, (pattern, triggers, starts) in enumerate(cases):
        matched = 0
        for text in _texts(10 + seed, 6000):
            low = text.lower()
            slow = _spans(detectors._cue_finditer(pattern, text, low, triggers))
            fast = _spans(detectors._cue_finditer(pattern, text, low, triggers, starts=starts))
            assert fast == slow, text
            matched += bool(slow)
        assert matched > 1000  # the texts exercise the patterns, not only their absence


def test_start_words_cover_every_match_in_ascii_text():
    # Every match of the cue patterns anywhere in an ASCII text begins at a start word.
    for pattern, starts in (
        (detectors._STRONG_CUE_RE, detectors._STRONG_STARTS),
        (detectors._WEAK_CUE_RE, detectors._WEAK_STARTS),
    ):
        for text in _texts(20, 4000):
            begins = {a for a, _ in starts.spans(text.lower())}
            for m in pattern.finditer(text):
                assert m.start() in begins, (text, m.group())


# --- necessary conditions checked before a search --------------------------------------------


def _implies(pattern: re.Pattern[str], gate: object, texts: list[str]) -> int:
    """Asserts ``gate(text)`` wherever ``pattern`` matches; returns how many matched."""
    matched = 0
    for text in texts:
        if pattern.search(text):
            matched += 1
            assert gate(text), (pattern.pattern[:40], text)  # type: ignore[operator]
    return matched


def test_detector_gates_hold_wherever_their_pattern_matches():
    texts = _texts(30, 6000)
    ascii_texts = [t for t in texts if t.isascii()]
    assert _implies(detectors._PAIR_RE, detectors._pair_possible, ascii_texts) > 100
    hint = re.compile(r"[a-z][ \t][A-Z][a-z]")
    for text in ascii_texts:
        assert detectors._pair_possible(text) == bool(hint.search(text)), text
    assert _implies(
        detectors._OBFUSCATION_HINT_RE, detectors._obfuscation_possible,
        [*texts, *_texts(31, 2000, (*_PIECES, "DOT", "İ", "ı", "ſ", "\u00a0at\u2003"))],
    ) > 100  # fmt: skip
    dashed = lambda t: "--" in t or "—" in t or "–" in t or "~" in t  # noqa: E731
    assert _implies(detectors._DASH_SIG_RE, dashed, texts) > 20
    keys = (*_PIECES, "hf_" + "a" * 31, "SG." + "a" * 17 + "." + "b" * 17, "ASIA" + "A" * 16)
    assert (
        _implies(
            detectors._PROVIDER_KEY_RE, detectors._PROVIDER_PREFIXES.any_in, _texts(32, 3000, keys)
        )
        > 50
    )


def test_deid_name_gates_hold_wherever_their_pattern_matches_in_ascii_text():
    texts = [t for t in _texts(40, 8000) if t.isascii()]
    for (pattern, _), gate in zip(deid._NAME_PATTERNS, deid._NAME_GATES, strict=True):
        if gate is None:
            continue
        matched = _implies(pattern, lambda t, g=gate: g.search(t.lower()), texts)
        assert matched > 10, pattern.pattern[:60]


def test_residue_prefix_gate_holds_wherever_a_prefixed_secret_matches():
    keys = (
        *_PIECES, "sk-" + "a1" * 12, "rk_live_" + "a1" * 9, "ghp_" + "a" * 31, "xoxb-" + "1" * 11,
        "eyJ" + "a" * 9 + ".eyJ" + "b" * 9 + "." + "c" * 9, "shpat_" + "a" * 32,
        "https://hooks.slack.com/services/T1/B2/x", "https://discordapp.com/api/webhooks/1/x",
    )  # fmt: skip
    gate = lambda t: bool(residue._PREFIXES.find_matches_as_indexes(t))  # noqa: E731
    assert _implies(residue._PREFIXED_SECRET_RE, gate, _texts(50, 3000, keys)) > 100


def test_residue_id_rules_find_nothing_in_a_window_shorter_than_their_least_width():
    rng = random.Random(60)
    pieces = ("1", "2", "9", "0", " ", "-", ".", "+", "/", "X", "A", "B", "M", "L", "Z", "a")
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 24)))
        pos = rng.randrange(0, len(text) + 1)
        endpos = rng.randrange(pos, len(text) + 1)
        for (_, rule, pattern, _, _), least in zip(
            residue._ID_RULES, residue._ID_LEAST, strict=True
        ):
            if endpos - pos < least:
                assert not list(pattern.finditer(text, pos, endpos)), (rule, text)
    # and the bound is real: each rule has matches exactly that long
    assert all(least > 0 for least in residue._ID_LEAST)


# --- the same search another way ------------------------------------------------------------


def test_whole_word_matches_equal_the_alternation_they_replace():
    rng = random.Random(70)
    alphabet = ["a", "b", "1", "_", " ", "-", ".", "é", "٣", "ab", "a1", "b_", "+1 415", "@x.com"]
    for _ in range(20000):
        values = list(
            dict.fromkeys(
                "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 5)))
                for _ in range(rng.randrange(1, 4))
            )
        )
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 16)))
        ordered = sorted(values, key=len, reverse=True)
        pattern = re.compile(
            r"(?<![\w])(?:" + "|".join(re.escape(v) for v in ordered) + r")(?![\w])"
        )
        expected = [(m.start(), m.group()) for m in pattern.finditer(text)]
        assert deid._whole_word_matches(text, ordered) == expected, (text, ordered)


def test_whitespace_and_digits_are_what_re_matches_for_s_and_d():
    space, digit = re.compile(r"\s"), re.compile(r"\d")
    chars = [chr(c) for c in range(0x110000)]
    assert set(detectors.WHITESPACE) == {c for c in chars if space.match(c)}
    decimal = {c for c in chars if digit.match(c)}
    rng = random.Random(80)
    pieces = ("a", " ", "7", "x", "é", "٣", "\n", "_", "0", "9", "५")
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randrange(0, 8)))
        expected = any(c in decimal for c in text)
        assert detectors.has_digit(text) == expected, text
        assert residue._has_digit(text) == expected, text

"""The residue scan alone: what it finds, what it leaves, how it names a hit, and that it is a
layer of its own (no de-identifier code in it)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from depsim_assets.traffic import residue
from depsim_assets.traffic.residue import scan_messages, scan_text
from depsim_assets.traffic.surrogates import surrogate_digests

NONE: frozenset[str] = frozenset()

# Values issue 11 found leaking through both layers, each with the type the scan must give.
LEAKS = [
    ("GB29NWBK60161331926819", "iban"),
    ("Transfer to DE89 3704 0044 0532 0130 00 please", "iban"),
    ("call me on 07700 900456", "phone"),
    ("mon numéro: 06 12 34 56 78", "phone"),
    ("携帯は090-1234-5678です", "phone"),
    ("my phone is 13800138000", "phone"),
    ("WhatsApp (11) 91234-5678", "phone"),
    ("mobile 0412 345 678", "phone"),
    ("+33 6 12 34 56 78", "phone"),
    ("DNI 12345678Z", "national_id"),
    ("NIE X1234567L", "national_id"),
    ("codice fiscale RSSMRA85T10A562S", "national_id"),
    ("CPF 123.456.789-09", "national_id"),
    ("personnummer 811228-9874", "national_id"),
    ("Aadhaar 2345 6789 0124", "national_id"),
    ("PAN ABCPE1234F", "national_id"),
    ("身份证 11010519491231002X", "national_id"),
    ("my BSN is 111222333", "national_id"),
    ("NINO AB 12 34 56 C", "national_id"),
    ("passport number C01X00T47", "passport"),
    ("SSN 123-45-6789", "ssn"),
    ("john dot smith at gmail dot com", "email"),
    ("priya.sharma(at)gmail(dot)com", "email"),
    ("jürgen.müller@bücher.de", "email"),
    ("иван.петров@почта.рф", "email"),
    ("card 4111.1111.1111.1111", "payment_card"),
    ("card 5555/5555/5555/4444", "payment_card"),
    ("AKIAIOSFODNN7ABCDEFG", "secret"),
    ("hf_AbCdEfGhIjKlMnOpQrStUvWxYz12345678", "secret"),
    ("SG.abcdefghijklmnop1234.abcdefghijklmnopqrstu123", "secret"),
    ("GROQ_API_KEY=gsk_8fK2mQ9xL4vB7nR1tY6wE3zA5cD0hJ2uI9oP4sG7", "secret"),
    ("mistral api key: aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI", "secret"),
    ("https://hooks.slack.com/services/T0A1B2C3D/B4E5F6G7H/abcdEFGHijklMNOPqrstUVWX", "secret"),
    ("Authorization: Bearer 9f8a7b6c5d4e3f2a1b0cQWERTY9d8e7f6a", "secret"),
    ("my password is Soleil2023!", "secret"),
    ("postgres://admin:Xk9#mP2vLq@db.internal:5432/prod", "url_token"),
    ("server at 81.2.69.142 went down", "ipv4"),
    ("Меня зовут Иван Петров", "person_name"),
    ("我叫王伟", "person_name"),
    ("my name is ivan petrov", "person_name"),
]

# Real-style values that identify no one.
CLEAN = [
    "wisk-couchbase-migrations-bucket",
    "aws s3 ls s3://risk-analytics-prod/ask-skew/",
    "rf'sk-toggleable__label-arrow'",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b",
    "uuid 123e4567-e89b-12d3-a456-426614174000",
    "version 1.2.3.4, __version__ = '3.5.0.1'",
    "listen on 192.0.2.10:8080, 10.0.0.1 and 127.0.0.1",
    "https://example.com/search?q=hello&page=2",
    "timestamp = 1700000000; port 5432; 2024-01-15 10:32:11",
    "x = 12345678901234; MAX = 9223372036854775807",
    "password = os.environ['DB_PASSWORD']",
    "postgresql://scott:tiger@localhost/test",
    "token = get_token()",
    "np.array([0.835004855038, 0.3608293039, 0.82687265])",
    "Ref: Math. Comp. 75, 1429 (2006)",
    "[ 501  502  503 ...  999 1000 1001]",
    "write to jane@example.com or ops@test.invalid",
]


@pytest.mark.parametrize(("text", "kind"), LEAKS, ids=[k + ":" + t[:18] for t, k in LEAKS])
def test_each_issue_leak_is_found_with_its_type(text, kind):
    assert kind in {k for k, _ in scan_text(text, NONE)}


@pytest.mark.parametrize("text", CLEAN, ids=[t[:24] for t in CLEAN])
def test_ordinary_technical_text_is_not_a_hit(text):
    assert scan_text(text, NONE) == []


def test_a_surrogate_is_known_by_its_digest_and_nothing_else():
    text = "reach me at +44 7911 123456 or lena@mail.de"
    assert {k for k, _ in scan_text(text, NONE)} == {"phone", "email"}
    # The row carries digests of what de-identification inserted, not the values.
    digests = frozenset(surrogate_digests({"+44 7911 123456", "lena@mail.de"}))
    assert scan_text(text, digests) == []
    # Digits alone identify a phone surrogate however either layer cut its separators.
    phone = "reach me at +44 7911 123456"
    assert not scan_text(phone, frozenset(surrogate_digests({"+447911123456"})))
    assert not scan_text(phone, frozenset(surrogate_digests({"(+44) 7911-123456"})))
    # Another surrogate's digest exempts nothing.
    assert scan_text(phone, frozenset(surrogate_digests({"+44 7911 123457"})))


def test_hits_name_type_and_field_path_never_the_text():
    iban, card = "GB29NWBK60161331926819", "4012888888881881"
    messages = [
        {"role": "system", "content": "You are a bank assistant."},
        {"role": "user", "content": "Move my money."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {
                        "name": "transfer",
                        "arguments": json.dumps({"to": {"iban": iban}, "card": int(card)}),
                    },
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": json.dumps({"john@corp.io": "ok"})},
        {"role": "assistant", "content": "Done."},
    ]
    hits = scan_messages("c-1", messages, [])
    where = {(h.kind, h.path) for h in hits}
    assert ("iban", "messages[2].tool_calls[0].function.arguments.$.to.iban") in where
    assert ("payment_card", "messages[2].tool_calls[0].function.arguments.$.card") in where
    # A JSON key that is itself personal data is named by position only.
    assert ("email", "messages[3].content.$.{key 0}") in where
    described = residue.describe(hits)
    for value in (iban, card, "john@corp.io", "john"):
        assert value not in described and value not in repr(hits)


def test_a_card_split_across_two_user_turns_is_found():
    messages = [
        {"role": "user", "content": "my card is 4242 4242"},
        {"role": "assistant", "content": "Go on."},
        {"role": "user", "content": "4242 4242 exp 11/27"},
    ]
    [hit] = scan_messages("c-2", messages, [])
    assert hit.kind == "payment_card" and hit.path == "messages[0].content+messages[2].content"


def test_the_scan_does_not_import_the_deidentifier():
    # Independent means independent code: the only project module the scan imports is the
    # surrogate-digest one.
    tree = ast.parse(Path(residue.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    project = {m for m in imported if m and m.startswith("depsim_assets")}
    assert project == {"depsim_assets.traffic.surrogates"}

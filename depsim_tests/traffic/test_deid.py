"""De-identification: every kind of identifier replaced, consistently, by telltale surrogates."""

from __future__ import annotations

import copy
import ipaddress
import json
import re

import pytest

from depsim_assets.traffic.deid import (
    SURROGATE_EMAIL_DOMAINS,
    Deidentifier,
    hash_user,
    luhn_valid,
)

DOC_NETS = [
    ipaddress.ip_network(n)
    for n in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
]


@pytest.fixture(scope="module")
def deid():
    return Deidentifier("test-salt")


def scrub(deid, text, cid="c1"):
    return deid.deidentify_text(text, cid)


def test_emails_become_example_domains(deid):
    out, counts = scrub(deid, "Mail maria.lopez@gmail.com or j_2001@uni.edu.")
    assert "maria.lopez@gmail.com" not in out and "j_2001@uni.edu" not in out
    emails = re.findall(r"[\w.+-]+@([\w.-]+\w)", out)
    assert len(emails) == 2 and set(emails) <= set(SURROGATE_EMAIL_DOMAINS)
    assert counts == {"email": 2}


@pytest.mark.parametrize(
    "phone",
    [
        "(415) 867-2671",
        "415-867-2671",
        "415.867.2671",
        "+1 415 867 2671",
        "1-415-867-2671",
        "+44 20 7946 0958",
        "+49 30 901820",
        "+33 1 42 68 53 00",
        "+91 98765 43210",
        "+81-3-1234-5678",
    ],
)
def test_phone_numbers_in_many_formats(deid, phone):
    out, counts = scrub(deid, f"Call me at {phone} tomorrow.")
    assert phone not in out and counts == {"phone": 1}
    digits = re.sub(r"\D", "", phone)
    assert digits[-7:] not in re.sub(r"\D", "", out)


def test_us_phone_surrogates_use_the_fictional_555_01xx_range(deid):
    out, _ = scrub(deid, "Call (415) 867-2671 or +1 415 867 2671.")
    first, second = re.findall(r"\(\d{3}\) \d{3}-\d{4}|\+1 \d{3} \d{3} \d{4}", out)
    assert re.sub(r"\D", "", first)[-7:-2] == "55501"
    # The two spellings of one number get one surrogate number.
    assert re.sub(r"\D", "", first) == re.sub(r"\D", "", second)[1:]


def test_only_luhn_valid_numbers_are_cards_and_surrogates_fail_luhn(deid):
    valid = ["4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005", "3782 822463 10005"]
    invalid = "4111 1111 1111 1112"
    out, counts = scrub(deid, " and ".join([*valid, invalid]))
    assert counts == {"payment_card": 4}
    assert invalid in out
    for card in valid:
        assert card not in out
    found = re.findall(r"\d{4}[ -]?\d{4}[ -]?\d{4}[ -]?\d{4}|\d{15}|\d{4} \d{6} \d{5}", out)
    surrogates = [c for c in found if c != invalid]
    assert len(surrogates) == 4 and not any(luhn_valid(c) for c in surrogates)


def test_ip_addresses_move_to_documentation_ranges(deid):
    text = "From 84.23.1.9 and 10.0.12.7 via 2a02:1810:4d02:6100::1a2b; localhost 127.0.0.1, ::1"
    out, counts = scrub(deid, text)
    assert counts == {"ipv4": 2, "ipv6": 1}
    for original in ("84.23.1.9", "10.0.12.7", "2a02:1810:4d02:6100::1a2b"):
        assert original not in out
    assert "127.0.0.1" in out and "::1" in out
    v4 = re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", out)
    v6 = re.findall(r"2001:db8:[0-9a-f:]+", out)
    for addr in [*v4, *v6]:
        ip = ipaddress.ip_address(addr)
        assert ip.is_loopback or any(ip in net for net in DOC_NETS)
    assert len(v6) == 1


def test_times_and_versions_are_not_ip_addresses(deid):
    text = "Meet at 12:30:45, use v1.2 and std::vector, MAC 00:1A:2B:3C:4D:5E"
    assert scrub(deid, text) == (text, {})


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("My name is Maria Lopez and I need help.", "Maria Lopez"),
        ("Hi, I'm Priya. Can you help?", "Priya"),
        ("This is Tom from accounting.", "Tom"),
        ("Please check this.\n\nThanks, Aisha", "Aisha"),
        ("Please check this.\n— Kwame", "Kwame"),
        ("Please check this.\n\nCheers,\nSofia Novak", "Sofia Novak"),
        ("My boss Ingrid Haddad wants it by Friday.", "Ingrid Haddad"),
        ("Can you write to Dr. Okafor for me?", "Okafor"),
        ("Dear Mateo,\nthe report is late.", "Mateo"),
        ("name: Diego Ferreira\nrole: admin", "Diego Ferreira"),
    ],
)
def test_person_names_in_context(deid, text, name):
    out, counts = scrub(deid, text)
    assert counts == {"person_name": 1}
    for token in name.split():
        assert not re.search(rf"\b{token}\b", out)


def test_capitalised_words_that_are_not_names_stay(deid):
    text = (
        "I'm Sorry, I'm Going to try. Hi Team, Hello World! This is Python code.\nThanks, Everyone"
    )
    assert scrub(deid, text) == (text, {})


def test_street_addresses(deid):
    out, counts = scrub(
        deid, "I live at 1427 Maple Avenue, Apt 4B. Ship to 12 Oak St. or 3 Elm Road."
    )
    assert counts == {"street_address": 3}
    for original in ("1427 Maple Avenue", "12 Oak St", "3 Elm Road"):
        assert original not in out


def test_secrets_tokens_and_ssns(deid):
    text = (
        "key sk-proj-abcdefghijklmnopqrstuvwxyz012345, AWS AKIAIOSFODNN7ABCDEFG, "
        "link https://x.example.com/f?id=7&token=a1b2c3d4e5f6 and SSN 123-45-6789"
    )
    out, counts = scrub(deid, text)
    assert counts == {"secret": 2, "ssn": 1, "url_token": 1}
    assert "abcdefghijklmnop" not in out and "IOSFODNN7" not in out
    assert "a1b2c3d4e5f6" not in out and "123-45-6789" not in out
    assert "sk-proj-EXAMPLE" in out and "AKIAEXAMPLE" in out
    assert "?id=7&token=redacted-" in out and re.search(r"\b000-\d\d-\d{4}\b", out)


def test_same_original_same_surrogate_within_a_conversation(deid):
    messages = [
        {"role": "user", "content": "My name is Maria Lopez, email maria@gmail.com."},
        {"role": "assistant", "content": "Thanks Maria, I will write to maria@gmail.com."},
        {"role": "user", "content": "Also cc maria@gmail.com.\n— Maria"},
    ]
    out, counts = deid.deidentify_messages(messages, "conv-1")
    text = json.dumps(out)
    assert "Maria" not in text and "maria@gmail.com" not in text
    emails = {e for m in out for e in re.findall(r"[\w.+-]+@example\.\w+", m["content"])}
    assert len(emails) == 1
    first = re.search(r"My name is (\w+) (\w+)", out[0]["content"]).group(1)
    assert out[1]["content"].startswith(f"Thanks {first},")
    assert out[2]["content"].endswith(f"— {first}")
    assert counts == {"email": 3, "person_name": 3}


def test_surrogates_differ_across_conversations_and_salts(deid):
    messages = [
        {"role": "user", "content": "email maria@gmail.com, I'm Olga, card 4111111111111111"}
    ]
    outs = {json.dumps(deid.deidentify_messages(messages, f"conv-{i}")[0]) for i in range(5)}
    assert len(outs) == 5
    again = json.dumps(deid.deidentify_messages(messages, "conv-0")[0])
    assert again in outs
    other_salt = json.dumps(Deidentifier("other").deidentify_messages(messages, "conv-0")[0])
    assert other_salt not in outs


def test_tool_arguments_and_results_are_scrubbed_and_stay_json(deid):
    args = json.dumps(
        {"to": "maria@gmail.com", "body": "Hi Maria,\n\nsee you.\n\nBest,\nTom"}, indent=None
    )
    result = json.dumps([{"name": "Ravi Patel", "phone": "+91 98765 43210", "id": 7}])
    messages = [
        {"role": "user", "content": "Email Maria please."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "send_email", "arguments": args},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": result},
        {"role": "assistant", "content": "Sent."},
    ]
    original = copy.deepcopy(messages)
    out, counts = deid.deidentify_messages(messages, "conv-9")
    assert messages == original  # the input is not modified
    new_args = json.loads(out[1]["tool_calls"][0]["function"]["arguments"])
    assert new_args["to"].split("@")[1] in SURROGATE_EMAIL_DOMAINS
    assert "Maria" not in new_args["body"] and "Tom" not in new_args["body"]
    row = json.loads(out[2]["content"])[0]
    assert row["name"] != "Ravi Patel" and len(row["name"].split()) == 2
    assert row["phone"].startswith("+91 ") and row["phone"] != "+91 98765 43210"
    assert row["id"] == 7
    # "Maria" was named in context in the tool call, so the bare mention in the user turn goes.
    assert "Maria" not in out[0]["content"]
    assert out[1]["tool_calls"][0]["function"]["name"] == "send_email"
    assert counts["email"] == 1 and counts["phone"] == 1


def test_unknown_keys_and_non_text_parts_are_dropped(deid):
    messages = [
        {
            "role": "user",
            "name": "maria_lopez",
            "metadata": {"ip": "84.23.1.9"},
            "content": [{"type": "image_url", "image_url": {"url": "https://x/?token=abc"}}],
        },
        {"role": "assistant", "content": "ok"},
    ]
    out, counts = deid.deidentify_messages(messages, "c")
    assert "metadata" not in out[0]
    assert out[0]["content"] == [{"type": "image_url"}]
    assert out[0]["name"] != "maria_lopez" and counts == {"participant_name": 1}


def test_hash_user_is_salted_and_short():
    a = hash_user("user-1", "salt")
    assert re.fullmatch(r"[0-9a-f]{16}", a)
    assert a == hash_user("user-1", "salt")
    assert a != hash_user("user-1", "pepper") and a != hash_user("user-2", "salt")


def test_luhn():
    assert luhn_valid("4111 1111 1111 1111") and luhn_valid("378282246310005")
    assert not luhn_valid("4111 1111 1111 1112") and not luhn_valid("7")


# --- detectors added with ingest: more secrets, national ids, URL credentials, tables ---------


@pytest.mark.parametrize(
    "secret",
    [
        "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
        "glpat-" + "xT9kLm2QpR7vW3yZ8aBc",
        "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEF",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
    ],
)
def test_more_provider_keys_and_jwts_are_secrets(deid, secret):
    out, counts = scrub(deid, f"token: {secret} (do not share)")
    assert secret not in out and counts == {"secret": 1}
    assert "EXAMPLE" in out


def test_private_key_blocks_are_replaced_whole(deid):
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\nVJTUt9Us8cKjMzEfYyjiWA4R4"
    pem = f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
    out, counts = scrub(deid, f"my key:\n{pem}\nthanks")
    assert counts == {"secret": 1} and "MIIEvQ" not in out and "VJTUt9" not in out
    assert out.startswith("my key:\n-----BEGIN PRIVATE KEY-----") and out.endswith("\nthanks")


def test_uk_nino_and_canadian_sin_become_never_issued_numbers(deid):
    out, counts = scrub(deid, "NI AB 12 34 56 C, SIN 130-692-544, phone +61 412 345 678")
    assert counts == {"national_id": 2, "phone": 1}
    assert "AB 12 34 56 C" not in out and "130-692-544" not in out
    nino = re.search(r"QQ \d\d \d\d \d\d C", out)
    sin = re.search(r"\b0\d\d-\d\d\d-\d\d\d\b", out)
    assert nino and sin and not luhn_valid(sin.group())


def test_credentials_in_url_userinfo_are_replaced(deid):
    out, counts = scrub(deid, "DATABASE_URL=postgres://admin:hunter2pass@db.acme.io:5432/app")
    assert "hunter2pass" not in out and "admin:" not in out and counts == {"url_token": 1}
    assert re.search(r"postgres://\w+:redacted-[0-9a-f]{12}@db\.acme\.io:5432/app", out)


def test_names_with_central_european_letters_and_particles(deid):
    out, _ = scrub(deid, "My name is Łukasz Zięcik.\n\nRegards,\nDavi Lucas da Cunha")
    for token in ("Łukasz", "Zięcik", "Davi", "Lucas", "Cunha"):
        assert token not in out


def test_names_and_addresses_in_csv_and_markdown_columns(deid):
    text = (
        "id,customer_name,address,plan\n"
        "1,Ingrid Haddad,4500 Lakeview Crossing,pro\n"
        "2,Omar Silva,12 Birch Hollow,free\n\n"
        "| id | name | status |\n|---|---|---|\n| 7 | Wei Tanaka | open |"
    )
    out, counts = scrub(deid, text)
    for value in ("Ingrid", "Haddad", "Omar", "Silva", "Wei", "Tanaka", "Lakeview", "Birch"):
        assert value not in out
    assert counts["street_address"] == 2 and counts["person_name"] >= 3
    assert out.splitlines()[0] == "id,customer_name,address,plan"


def test_address_fields_of_tool_arguments(deid):
    msgs = [
        {"role": "user", "content": "ship it"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {
                        "name": "ship",
                        "arguments": json.dumps({"shipping_address": "77 Rue Lepic, Paris"}),
                    },
                }
            ],
        },
    ]
    out, counts = deid.deidentify_messages(msgs, "c1")
    assert "Lepic" not in json.dumps(out) and counts == {"street_address": 1}

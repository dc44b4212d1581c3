"""De-identification held to its thresholds on the adversarial corpus (issue 11).

>= 99% of structured values (IBANs, phones, ids, passports, emails, cards, keys, passwords)
and >= 95% of names and addresses must be replaced; a value counts as leaked when it is still
in the output verbatim, case-folded or with its separators removed (a name: any of its words).
Per-kind recall is printed (``pytest -s``) and recorded as test properties.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import phonenumbers
import pytest
from stdnum import iban as stdnum_iban
from stdnum import luhn

from depsim_assets.traffic.deid import Deidentifier
from depsim_assets.traffic.detectors import find_all, set_phone_regions
from depsim_assets.traffic.logs import parse_record
from depsim_tests.traffic.adversarial_corpus import (
    FUZZY_KINDS,
    PLACEMENTS,
    STRUCTURED_KINDS,
    adversarial_plants,
    adversarial_records,
    leaked,
    output_text,
)

SEEDS = (0, 1, 2)
ISSUE_VALUES = (
    "GB29NWBK60161331926819", "DE89 3704 0044 0532 0130 00", "07700 900456", "06 12 34 56 78",
    "090-1234-5678", "13800138000", "(11) 91234-5678", "0412 345 678", "Иван Петров", "王伟",
    "john dot smith at gmail dot com", "jürgen.müller@bücher.de", "4111.1111.1111.1111",
    "hunter2!",
)  # fmt: skip


@pytest.fixture(scope="module")
def report():
    deidentifier = Deidentifier("adversarial-salt")
    planted: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    misses = []
    for seed in SEEDS:
        plants = adversarial_plants(seed)
        by_conversation: dict[str, list] = {}
        for plant in plants:
            by_conversation.setdefault(plant.conversation_id, []).append(plant)
        for record in adversarial_records(seed):
            cid = record["conversation_id"]
            messages, metadata, _ = deidentifier.deidentify_conversation(
                record["messages"], cid, metadata=record.get("metadata")
            )
            text = output_text({"messages": messages, "metadata": metadata})
            for plant in by_conversation.get(cid, ()):
                planted[plant.kind] += 1
                if leaked(plant, text):
                    missed[plant.kind] += 1
                    # Kind and placement only: the test output carries no planted value.
                    misses.append((plant.kind, plant.placement, plant.locale))
    recall = {k: 1 - missed[k] / planted[k] for k in sorted(planted)}
    return {"planted": planted, "missed": missed, "recall": recall, "misses": misses}


def _pooled(report, kinds):
    planted = sum(report["planted"][k] for k in kinds)
    missed = sum(report["missed"][k] for k in kinds)
    return 1 - missed / planted, planted


def test_the_corpus_is_big_varied_and_real_records():
    plants = adversarial_plants(0)
    values = {p.value for p in plants}
    assert len(values) >= 80
    assert {p.placement for p in plants} >= set(PLACEMENTS) and len(PLACEMENTS) >= 12
    assert len({p.locale for p in plants}) >= 10
    for value in ISSUE_VALUES:
        assert value in values, value
    records = adversarial_records(0)
    for i, record in enumerate(records):
        parse_record(record, "adversarial.jsonl", i + 1)  # raises on a malformed record
    # Deterministic for a seed, different across seeds.
    assert adversarial_records(0) == records
    assert {p.value for p in adversarial_plants(1)} != values


def test_recall_meets_the_thresholds(report, record_property):
    print(f"\nper-kind recall on the adversarial corpus (seeds {SEEDS}):")
    for kind, value in report["recall"].items():
        print(f"  {kind:15s} {value:.3f}  ({report['planted'][kind]} plants)")
        record_property(f"recall_{kind}", round(value, 4))
    structured, n_structured = _pooled(report, STRUCTURED_KINDS)
    fuzzy = {k: report["recall"][k] for k in FUZZY_KINDS}
    print(f"  structured pooled {structured:.3f} over {n_structured}; misses {report['misses']}")
    assert structured >= 0.99, report["misses"]
    for kind, value in fuzzy.items():
        assert value >= 0.95, (kind, value, report["misses"])


def _conversation(value: str, prose: str) -> list[dict]:
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "crm", "arguments": json.dumps({"value": value}, ensure_ascii=False)},
    }
    return [
        {"role": "user", "content": prose.format(v=value)},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": json.dumps({value: {"ok": True}})},
        {"role": "assistant", "content": f"Done: {value}."},
    ]


@pytest.mark.parametrize(
    "value, prose",
    [
        ("DE89 3704 0044 0532 0130 00", "Meine IBAN ist {v}."),
        ("07700 900456", "Call me on {v}."),
        ("Иван Петров", "меня зовут {v}"),
        ("王伟", "我叫{v}，谢谢"),
        ("RSSMRA85T10A562S", "codice fiscale {v}"),
        ("hunter2!", "my password is {v}"),
    ],
)
def test_same_original_same_surrogate_everywhere_in_a_conversation(value, prose):
    deidentifier = Deidentifier("consistency-salt")
    out, counts = deidentifier.deidentify_messages(_conversation(value, prose), "conv-1")
    text = output_text(out)
    assert value not in text and counts
    prefix, suffix = prose.split("{v}")
    first = out[0]["content"].removeprefix(prefix).removesuffix(suffix)
    args = json.loads(out[1]["tool_calls"][0]["function"]["arguments"])["value"]
    key = next(iter(json.loads(out[2]["content"])))
    echoed = out[3]["content"].removeprefix("Done: ").removesuffix(".")
    assert first == args == key == echoed, (first, args, key, echoed)
    # Another conversation gets another surrogate; the same one gets the same again.
    again, _ = deidentifier.deidentify_messages(_conversation(value, prose), "conv-1")
    other, _ = deidentifier.deidentify_messages(_conversation(value, prose), "conv-2")
    assert again == out and other != out


def test_surrogates_keep_the_format_of_what_they_replace():
    deidentifier = Deidentifier("format-salt")

    def scrub(text: str) -> str:
        return deidentifier.deidentify_text(text, "c")[0]

    for original in ("GB29NWBK60161331926819", "DE89 3704 0044 0532 0130 00"):
        out = scrub(f"IBAN: {original}").removeprefix("IBAN: ")
        assert out != original and len(out) == len(original)
        assert out[:2] == original[:2] and [i for i, c in enumerate(out) if c == " "] == [
            i for i, c in enumerate(original) if c == " "
        ]
        # Same country, same length, and never a valid account (its check digits are wrong).
        assert not stdnum_iban.is_valid(out)
    for original, region in (("07700 900456", "GB"), ("06 12 34 56 78", "FR"),
                             ("0412 345 678", "AU")):  # fmt: skip
        out = scrub(f"my mobile: {original}").removeprefix("my mobile: ")
        assert out != original and re.sub(r"\d", "9", out) == re.sub(r"\d", "9", original)
        assert out[:2] == original[:2]  # trunk prefix and first digit kept: still a phone
        assert phonenumbers.parse(out, region).national_number
    out = scrub("Mi DNI es 12345678Z")
    dni = out.removeprefix("Mi DNI es ")
    assert re.fullmatch(r"\d{8}[A-Z]", dni) and dni != "12345678Z"
    out = scrub("card 4111.1111.1111.1111 declined")
    card = out.split()[1]
    assert re.fullmatch(r"\d{4}\.\d{4}\.\d{4}\.\d{4}", card) and not luhn.is_valid(
        card.replace(".", "")
    )
    out = scrub("меня зовут Иван Петров")
    assert re.fullmatch(r"меня зовут [А-ЯЁ][а-яё]+ [А-ЯЁ][а-яё]+", out), out
    assert re.fullmatch(r"我叫[\u4e00-\u9fff]{2,4}", scrub("我叫王伟")), scrub("我叫王伟")


def test_a_card_split_across_two_turns_is_replaced_in_both():
    messages = [
        {"role": "user", "content": "my card is 4242 4242"},
        {"role": "assistant", "content": "Go on."},
        {"role": "user", "content": "4242 4242 exp 11/27"},
        {"role": "assistant", "content": "Thanks."},
    ]
    out, counts = Deidentifier("split-salt").deidentify_messages(messages, "c")
    first = out[0]["content"].removeprefix("my card is ")
    second = out[2]["content"].split(" exp")[0]
    assert "4242 4242" not in output_text(out) and counts["payment_card"] == 2
    joined = (first + second).replace(" ", "")
    assert len(joined) == 16 and not luhn.is_valid(joined)  # a surrogate, never a real card
    # Digits that happen to end and start two turns but are no card stay.
    plain = [dict(m) for m in messages]
    plain[0]["content"], plain[2]["content"] = "order 1234 5678", "9999 more"
    assert Deidentifier("s").deidentify_messages(plain, "c")[0] == plain


def test_json_keys_numbers_metadata_and_name_fields_are_walked():
    messages = [
        {"role": "user", "name": "ivan_petrov", "content": "Hi, Ivan Petrov here."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "t",
                    "type": "function",
                    "function": {
                        "name": "pay",
                        "arguments": json.dumps(
                            {"card_number": 4111111111111111, "phone": 447700900123, "n": 3}
                        ),
                    },
                }
            ],
        },  # fmt: skip
        {
            "role": "tool",
            "tool_call_id": "t",
            "content": json.dumps({"contacts": {"+44 7700 900123": "mobile"}}),
        },  # fmt: skip
        {"role": "assistant", "content": "Paid."},
    ]
    metadata = {"crm": {"customer_email": "ivan@mail.ru", "notes": "IBAN GB29NWBK60161331926819"}}
    out, meta, counts = Deidentifier("walk-salt").deidentify_conversation(
        messages, "c", metadata=metadata
    )
    text = output_text({"messages": out, "metadata": meta})
    for value in ("4111111111111111", "447700900123", "7700 900123", "ivan@mail.ru",
                  "GB29NWBK60161331926819", "Ivan", "Petrov", "ivan_petrov"):  # fmt: skip
        assert value.casefold() not in text.casefold(), value
    args = json.loads(out[1]["tool_calls"][0]["function"]["arguments"])
    assert isinstance(args["card_number"], int) and isinstance(args["phone"], int)
    assert args["n"] == 3 and set(meta["crm"]) == {"customer_email", "notes"}
    assert metadata["crm"]["customer_email"] == "ivan@mail.ru"  # the input is not modified
    assert counts["payment_card"] == 1 and counts["participant_name"] == 1


@pytest.mark.parametrize(
    "text",
    [
        "wisk-couchbase-migrations-bucket holds the 2024-03-15 export (v3.12.1, 1,299.99 EUR).",
        "SELECT id, name FROM users WHERE created_at > '2024-01-01' LIMIT 100;",
        "export PATH=$HOME/.local/bin:$PATH && pip install numpy==1.26.4",
        "name: Build and test\non: [push]\njobs:\n  test:\n    runs-on: ubuntu-22.04",
        "password: ${DB_PASSWORD}\napi_key: os.environ['API_KEY']\ntoken: null",
        "def __get__(self, instance: None, owner: type) -> str:\n    return self.name",
        "Reference number 2024-0043-17; order id 48213; request id 550e8400-e29b-41d4-a716",
        "x = 0.36787944 * y + 1.64872127; coords 0.8188 0.2458; sizes 12 6 4 3 2 2 1",
        "Hello World! This is Python. I'm Sorry, it's parent package, history is kept.",
        "Traceback (most recent call last):\n  File \"app.py\", line 42, in main\nKeyError: 'id'",
        "git commit -m 'fix' && git push origin main  # sha 3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d",
        "强调: emphasis; 谢谢你的帮助。 Thanks for the help in 中文.",
    ],
)
def test_pii_free_technical_text_is_left_alone(text):
    out, counts = Deidentifier("s").deidentify_text(text, "c")
    assert (out, counts) == (text, {}), [(text[d.start : d.end], d.kind) for d in find_all(text)]


def test_phone_regions_are_configurable():
    try:
        set_phone_regions(["JP"])
        assert not any(d.kind == "phone" for d in find_all("Ruf mich an: 0151 23456789"))
        assert any(d.kind == "phone" for d in find_all("電話: 090-1234-5678"))
        with pytest.raises(ValueError, match="XX"):
            set_phone_regions(["XX"])
    finally:
        from depsim_assets.traffic.detectors import DEFAULT_PHONE_REGIONS

        set_phone_regions(DEFAULT_PHONE_REGIONS)
    assert any(d.kind == "phone" for d in find_all("Ruf mich an: 0151 23456789"))


def test_false_replacements_on_real_pii_free_text_stay_rare(record_property):
    # Real code, configs and docs of depsim's runtime dependencies (text nobody here wrote, with
    # chunks naming real people left out): deid-3 replaced something in 4-6% of 500
    # conversations of all installed packages, 3.0% (15/500) of these once the corpus was
    # fixed to the runtime dependencies (deid-2: about 8%, mostly long digit runs read as
    # cards, and `name = 'X'` lines of lexers and schemas). A jump means a detector started
    # eating ordinary text.
    from depsim_tests.traffic.real_text_corpus import real_corpus

    deidentifier = Deidentifier("pii-free-salt")
    conversations = real_corpus(500).conversations
    touched: Counter[str] = Counter()
    dirty = 0
    for conv in conversations:
        _, counts = deidentifier.deidentify_messages(conv.messages, conv.conversation_id)
        dirty += bool(counts)
        touched.update(counts)
    rate = dirty / len(conversations)
    record_property("pii_free_replaced_share", round(rate, 4))
    print(f"\nPII-free real text: {dirty}/{len(conversations)} touched, spans {dict(touched)}")
    assert rate <= 0.08, (rate, touched)
    assert touched["payment_card"] == 0 and touched["national_id"] == 0, touched


@pytest.mark.slow  # two Python processes, one per hash seed
def test_corpus_and_surrogates_do_not_depend_on_the_hash_seed():
    # The corpus is shared with the residue tests and the surrogates must reproduce for a
    # salt: neither may follow the order of a set, which changes with PYTHONHASHSEED.
    import os
    import subprocess
    import sys

    script = (
        "import hashlib, json\n"
        "from depsim_tests.traffic.adversarial_corpus import adversarial_records\n"
        "from depsim_assets.traffic.deid import Deidentifier\n"
        "d = Deidentifier('hash-salt')\n"
        "out = [d.deidentify_conversation(r['messages'], r['conversation_id'],"
        " metadata=r.get('metadata')) for r in adversarial_records(3)]\n"
        "print(hashlib.sha256(json.dumps(out, ensure_ascii=False).encode()).hexdigest())\n"
    )
    digests = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run(
            [sys.executable, "-c", script],
            env=env,
            cwd=Path(__file__).resolve().parents[2],  # the repository, for both packages
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-2000:]
        digests.add(run.stdout.strip())
    assert len(digests) == 1

"""An adversarial PII corpus: international, obfuscated and oddly placed personal data.

Test data, not product code. It holds the values issue 11 found leaking (IBANs, phones in
national formats, other countries' ids, non-Latin names, obfuscated and IDN emails, dotted and
split card numbers, provider keys beyond the well-known prefixes, passwords in prose) plus
values drawn from Faker's locales, ``phonenumbers``' example numbers and checksum-valid ids
computed with ``python-stdnum``, and puts each of them where a real log has them: prose,
signatures, the system prompt, tool arguments and results, JSON keys, JSON numbers, the
record's metadata, the message ``name`` field, markdown tables, code and config blocks, an
assistant echo, and card numbers split across two user turns.

:func:`adversarial_records` returns log records in the shape of the production log
(``traffic.logs.parse_record`` accepts every one); :func:`adversarial_plants` says what was
planted where. Both are deterministic for a seed. :func:`leaked` is the leak test the
thresholds use: a value leaks when it is still in the output verbatim, case-folded, or with
separators removed (a name: when any of its words is still there as a word).
"""

from __future__ import annotations

import json
import random
import re
import string
from dataclasses import dataclass
from typing import Any

import phonenumbers
from faker import Faker
from stdnum import luhn
from stdnum.cn import ric
from stdnum.es import dni
from stdnum.nl import bsn

# Kinds of planted value. Names and addresses are the fuzzy ones (held to 95%); every other
# kind is structured (held to 99%).
IBAN = "iban"
PHONE = "phone"
NATIONAL_ID = "national_id"
PASSPORT = "passport"
EMAIL = "email"
PAYMENT_CARD = "payment_card"
SECRET = "secret"
PASSWORD = "password"
PERSON_NAME = "person_name"
STREET_ADDRESS = "street_address"
FUZZY_KINDS = (PERSON_NAME, STREET_ADDRESS)
STRUCTURED_KINDS = (IBAN, PHONE, NATIONAL_ID, PASSPORT, EMAIL, PAYMENT_CARD, SECRET, PASSWORD)

PLACEMENTS = (
    "prose",
    "signature",
    "system_prompt",
    "assistant_echo",
    "tool_args",
    "tool_result",
    "json_key",
    "json_number",
    "metadata",
    "name_field",
    "markdown_table",
    "code_block",
    "split_turns",
)


@dataclass(frozen=True)
class AdversarialPlant:
    """One planted value: what it is, where it was put and in which conversation."""

    value: str
    kind: str
    placement: str
    locale: str
    conversation_id: str


@dataclass(frozen=True)
class _Value:
    value: str
    kind: str
    locale: str


# --- the values -------------------------------------------------------------------------------

# Exactly as issue 11 lists them (and as people type them).
_ISSUE_VALUES: tuple[_Value, ...] = (
    _Value("GB29NWBK60161331926819", IBAN, "en_GB"),
    _Value("DE89 3704 0044 0532 0130 00", IBAN, "de_DE"),
    _Value("07700 900456", PHONE, "en_GB"),
    _Value("06 12 34 56 78", PHONE, "fr_FR"),
    _Value("090-1234-5678", PHONE, "ja_JP"),
    _Value("13800138000", PHONE, "zh_CN"),
    _Value("(11) 91234-5678", PHONE, "pt_BR"),
    _Value("0412 345 678", PHONE, "en_AU"),
    _Value("Иван Петров", PERSON_NAME, "ru_RU"),
    _Value("王伟", PERSON_NAME, "zh_CN"),
    _Value("john dot smith at gmail dot com", EMAIL, "en_US"),
    _Value("jürgen.müller@bücher.de", EMAIL, "de_DE"),
    _Value("4111.1111.1111.1111", PAYMENT_CARD, "en_US"),
    _Value("hunter2!", PASSWORD, "en_US"),
)

# Typed by hand the way people write them in their own countries.
_HAND_VALUES: tuple[_Value, ...] = (
    _Value("FR14 2004 1010 0505 0001 3M02 606", IBAN, "fr_FR"),
    _Value("ES91 2100 0418 4502 0005 1332", IBAN, "es_ES"),
    _Value("IT60 X054 2811 1010 0000 0123 456", IBAN, "it_IT"),
    _Value("NL91ABNA0417164300", IBAN, "nl_NL"),
    _Value("SE45 5000 0000 0583 9825 7466", IBAN, "sv_SE"),
    _Value("PL61 1090 1014 0000 0712 1981 2874", IBAN, "pl_PL"),
    _Value("ch93 0076 2011 6238 5295 7", IBAN, "de_CH"),
    _Value("020 7946 0958", PHONE, "en_GB"),
    _Value("0151 23456789", PHONE, "de_DE"),
    _Value("030 901820", PHONE, "de_DE"),
    _Value("612 34 56 78", PHONE, "es_ES"),
    _Value("070-123 45 67", PHONE, "sv_SE"),
    _Value("8 (912) 345-67-89", PHONE, "ru_RU"),
    _Value("010-9876-5432", PHONE, "ko_KR"),
    _Value("98765 43210", PHONE, "hi_IN"),
    _Value("06-12345678", PHONE, "nl_NL"),
    _Value("347 123 4567", PHONE, "it_IT"),
    _Value("0033 6 12 34 56 78", PHONE, "fr_FR"),
    _Value("+44 7700 900123", PHONE, "en_GB"),
    _Value("12345678Z", NATIONAL_ID, "es_ES"),
    _Value("X1234567L", NATIONAL_ID, "es_ES"),
    _Value("RSSMRA85T10A562S", NATIONAL_ID, "it_IT"),
    _Value("123.456.789-09", NATIONAL_ID, "pt_BR"),
    _Value("811228-9874", NATIONAL_ID, "sv_SE"),
    _Value("19811228-9874", NATIONAL_ID, "sv_SE"),
    _Value("2345 6789 0124", NATIONAL_ID, "hi_IN"),
    _Value("ABCPE1234F", NATIONAL_ID, "hi_IN"),
    _Value("11010519491231002X", NATIONAL_ID, "zh_CN"),
    _Value("111222333", NATIONAL_ID, "nl_NL"),
    _Value("44051401359", NATIONAL_ID, "pl_PL"),
    _Value("65929970489", NATIONAL_ID, "de_DE"),
    _Value("C01X00T47", PASSPORT, "de_DE"),
    _Value("J8369854", PASSPORT, "hi_IN"),
    _Value("E12345678", PASSPORT, "zh_CN"),
    _Value("533401372", PASSPORT, "en_US"),
    _Value("18AV12345", PASSPORT, "fr_FR"),
    _Value("maria.garcia [at] telefonica [dot] es", EMAIL, "es_ES"),
    _Value("priya.sharma(at)gmail(dot)com", EMAIL, "hi_IN"),
    _Value("j.smith AT outlook DOT com", EMAIL, "en_US"),
    _Value("иван.петров@почта.рф", EMAIL, "ru_RU"),
    _Value("wangwei1988@163.com", EMAIL, "zh_CN"),
    _Value("anna.k+shop@web.de", EMAIL, "de_DE"),
    _Value("5555/5555/5555/4444", PAYMENT_CARD, "en_GB"),
    _Value("4012 8888 8888 1881", PAYMENT_CARD, "de_DE"),
    _Value("3782 822463 10005", PAYMENT_CARD, "en_US"),
    _Value("Soleil2023!", PASSWORD, "fr_FR"),
    _Value("Kotik_1987", PASSWORD, "ru_RU"),
    _Value("Tr0ub4dor&3", PASSWORD, "en_US"),
    _Value("correct horse battery staple", PASSWORD, "en_US"),
    _Value("maria", PERSON_NAME, "es_ES"),
    _Value("jürgen", PERSON_NAME, "de_DE"),
    _Value("محمد الأحمد", PERSON_NAME, "ar_SA"),
    _Value("राहुल शर्मा", PERSON_NAME, "hi_IN"),
    _Value("佐藤健", PERSON_NAME, "ja_JP"),
    _Value("김민준", PERSON_NAME, "ko_KR"),
    _Value("Γιώργος Παπαδόπουλος", PERSON_NAME, "el_GR"),
    _Value("Siobhán O'Connor", PERSON_NAME, "en_IE"),
    _Value("Nguyễn Văn Hùng", PERSON_NAME, "vi_VN"),
    _Value("Ayşe Yılmaz", PERSON_NAME, "tr_TR"),
    _Value("12 rue de Rivoli, 75001 Paris", STREET_ADDRESS, "fr_FR"),
    _Value("Hauptstraße 5, 10115 Berlin", STREET_ADDRESS, "de_DE"),
    _Value("Calle Mayor 10, 3º B, 28013 Madrid", STREET_ADDRESS, "es_ES"),
    _Value("Via Roma 25, 00184 Roma", STREET_ADDRESS, "it_IT"),
    _Value("ul. Marszałkowska 84/92, 00-514 Warszawa", STREET_ADDRESS, "pl_PL"),
    _Value("Prinsengracht 263, 1016 GV Amsterdam", STREET_ADDRESS, "nl_NL"),
    _Value("Drottninggatan 53, 111 21 Stockholm", STREET_ADDRESS, "sv_SE"),
    _Value("Rua Augusta 1500, São Paulo", STREET_ADDRESS, "pt_BR"),
    _Value("ул. Тверская, д. 7, кв. 12", STREET_ADDRESS, "ru_RU"),
    _Value("北京市朝阳区建国路88号", STREET_ADDRESS, "zh_CN"),
    _Value("Flat 3, 27 Baker Street", STREET_ADDRESS, "en_GB"),
)

# Card numbers split across two user turns: (end of the first turn, start of the next).
_SPLIT_CARDS = (
    ("4242 4242", "4242 4242"),
    ("5105 1051", "0510 5100"),
    ("4000 0566", "5566 5556"),
)

_PHONE_REGIONS = ("GB", "FR", "DE", "ES", "IT", "BR", "JP", "IN", "MX", "KR", "PL", "NL")
_REGION_LOCALE = {
    "GB": "en_GB", "FR": "fr_FR", "DE": "de_DE", "ES": "es_ES", "IT": "it_IT", "BR": "pt_BR",
    "JP": "ja_JP", "IN": "hi_IN", "MX": "es_MX", "KR": "ko_KR", "PL": "pl_PL", "NL": "nl_NL",
}  # fmt: skip
_NAME_LOCALES = ("ru_RU", "zh_CN", "ja_JP", "ar_SA", "hi_IN", "ko_KR", "de_DE", "fr_FR",
                 "es_ES", "pt_BR", "pl_PL", "el_GR")  # fmt: skip
_IBAN_LOCALES = ("de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL")


def _drawn_values(rng: random.Random) -> list[_Value]:
    """Values drawn for this seed from Faker, phonenumbers' examples and stdnum checksums."""
    out: list[_Value] = []
    # Sorted: a set's order changes with the interpreter's hash seed, and with it the seeds.
    fakers = {loc: Faker(loc) for loc in sorted({*_NAME_LOCALES, *_IBAN_LOCALES, "en_IN"})}
    for i, fake in enumerate(fakers.values()):
        fake.seed_instance(rng.randrange(1 << 30) + i)
    for loc in _NAME_LOCALES:
        fake = fakers[loc]
        out.append(_Value(f"{fake.last_name()}{fake.first_name()}" if loc in ("zh_CN", "ja_JP",
                          "ko_KR") else f"{fake.first_name()} {fake.last_name()}",
                          PERSON_NAME, loc))  # fmt: skip
    for loc in _IBAN_LOCALES:
        raw = fakers[loc].iban()
        grouped = " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))
        out.append(_Value(rng.choice((raw, grouped)), IBAN, loc))
    for region in _PHONE_REGIONS:
        number = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        # A different subscriber than the published example, same national shape.
        national = str(number.national_number)
        tail = "".join(str(rng.randrange(10)) for _ in range(4))
        number.national_number = int(national[:-4] + tail)
        fmt = rng.choice((phonenumbers.PhoneNumberFormat.NATIONAL,
                          phonenumbers.PhoneNumberFormat.INTERNATIONAL))  # fmt: skip
        out.append(_Value(phonenumbers.format_number(number, fmt), PHONE, _REGION_LOCALE[region]))
    aadhaar = fakers["en_IN"].aadhaar_id()
    out.append(_Value(f"{aadhaar[:4]} {aadhaar[4:8]} {aadhaar[8:]}", NATIONAL_ID, "hi_IN"))
    body = f"3101{rng.randrange(10, 99)}19{rng.randrange(60, 99)}0{rng.randrange(1, 9)}"
    body += f"{rng.randrange(10, 28)}{rng.randrange(100, 999)}"
    out.append(_Value(body + ric.calc_check_digit(body), NATIONAL_ID, "zh_CN"))
    number = f"{rng.randrange(10_000_000, 99_999_999)}"
    out.append(_Value(number + dni.calc_check_digit(number), NATIONAL_ID, "es_ES"))
    while True:
        candidate = f"{rng.randrange(100_000_000, 999_999_999)}"
        if bsn.is_valid(candidate):
            break
    out.append(_Value(candidate, NATIONAL_ID, "nl_NL"))
    body = "5" + "".join(str(rng.randrange(10)) for _ in range(14))
    card = body + luhn.calc_check_digit(body)
    out.append(_Value(".".join(card[i : i + 4] for i in range(0, 16, 4)), PAYMENT_CARD, "en_US"))
    out.extend(_secrets(rng))
    return out


def _rand(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _secrets(rng: random.Random) -> list[_Value]:
    b64 = string.ascii_letters + string.digits + "+/"
    up = string.ascii_uppercase + string.digits
    return [
        # An AWS secret access key has no prefix: only its context says what it is.
        _Value(_rand(rng, 40, b64), SECRET, "en_US"),
        _Value("hf_" + _rand(rng, 34), SECRET, "en_US"),
        _Value(f"SG.{_rand(rng, 22)}.{_rand(rng, 43)}", SECRET, "en_US"),
        _Value("gsk_" + _rand(rng, 52), SECRET, "en_US"),
        _Value(_rand(rng, 32), SECRET, "fr_FR"),  # Mistral keys are 32 bare characters
        _Value(
            f"https://hooks.slack.com/services/T{_rand(rng, 8, up)}/B{_rand(rng, 10, up)}/"
            f"{_rand(rng, 24)}",
            SECRET,
            "en_US",
        ),
        _Value(_rand(rng, 40, string.ascii_letters + string.digits + "-_"), SECRET, "en_US"),
        _Value("npm_" + _rand(rng, 36), SECRET, "en_US"),
        _Value(_rand(rng, 86, b64) + "==", SECRET, "en_US"),  # Azure storage AccountKey
    ]


# How each secret is typed: the secret values come in the order of _secrets().
_SECRET_TEMPLATES = (
    "aws_secret_access_key = {v}",
    "HF_TOKEN={v}",
    "SENDGRID_API_KEY='{v}'",
    'GROQ_API_KEY="{v}"',
    "MISTRAL_API_KEY={v}",
    "webhook: {v}",
    "Authorization: Bearer {v}",
    "//registry.npmjs.org/:_authToken={v}",
    "DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey={v};"
    "EndpointSuffix=core.windows.net",
)


# How each password is typed: always with the words that say it is one.
_PASSWORD_PHRASES = {
    "hunter2!": "my password is hunter2!",
    "Soleil2023!": "mot de passe : Soleil2023!",
    "Kotik_1987": "пароль: Kotik_1987",
    "Tr0ub4dor&3": "my pw is Tr0ub4dor&3",
    "correct horse battery staple": "passphrase = correct horse battery staple",
}


# --- how values are written -------------------------------------------------------------------

_PROSE: dict[str, tuple[str, ...]] = {
    IBAN: (
        "Please refund to my account {v}, the transfer bounced.",
        "Mi IBAN es {v}, ¿puedes comprobar si es correcto?",
        "Kannst du prüfen, ob die IBAN {v} stimmt?",
        "iban {v} - is this a UK or EU account?",
    ),
    PHONE: (
        "You can call me on {v} after six.",
        "mon numéro c'est le {v}",
        "Ruf mich an: {v}",
        "my mobile is {v}, whatsapp works too",
        "电话 {v}，谢谢",
        "Meu celular: {v}",
    ),
    NATIONAL_ID: (
        "For the form they ask my ID number, it is {v}.",
        "Mi DNI es {v}",
        "il mio codice fiscale è {v}",
        "meu CPF: {v}",
        "personnummer {v}",
        "my id no. is {v}, can you fill the form?",
    ),
    PASSPORT: (
        "My passport number is {v}, expiring next year.",
        "Reisepassnummer: {v}",
        "numéro de passeport {v}",
        "passport no {v}",
    ),
    EMAIL: (
        "write to me at {v}",
        "Email: {v}",
        "you can reach me on {v} if the bot fails",
        "my address is {v} (not spam please)",
    ),
    PAYMENT_CARD: (
        "card {v} got declined again",
        "Pay with {v} exp 09/28",
        "my visa is {v}, why is it blocked?",
    ),
    PERSON_NAME: (
        "My name is {v} and I need help with my booking.",
        "Hi, I'm {v}. Can you help me?",
        "меня зовут {v}, помогите пожалуйста",
        "我叫{v}，请帮我写一封邮件。",
        "my friend {v} asked me to write this",
        "Hello, this is {v} from the billing team.",
    ),
    STREET_ADDRESS: (
        "Please ship it to {v}.",
        "I live at {v}, is there a pickup point nearby?",
        "New address: {v}",
        "Lieferadresse: {v}",
        "can you deliver to {v} before Friday?",
    ),
}

_SIGNATURES = ("-- {v}", "Regards,\n{v}", "Best,\n{v}", "С уважением,\n{v}", "Saludos,\n{v}",
               "Thanks\n{v}")  # fmt: skip
_FIELD = {
    IBAN: "iban", PHONE: "phone", NATIONAL_ID: "national_id", PASSPORT: "passport_number",
    EMAIL: "email", PAYMENT_CARD: "card_number", SECRET: "token", PASSWORD: "password",
    PERSON_NAME: "customer_name", STREET_ADDRESS: "address",
}  # fmt: skip
_HEADER = {
    IBAN: "IBAN", PHONE: "Phone", NATIONAL_ID: "ID no.", PASSPORT: "Passport", EMAIL: "E-mail",
    PAYMENT_CARD: "Card", SECRET: "Key", PASSWORD: "Password", PERSON_NAME: "Name",
    STREET_ADDRESS: "Address",
}  # fmt: skip


def _allowed(v: _Value) -> tuple[str, ...]:
    """Placements that make sense for a value (a JSON number needs a digits-only value...)."""
    places = ["prose", "signature", "system_prompt", "assistant_echo", "tool_args",
              "tool_result", "json_key", "metadata", "markdown_table", "code_block"]  # fmt: skip
    if v.kind == PERSON_NAME:
        places.append("name_field")
    if v.kind in (PAYMENT_CARD, PHONE, NATIONAL_ID) and _json_number(v) is not None:
        places.append("json_number")
    if v.kind in (PASSWORD, SECRET):
        # A password or key is written with its cue ("my password is ..."): a table cell or a
        # JSON key holding one would drop the cue the value itself carries.
        places = [p for p in places if p not in ("markdown_table", "json_key", "signature")]
    return tuple(places)


def _json_number(v: _Value) -> str | None:
    """The value as a JSON integer would print it, when it is one (no leading zero)."""
    digits = re.sub(r"\D", "", v.value)
    if (
        not digits
        or digits[0] == "0"
        or len(digits) < 9
        or not re.fullmatch(r"[\d .\-()/]+", v.value)
    ):
        return None
    return digits


class _Conv:
    """A conversation being assembled; placements add to its parts."""

    def __init__(self, cid: str, rng: random.Random) -> None:
        self.cid = cid
        self.rng = rng
        self.system: list[str] = ["You are a helpful assistant for Acme Support."]
        self.user: list[str] = []
        self.split: tuple[str, str] | None = None
        self.args: dict[str, Any] = {}
        self.result: dict[str, Any] = {}
        self.echo: list[str] = []
        self.metadata: dict[str, Any] = {}
        self.name: str | None = None
        self.plants: list[AdversarialPlant] = []

    def plant(self, value: str, v: _Value, placement: str) -> None:
        self.plants.append(AdversarialPlant(value, v.kind, placement, v.locale, self.cid))

    def record(self, seed: int, index: int) -> dict[str, Any]:
        first = "\n\n".join(self.user) or "Can you help me with my account?"
        user_msg: dict[str, Any] = {"role": "user", "content": first}
        if self.name is not None:
            user_msg["name"] = self.name
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "\n".join(self.system)},
            user_msg,
        ]
        if self.split is not None:
            messages[-1]["content"] = f"{first}\n\nmy card is {self.split[0]}"
            messages.append({"role": "assistant", "content": "Go on, I'm listening."})
            messages.append({"role": "user", "content": f"{self.split[1]} exp 11/27, cvv 123"})
        if self.args or self.result:
            call_id = f"call_{index}"
            args = self.args or {"query": "account"}
            messages.append({
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": call_id, "type": "function", "function": {
                    "name": "crm_lookup", "arguments": json.dumps(args, ensure_ascii=False)}}],
            })  # fmt: skip
            result = self.result or {"status": "ok"}
            messages.append({"role": "tool", "tool_call_id": call_id,
                             "content": json.dumps(result, ensure_ascii=False)})  # fmt: skip
        final = "I have updated your details." + "".join(f" {e}" for e in self.echo)
        messages.append({"role": "assistant", "content": final})
        hour, minute = divmod(index * 7 % 1440, 60)
        record: dict[str, Any] = {
            "conversation_id": self.cid,
            "created_at": f"2026-11-30T{hour:02d}:{minute:02d}:00Z",
            "user_id": f"user-{seed}-{index % 37}",
            "opted_out": False,
            "source": "chat",
            "model": "prod-model-1",
            "messages": messages,
        }
        if self.metadata:
            record["metadata"] = self.metadata
        return record


def _place(conv: _Conv, v: _Value, placement: str) -> None:
    rng = conv.rng
    text = v.value
    field = _FIELD[v.kind]
    secret_template = None
    if v.kind == SECRET:
        secret_template = _SECRET_TEMPLATES[_SECRET_INDEX.get(v.value, 0)]
    elif v.kind == PASSWORD:
        secret_template = _PASSWORD_PHRASES[v.value].replace(v.value, "{v}")
    if placement == "prose":
        if secret_template:
            lead = rng.choice(("This stopped working today:", "I can't log in even though",
                               "the shared account is admin, and"))  # fmt: skip
            conv.user.append(f"{lead}\n{secret_template.format(v=text)}")
        else:
            conv.user.append(rng.choice(_PROSE[v.kind]).format(v=text))
    elif placement == "signature":
        body = rng.choice(("can you look at this asap", "thx for the help",
                           "please confirm when done"))  # fmt: skip
        if v.kind == PERSON_NAME:
            conv.user.append(f"{body}\n\n" + rng.choice(_SIGNATURES).format(v=text))
        else:
            conv.user.append(f"{body}\n\n--\nK. L.\n{_HEADER[v.kind]}: {text}")
    elif placement == "system_prompt":
        what = secret_template.format(v=text) if secret_template else f"{field}: {text}"
        conv.system.append(f"The signed-in customer's record ({what}) is confidential.")
    elif placement == "assistant_echo":
        # The user gives it once (with whatever cue the template has); the assistant repeats
        # it bare, where nothing but the earlier mention says what it is.
        if secret_template:
            conv.user.append(f"please update it: {secret_template.format(v=text)}")
        else:
            conv.user.append(rng.choice(_PROSE[v.kind]).format(v=text))
        conv.echo.append(f"I've saved {text} as requested.")
    elif placement == "tool_args":
        conv.args[field] = text
    elif placement == "tool_result":
        conv.result.setdefault("records", []).append({"id": rng.randrange(1000, 9999),
                                                      field: text})  # fmt: skip
    elif placement == "json_key":
        conv.result.setdefault(f"by_{field}", {})[text] = {"verified": True}
    elif placement == "json_number":
        number = _json_number(v)
        assert number is not None
        conv.args[field] = int(number)
        text = number
    elif placement == "metadata":
        target = conv.metadata if rng.random() < 0.5 else conv.metadata.setdefault("crm", {})
        target[f"customer_{field}"] = text
    elif placement == "name_field":
        conv.name = text
    elif placement == "markdown_table":
        conv.user.append(
            f"can you fix this table?\n\n| # | {_HEADER[v.kind]} | status |\n|---|---|---|\n"
            f"| 1 | {text} | pending |"
        )
    elif placement == "code_block":
        if secret_template:
            conv.user.append(f"why does this fail?\n```bash\n{secret_template.format(v=text)}\n"
                             "curl -sf https://api.acme.dev/v1/ping\n```")  # fmt: skip
        elif rng.random() < 0.5:
            conv.user.append(f'```yaml\ncustomer:\n  {field}: "{text}"\n  tier: gold\n```')
        else:
            conv.user.append(f'```python\nCUSTOMER = {{"{field}": "{text}", "tier": 2}}\n```')
    conv.plant(text, v, placement)


_SECRET_INDEX: dict[str, int] = {}


def _build(seed: int) -> tuple[list[dict[str, Any]], list[AdversarialPlant]]:
    rng = random.Random(seed)
    drawn = _drawn_values(rng)
    secrets = [v for v in drawn if v.kind == SECRET]
    _SECRET_INDEX.clear()
    _SECRET_INDEX.update({v.value: i for i, v in enumerate(secrets)})
    values = [*_ISSUE_VALUES, *_HAND_VALUES, *drawn]
    # Each value goes to two placements; every placement it allows is used in turn, so each
    # placement appears for many kinds.
    jobs: list[tuple[_Value, str]] = []
    turn = 0
    for v in values:
        allowed = _allowed(v)
        for _ in range(2):
            jobs.append((v, allowed[turn % len(allowed)]))
            turn += 1
        if v.kind in (PHONE, PAYMENT_CARD) and "json_number" in allowed:
            jobs.append((v, "json_number"))
    rng.shuffle(jobs)
    records: list[dict[str, Any]] = []
    plants: list[AdversarialPlant] = []
    index = 0

    def flush(conv: _Conv) -> None:
        records.append(conv.record(seed, index))
        plants.extend(conv.plants)

    pos = 0
    while pos < len(jobs):
        conv = _Conv(f"adv-{seed}-{index:04d}", rng)
        used: set[str] = set()
        for v, placement in jobs[pos : pos + rng.choice((1, 2, 3))]:
            # One value of a kind per single-slot placement, so nothing is overwritten.
            key = f"{placement}|{_FIELD[v.kind]}" if placement not in ("prose", "signature",
                  "assistant_echo", "markdown_table", "code_block") else ""  # fmt: skip
            if key and key in used or placement == "name_field" and conv.name is not None:
                break
            used.add(key)
            _place(conv, v, placement)
            pos += 1
        flush(conv)
        index += 1
    for first, second in _SPLIT_CARDS:
        conv = _Conv(f"adv-{seed}-{index:04d}", rng)
        conv.split = (first, second)
        split_value = _Value(f"{first} {second}", PAYMENT_CARD, "en_US")
        for part in (first, second):
            conv.plants.append(AdversarialPlant(part, PAYMENT_CARD, "split_turns",
                                                split_value.locale, conv.cid))  # fmt: skip
        flush(conv)
        index += 1
    return records, plants


def adversarial_records(seed: int = 0) -> list[dict[str, Any]]:
    """Log records (production-log JSON shape) carrying the planted values of ``seed``."""
    return _build(seed)[0]


def adversarial_plants(seed: int = 0) -> list[AdversarialPlant]:
    """What :func:`adversarial_records` planted for the same ``seed``: value, kind, placement,
    locale and conversation id, one entry per placement (a split card: one per part)."""
    return _build(seed)[1]


# --- the leak test ----------------------------------------------------------------------------

_SEP_RE = re.compile(r"[\W_]+")


def output_text(value: Any) -> str:
    """Every string of a de-identified record (keys included), JSON strings decoded, joined."""
    parts: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, dict):
            for key, sub in item.items():
                parts.append(str(key))
                walk(sub)
        elif isinstance(item, list):
            for sub in item:
                walk(sub)
        elif isinstance(item, str):
            parts.append(item)
            stripped = item.lstrip()
            if stripped[:1] in ("{", "["):
                try:
                    walk(json.loads(item))
                except ValueError:
                    pass
        elif item is not None:
            parts.append(str(item))

    walk(value)
    return "\n".join(parts)


def leaked(plant: AdversarialPlant, text: str) -> bool:
    """Whether ``plant`` is still readable in ``text``: verbatim, case-folded, or with
    separators removed; a name when any of its words (3+ letters, 2+ for non-Latin scripts)
    is still there as a word."""
    folded = text.casefold()
    value = plant.value.casefold()
    if value in folded:
        return True
    if plant.kind == PERSON_NAME:
        for word in plant.value.split():
            minimum = 3 if word.isascii() or _is_latin(word) else 2
            if len(word) >= minimum and re.search(
                rf"(?<!\w){re.escape(word.casefold())}(?!\w)", folded
            ):
                return True
        return False
    bare = _SEP_RE.sub("", value)
    return len(bare) >= 6 and bare in _SEP_RE.sub("", folded)


def _is_latin(word: str) -> bool:
    return all(ord(c) < 0x250 for c in word)

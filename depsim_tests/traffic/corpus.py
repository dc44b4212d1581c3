"""A planted-PII corpus and a PII-free corpus, to measure de-identification.

:func:`planted_corpus` builds conversations that each carry a few pieces of personal data of
every type the de-identifier handles, written the way people write them: in prose, in
greetings and signatures, in JSON tool arguments and tool results, in code and config
snippets, in CSV rows and markdown tables, echoed back by the assistant, in many number
formats and ten name locales. :func:`pii_free_corpus` builds conversations full of things
that look like PII and are not (dates, versions, order numbers, prices, hashes, UUIDs,
capitalised words after greetings). :func:`evaluate` runs a de-identifier over both and
reports recall per type and the false-replacement rate.

Everything is drawn from ``random.Random(seed)`` and seeded Faker instances: same seed, same
corpus. Values come from generators independent of the detectors' patterns.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from faker import Faker

from depsim_assets.traffic import deid
from depsim_assets.traffic.deid import Deidentifier, luhn_valid

NAME_LOCALES = (
    "en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "pl_PL", "pt_BR", "nl_NL", "sv_SE",
)  # fmt: skip
STRUCTURED = (
    deid.EMAIL,
    deid.PHONE,
    deid.PAYMENT_CARD,
    deid.SSN,
    deid.NATIONAL_ID,
    deid.IPV4,
    deid.IPV6,
    deid.SECRET,
    deid.URL_TOKEN,
)
FUZZY = (deid.PERSON_NAME, deid.STREET_ADDRESS)
TYPES = (*STRUCTURED, *FUZZY)


@dataclass(frozen=True)
class Plant:
    """One planted value: its type, exact text and the context template it was put in."""

    kind: str
    value: str
    context: str


@dataclass(frozen=True)
class CorpusConversation:
    """One corpus conversation in OpenAI chat form and what was planted in it."""

    conversation_id: str
    messages: list[dict[str, Any]]
    plants: tuple[Plant, ...]


# --- value generators ---------------------------------------------------------------------------


class _Values:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.fakers = {loc: Faker(loc) for loc in NAME_LOCALES}
        for i, fake in enumerate(self.fakers.values()):
            fake.seed_instance(rng.randrange(1 << 30) + i)
        self.us = self.fakers["en_US"]

    def digits(self, n: int) -> str:
        return "".join(str(self.rng.randrange(10)) for _ in range(n))

    def alnum(self, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def name(self) -> str:
        fake = self.fakers[self.rng.choice(NAME_LOCALES)]
        first, last = fake.first_name(), fake.last_name()
        return self.rng.choice((first, f"{first} {last}", f"{first} {last}"))

    def email(self) -> str:
        fake = self.fakers[self.rng.choice(NAME_LOCALES)]
        local = self.rng.choice(
            (
                fake.user_name(),
                f"{self.us.first_name()}.{self.us.last_name()}".lower(),
                f"{self.us.first_name().lower()}+{self.alnum(4).lower()}",
                f"{self.us.last_name().lower()}{self.rng.randrange(1, 99)}",
            )
        )
        domain = self.rng.choice(
            ("gmail.com", "yahoo.co.uk", "outlook.de", "corp.acme-widgets.com", "uni-koeln.de",
             "mail.ru", "proton.me", "stanford.edu", "gov.br", self.us.domain_name())
        )  # fmt: skip
        return f"{local}@{domain}".replace(" ", "")

    def phone(self) -> str:
        d = self.digits
        area = str(self.rng.randrange(201, 990))
        exch = str(self.rng.randrange(201, 990)).replace("555", "556")
        return self.rng.choice(
            (
                f"({area}) {exch}-{d(4)}",
                f"{area}-{exch}-{d(4)}",
                f"{area}.{exch}.{d(4)}",
                f"+1 {area} {exch} {d(4)}",
                f"+1-{area}-{exch}-{d(4)}",
                f"1-{area}-{exch}-{d(4)}",
                f"+44 20 {d(4)} {d(4)}",
                f"+44 7{d(3)} {d(6)}",
                f"+49 30 {d(7)}",
                f"+49 151 {d(8)}",
                f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
                f"+34 6{d(2)} {d(3)} {d(3)}",
                f"+39 3{d(2)} {d(7)}",
                f"+91 9{d(4)} {d(5)}",
                f"+81-3-{d(4)}-{d(4)}",
                f"+61 4{d(2)} {d(3)} {d(3)}",
                f"+55 11 9{d(4)}-{d(4)}",
                f"+86 138 {d(4)} {d(4)}",
                f"+27 82 {d(3)} {d(4)}",
                f"+353 87 {d(3)} {d(4)}",
            )
        )

    def card(self) -> str:
        kind = self.rng.choice(("visa", "mc", "amex", "discover", "visa19"))
        prefix, length = {
            "visa": ("4", 16),
            "mc": (str(self.rng.randrange(51, 56)), 16),
            "amex": (self.rng.choice(("34", "37")), 15),
            "discover": ("6011", 16),
            "visa19": ("4", 19),
        }[kind]
        body = prefix + self.digits(length - len(prefix) - 1)
        number = body + next(c for c in "0123456789" if luhn_valid(body + c))
        sep = self.rng.choice((" ", "-", ""))
        if kind == "amex":
            return sep.join((number[:4], number[4:10], number[10:]))
        if kind == "visa19":
            return number
        return sep.join(number[i : i + 4] for i in range(0, 16, 4))

    def ssn(self) -> str:
        area = self.rng.choice([a for a in range(1, 900) if a != 666])
        return f"{area:03d}-{self.rng.randrange(1, 100):02d}-{self.rng.randrange(1, 10000):04d}"

    def national_id(self) -> str:
        if self.rng.random() < 0.5:
            first = self.rng.choice("ABCEGHJKLMNOPRSTWXYZ")
            second = self.rng.choice("ABCEGHJKLMNPRSTWXYZ")
            if first + second in ("BG", "GB", "NK", "KN", "TN", "NT", "ZZ"):
                first, second = "A", "B"
            sep = self.rng.choice(("", " "))
            d = [self.digits(2) for _ in range(3)]
            return f"{first}{second}{sep}{sep.join(d)}{sep}{self.rng.choice('ABCD')}"
        body = str(self.rng.choice((1, 2, 3, 4, 5, 6, 7, 9))) + self.digits(7)
        number = body + next(c for c in "0123456789" if luhn_valid(body + c))
        sep = self.rng.choice((" ", "-"))
        return sep.join((number[:3], number[3:6], number[6:]))

    def ipv4(self) -> str:
        first = self.rng.choice((8, 23, 45, 66, 81, 93, 104, 151, 172, 185, 10, 192, 203))
        return ".".join(
            (str(first), str(self.rng.randrange(256)), str(self.rng.randrange(256)),
             str(self.rng.randrange(1, 255)))
        )  # fmt: skip

    def ipv6(self) -> str:
        groups = [f"{self.rng.randrange(0x10000):x}" for _ in range(8)]
        groups[0] = self.rng.choice(("2a02", "2607", "2409", "2c0f", "2001:470".split(":")[0]))
        style = self.rng.randrange(3)
        if style == 0:
            return ":".join(groups)
        if style == 1:
            return ":".join(groups[:4]) + "::" + groups[7]
        return ":".join(g.zfill(4) for g in groups)

    def secret(self) -> str:
        a = self.alnum
        return self.rng.choice(
            (
                "sk-" + a(48),
                "sk-proj-" + a(40, string.ascii_letters + string.digits + "-_"),
                "sk-ant-api03-" + a(60, string.ascii_letters + string.digits + "-_"),
                "AKIA" + a(16, string.ascii_uppercase + string.digits),
                "ghp_" + a(36),
                "github_pat_" + a(22) + "_" + a(59),
                "xoxb-" + self.digits(12) + "-" + self.digits(13) + "-" + a(24),
                "AIza" + a(35, string.ascii_letters + string.digits + "-_"),
                "sk_live_" + a(24),
                "glpat-" + a(20),
                self._jwt(),
                self._pem(),
            )
        )

    def _jwt(self) -> str:
        import base64

        def b64(obj: dict[str, Any]) -> str:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")

        head = b64({"alg": "HS256", "typ": "JWT"})
        body = b64({"sub": self.digits(8), "name": self.us.name(), "iat": 1700000000})
        return f"{head}.{body}.{self.alnum(43, string.ascii_letters + string.digits + '-_')}"

    def _pem(self) -> str:
        kind = self.rng.choice(("", "RSA ", "EC ", "OPENSSH "))
        lines = [self.alnum(64, string.ascii_letters + string.digits + "+/") for _ in range(4)]
        return f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(lines) + (
            f"\n-----END {kind}PRIVATE KEY-----"
        )

    def url_token(self) -> tuple[str, str]:
        """(url, the credential in it)."""
        token = self.alnum(self.rng.randrange(16, 40))
        host = self.us.domain_name()
        if self.rng.random() < 0.3:
            user, pw = self.us.user_name(), self.alnum(12)
            cred = f"{user}:{pw}"
            scheme = self.rng.choice(("https", "postgres", "redis", "ftp"))
            return f"{scheme}://{cred}@{host}/db", cred
        key = self.rng.choice(("token", "access_token", "api_key", "key", "sig", "password"))
        return f"https://{host}/v1/files?id={self.digits(4)}&{key}={token}", token

    def address(self) -> str:
        style = self.rng.randrange(4)
        if style == 0:
            return self.us.street_address()
        small, large = str(self.rng.randrange(1, 200)), str(self.rng.randrange(1, 99999))
        number = self.rng.choice((small, large))
        street = self.rng.choice((self.us.last_name(), self.us.first_name(), "Maple", "Oak", "Elm"))
        suffix = self.rng.choice(
            ("Street", "St", "St.", "Avenue", "Ave", "Ave.", "Road", "Rd", "Boulevard", "Blvd",
             "Lane", "Ln", "Drive", "Dr", "Court", "Way", "Place", "Terrace", "Parkway", "Circle")
        )  # fmt: skip
        if style == 1:
            return f"{number} {street} {suffix}"
        if style == 2:
            direction = self.rng.choice(("N.", "S", "East", "W."))
            unit = self.rng.choice(("Apt 4B", "Suite 200", "Unit 12", "#7", "Apt. 31"))
            return f"{number} {direction} {street} {suffix}, {unit}"
        return f"{number} {street} {self.rng.choice(('Hill', 'Park', 'Lake'))} {suffix}"


# --- contexts -----------------------------------------------------------------------------------

# Each template takes the value; {v} marks it. Prose templates go in user or assistant text.
PROSE: dict[str, tuple[str, ...]] = {
    deid.EMAIL: (
        "You can reach me at {v}.", "Send the invoice to {v}, thanks!", "(email: {v})",
        "My work address is <{v}>", "cc: {v}", "Is {v} a valid address?",
        "From: Support <{v}>", "Email {v} or call.",
    ),
    deid.PHONE: (
        "My number is {v}.", "Call me at {v} after 5pm.", "Tel: {v}", "phone={v}",
        "Text {v} if you're running late", "The clinic's line ({v}) is always busy.",
        "Mobile: {v}\nOffice: none",
    ),
    deid.PAYMENT_CARD: (
        "My card number is {v}, expiry 04/27.", "Charge it to {v}.", "card: {v}",
        "Is it safe to paste {v} here?", "The last payment used {v} and failed.",
    ),
    deid.SSN: (
        "My SSN is {v}.", "SSN: {v}", "social security number {v}, please keep it private",
        "For the W-2 use {v}.",
    ),
    deid.NATIONAL_ID: (
        "My national insurance number is {v}.", "NI number: {v}", "SIN {v}",
        "ID number ({v}) attached to the form.",
    ),
    deid.IPV4: (
        "My server's IP is {v}.", "I keep getting blocked from {v}", "ssh root@{v}",
        "ping {v} times out", "allow-list: {v}/32",
    ),
    deid.IPV6: (
        "The host is at {v}.", "Our gateway is {v} if that matters", "curl http://[{v}]:8080/",
        "AAAA record -> {v}",
    ),
    deid.SECRET: (
        "Here's my API key in case you need it: {v}", 'export OPENAI_API_KEY="{v}"',
        "token = '{v}'", "The key {v} stopped working yesterday.", "```\n{v}\n```",
        "Authorization: Bearer {v}",
    ),
    deid.URL_TOKEN: (
        "The file is at {v} .", "Open {v} and tell me what you see.", "DATABASE_URL={v}",
        "link: <{v}>",
    ),
    deid.STREET_ADDRESS: (
        "I live at {v}.", "Ship it to {v}, please.", "Address: {v}", "We moved to {v} last year.",
        "Meet me at {v} at noon.", "{v}\nSpringfield, IL 62704",
    ),
    deid.PERSON_NAME: (
        "My name is {v} and I need help.", "Hi, I'm {v}. Can you help?",
        "This is {v} from accounting.", "Please check this.\n\nThanks, {v}",
        "Please check this.\n— {v}", "Please review.\n\nCheers,\n{v}",
        "My boss {v} wants it by Friday.", "Dear {v},\nthe report is late.",
        "name: {v}\nrole: admin", "Hello {v}, welcome back!", "Kind regards,\n{v}",
        "I am {v}, the new tenant.", "Call me {v}.", "My sister {v} says hi.",
        "Signed, {v}", "Could you write a birthday card for my friend {v}?",
        "Best,\n{v}", "Our landlord, {v}, won't fix the heating.",
    ),
}


_FIELD = {
    deid.EMAIL: "email",
    deid.PHONE: "phone",
    deid.PERSON_NAME: "customer_name",
    deid.STREET_ADDRESS: "address",
    deid.IPV4: "ip",
    deid.IPV6: "ip",
    deid.SECRET: "api_key",
    deid.URL_TOKEN: "url",
    deid.PAYMENT_CARD: "card_number",
    deid.SSN: "ssn",
    deid.NATIONAL_ID: "national_id",
}

USER_OPENERS = (
    "Can you help me with something?",
    "Quick question about my account.",
    "I need to fill in a form.",
    "Please draft a short reply for me.",
    "Something is wrong with my setup.",
)


def _value(values: _Values, kind: str) -> tuple[str, str]:
    """(text to insert, the planted value to check)."""
    if kind == deid.URL_TOKEN:
        return values.url_token()
    maker: dict[str, Callable[[], str]] = {
        deid.EMAIL: values.email,
        deid.PHONE: values.phone,
        deid.PAYMENT_CARD: values.card,
        deid.SSN: values.ssn,
        deid.NATIONAL_ID: values.national_id,
        deid.IPV4: values.ipv4,
        deid.IPV6: values.ipv6,
        deid.SECRET: values.secret,
        deid.STREET_ADDRESS: values.address,
        deid.PERSON_NAME: values.name,
    }
    value = maker[kind]()
    return value, value


def planted_corpus(n: int = 2000, seed: int = 11) -> list[CorpusConversation]:
    """``n`` conversations with two to three plants each, types balanced round-robin."""
    rng = random.Random(seed)
    values = _Values(rng)
    out = []
    k = 0
    for i in range(n):
        cid = f"corpus-{i:05d}"
        plants: list[Plant] = []
        messages: list[dict[str, Any]] = [{"role": "system", "content": "You are helpful."}]
        user_bits = [rng.choice(USER_OPENERS)]
        tool_msgs: list[dict[str, Any]] = []
        assistant_bits = ["Here is what I found."]
        for _ in range(rng.choice((2, 2, 3))):
            kind = TYPES[k % len(TYPES)]
            k += 1
            text, value = _value(values, kind)
            where = rng.choices(("prose", "args", "result", "csv", "table", "echo"),
                                (50, 12, 12, 8, 8, 10))[0]  # fmt: skip
            if where == "prose":
                template = rng.choice(PROSE[kind])
                user_bits.append(template.format(v=text))
                context = f"prose:{PROSE[kind].index(template)}"
            elif where in ("args", "result"):
                field = _FIELD[kind]
                payload = {"id": rng.randrange(1000, 99999), field: text, "status": "active"}
                call_id = f"call_{len(tool_msgs)}_{i}"
                call = {
                    "id": call_id,
                    "type": "function",
                    "function": {
                        "name": "lookup_customer",
                        "arguments": json.dumps(payload if where == "args" else {"id": 7}),
                    },
                }
                tool_msgs.append({"role": "assistant", "content": None, "tool_calls": [call]})
                result = json.dumps([payload] if where == "result" else {"ok": True})
                tool_msgs.append({"role": "tool", "tool_call_id": call_id, "content": result})
                context = f"tool:{where}"
            elif where == "csv":
                user_bits.append(f"id,{_FIELD[kind]},status\n{rng.randrange(100, 999)},{text},open")
                context = "csv"
            elif where == "table":
                user_bits.append(
                    f"| id | {_FIELD[kind]} |\n|---|---|\n| {rng.randrange(1, 99)} | {text} |"
                )
                context = "table"
            else:
                user_bits.append(PROSE[kind][0].format(v=text))
                assistant_bits.append(f"I have noted {text} for you.")
                context = "echo"
            plants.append(Plant(kind, value, context))
        messages.append({"role": "user", "content": "\n\n".join(user_bits)})
        messages.extend(tool_msgs)
        messages.append({"role": "assistant", "content": " ".join(assistant_bits)})
        out.append(CorpusConversation(cid, messages, tuple(plants)))
    return out


# --- the PII-free corpus ----------------------------------------------------------------------

LOOKALIKES = (
    "The meeting is on 2024-03-15 at 12:30:45 in room 4B.",
    "Upgrade from Python 3.11.7 to 3.12.1 and pip 24.0.",
    "Order #48213 shipped; tracking 1Z 999 AA1 01 2345 6784 is not live yet.",
    "It costs $1,299.99 or €1.099,00, about 1299 USD.",
    "ISBN 978-3-16-148410-0 is the second edition.",
    "Use color #FF5733 and commit 3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f.",
    "The request id was 550e8400-e29b-41d4-a716-446655440000.",
    "Solve 3x + 7 = 22, then 12 * 34 = 408.",
    "Thanks, team! Hi everyone, quick update.",
    "Dear Sir or Madam, I am writing about my order.",
    "I'm Happy with the result. This is Great work.",
    "Paris, Lisbon and Osaka are on the list for May.",
    "The iPhone 15 and Google Sheets both support it.",
    "Run it on localhost 127.0.0.1:8000 or 0.0.0.0.",
    "Population: 8,100,000,000; GDP growth 2.5% in Q3.",
    "Chapter 12, verses 3-5, page 101 to 145.",
    "Reference number 2024-0043-17 and case 17-cv-01234.",
    "Read the docs at https://docs.python.org/3/library/re.html?highlight=search.",
    "The function returns -1 when the value is 0xFFFF.",
    "Train leaves at 07:45 from platform 9, arrives 10:15.",
    "Flight LH 1234 departs Frankfurt at 14:05.",
    "Mix 250 g flour, 2 eggs and 100 ml milk at 180 C for 25 minutes.",
    "The SQL is SELECT name, email FROM users WHERE id = 42;",
    "Regards to everyone at the office. All the best, the Team",
    "Version 10.0.19045.3693 of Windows is installed.",
    "Set max_tokens=512 and temperature=0.7 in the config.",
    "Error code 0x80070005 means access denied.",
    "We met on Monday; Tuesday works too.",
    "I read The Great Gatsby and Pride and Prejudice last year.",
    "Call the function with key=value pairs, e.g. ?page=2&sort=asc.",
)


def pii_free_corpus(n: int = 1000, seed: int = 12) -> list[CorpusConversation]:
    """``n`` conversations built only from look-alikes that are not personal data."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        user = " ".join(rng.sample(LOOKALIKES, 3))
        reply = " ".join(rng.sample(LOOKALIKES, 2))
        messages = [
            {"role": "user", "content": user},
            {"role": "assistant", "content": reply},
        ]
        out.append(CorpusConversation(f"clean-{i:05d}", messages, ()))
    return out


# --- evaluation ---------------------------------------------------------------------------------


def leaked(plant: Plant, text: str) -> bool:
    """Whether ``plant`` is still readable in ``text``."""
    if plant.kind != deid.PERSON_NAME:
        return plant.value in text
    # Every capitalised token of the name must be gone as a word ("van", "da" are not).
    tokens = [t for t in re.split(r"[\s]+", plant.value) if t[:1].isupper() and len(t) > 1]
    return any(re.search(rf"(?<![\w-]){re.escape(t)}(?![\w-])", text) for t in tokens)


def evaluate(deidentifier: Deidentifier | None = None, n: int = 2000, seed: int = 11,
             n_clean: int = 1000) -> dict[str, Any]:  # fmt: skip
    """Recall per type on the planted corpus and false replacements on the PII-free one.

    Returns ``{"conversations", "planted", "recalled", "recall", "missed", "pii_free"}``;
    ``missed`` lists (type, context) of misses, ``pii_free`` has ``conversations``,
    ``with_replacement``, ``rate`` and ``spans_by_type``.
    """
    deidentifier = deidentifier or Deidentifier("corpus-salt")
    planted: Counter[str] = Counter()
    recalled: Counter[str] = Counter()
    missed: Counter[tuple[str, str]] = Counter()
    corpus = planted_corpus(n, seed)
    for conv in corpus:
        out, _ = deidentifier.deidentify_messages(conv.messages, conv.conversation_id)
        text = json.dumps(out, ensure_ascii=False) + "\n" + all_text(out)
        for plant in conv.plants:
            planted[plant.kind] += 1
            if leaked(plant, text):
                missed[(plant.kind, plant.context)] += 1
            else:
                recalled[plant.kind] += 1
    spans: Counter[str] = Counter()
    dirty = 0
    clean = pii_free_corpus(n_clean, seed + 1)
    for conv in clean:
        _, counts = deidentifier.deidentify_messages(conv.messages, conv.conversation_id)
        if counts:
            dirty += 1
            spans.update(counts)
    return {
        "conversations": len(corpus),
        "planted": dict(sorted(planted.items())),
        "recalled": dict(sorted(recalled.items())),
        "recall": {k: recalled[k] / planted[k] for k in sorted(planted)},
        "missed": {f"{k}|{c}": v for (k, c), v in sorted(missed.items())},
        "pii_free": {
            "conversations": len(clean),
            "with_replacement": dirty,
            "rate": dirty / len(clean),
            "spans_by_type": dict(sorted(spans.items())),
        },
    }


def all_text(messages: list[dict[str, Any]]) -> str:
    """Every text of ``messages``, tool JSON decoded, joined by newlines."""
    # Tool arguments and results are JSON inside JSON: decode them so escapes hide nothing.
    parts = []
    for m in messages:
        if isinstance(m.get("content"), str):
            parts.append(m["content"])
            parts.append(_decoded(m["content"]))
        for call in m.get("tool_calls") or []:
            parts.append(_decoded(call["function"]["arguments"]))
    return "\n".join(parts)


def _decoded(text: str) -> str:
    try:
        return json.dumps(json.loads(text), ensure_ascii=False)
    except (ValueError, TypeError):
        return ""

"""Secret-shaped values: refused in configuration, scrubbed out of every text depsim keeps.

Two jobs, one set of shapes:

- :func:`secret_kind` says whether a configuration value looks like a credential (a provider
  key, a JWT, a ``Bearer ...`` header, a long random token), so the registry can refuse it
  before it is written to ``candidates.yaml``, sent as a header, or stored in ``params_json``.
- :func:`scrub` removes credentials from free text before it is stored or shown: the actual
  values of the keys this process uses (every key :func:`remember` was told about, plus the
  values of secret-named environment variables), anything shaped like a key, ``user:pass@``
  in URLs and token query parameters. Endpoint error bodies are the usual carrier: some
  servers echo the request's ``Authorization`` header when they fail.

Shapes are matched at token boundaries: ``wisk-couchbase-migrations`` contains ``sk-`` but
is a bucket name, not a key.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

REDACTED = "[redacted]"

# A key never continues a longer token: no letter, digit, '_' or '-' right before it.
_START = r"(?<![A-Za-z0-9_\-])"
_END = r"(?![A-Za-z0-9_\-])"

# (kind, pattern): the shapes of credentials providers issue. Where a prefix alone is a common
# word part (sk-, hf_), the body must also hold a digit, which real keys always do.
_KEY_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("anthropic_key", _START + r"sk-ant-[A-Za-z0-9_\-]{16,}"),
        ("openai_style_key", _START + r"sk-(?=[A-Za-z_\-]*\d)[A-Za-z0-9_\-]{16,}"),
        ("stripe_key", _START + r"(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{12,}"),
        ("huggingface_token", _START + r"hf_(?=[A-Za-z]*\d)[A-Za-z0-9]{20,}"),
        ("groq_key", _START + r"gsk_[A-Za-z0-9]{20,}"),
        ("sendgrid_key", _START + r"SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}"),
        ("slack_token", _START + r"xox[abposr]-[A-Za-z0-9\-]{10,}"),
        ("slack_webhook", r"hooks\.slack\.com/services/[A-Za-z0-9/_\-]{16,}"),
        ("aws_access_key", r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])"),
        ("github_token", _START + r"(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})"),
        ("gitlab_token", _START + r"glpat-[A-Za-z0-9_\-]{20,}"),
        ("google_api_key", _START + r"AIza[0-9A-Za-z_\-]{30,}"),
        ("xai_key", _START + r"xai-[A-Za-z0-9]{20,}"),
        ("jwt", _START + r"eyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*"),
        ("private_key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
        # The credential after an auth scheme word; a digit in it tells it from prose.
        (
            "bearer_token",
            r"(?i)\b(?:bearer|basic)\s+(?=[A-Za-z._~+/\-]*\d)[A-Za-z0-9._~+/\-]{8,}=*",
        ),
    )
)

# `name: value` / `name=value` pairs whose name says the value is a credential (error bodies
# that echo headers or request fields). Only the value is replaced.
_ASSIGNED = re.compile(
    r"(?i)(?P<name>\b(?:x-)?(?:api[-_ ]?key|apikey|authorization|proxy-authorization|password"
    r"|passwd|secret|client[-_]secret|(?:access|auth|api|bearer|refresh|session)[-_]token"
    r"|token|cookie|subscription-key)\b[\"']?\s*[:=]\s*[\"']?)(?P<value>(?:(?:bearer|basic|token)\s+)?[^\s\"',;}&]{6,})"
)
# Credentials inside URLs: user-info and token-like query parameters.
_URL_USERINFO = re.compile(r"(?i)\b(?P<scheme>[a-z][a-z0-9+.\-]*://)[^/\s@\"'<>]+@")
_URL_TOKEN = re.compile(
    r"(?i)(?P<name>[?&;](?:access_token|api[-_]?key|apikey|key|token|secret|password|sig"
    r"|signature|auth|code|x-amz-signature|x-goog-signature)=)[^&#\s\"'<>]+"
)
# A long unbroken run of key-alphabet characters; judged by entropy and character mix.
_LONG_TOKEN = re.compile(r"(?<![A-Za-z0-9+/_\-.=])[A-Za-z0-9+/_\-.=]{32,}(?![A-Za-z0-9+/_\-.=])")

# Names whose env var values are credentials: their values are scrubbed wherever they appear.
SECRET_ENV_NAME = re.compile(
    r"(?i)(?:^|_)(?:API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?|SALT)$"
)
# Config keys whose value is a credential whatever it looks like (at any nesting depth).
SECRET_FIELD_NAME = re.compile(
    r"(?i)^(?:[a-z0-9]+[-_])*(?:api[-_]?key|apikey|key|subscription[-_]key|private[-_]key"
    r"|secret[-_]key|access[-_]key|secret|client[-_]secret|password|passwd|pwd|authorization"
    r"|auth|cookie|credentials?|(?:access|auth|api|bearer|id|refresh|session|security)[-_]token"
    r"|token)$"
)

# Values shorter than this are never scrubbed by value: they would blank ordinary words.
MIN_KNOWN_LENGTH = 8
_remembered: set[str] = set()


def remember(value: str | None) -> None:
    """Scrub ``value`` from every text this process stores from now on (a key in use)."""
    if value and len(value) >= MIN_KNOWN_LENGTH:
        _remembered.add(value)


def known_secret_values(extra: Iterable[str] = ()) -> set[str]:
    """Values scrubbed by value: remembered keys, secret-named env vars, and ``extra``."""
    values = set(_remembered)
    values.update(v for k, v in os.environ.items() if v and SECRET_ENV_NAME.search(k))
    values.update(v for v in extra if v)
    return {v for v in values if len(v) >= MIN_KNOWN_LENGTH}


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


_SEPARATORS = re.compile(r"[-_.]")


def _random_looking(token: str, min_length: int) -> bool:
    """A long token with a long random run: letters and digits mixed, high per-character
    entropy (a key, a signature, a salt), not words, paths, model names or versions, whose
    pieces between ``-``, ``_`` and ``.`` are short."""
    core = token.strip("=.-_/")
    if len(core) < min_length or core.count("/") > 2:
        return False
    return any(
        _random_piece(piece, min(20, min_length))
        for piece in _SEPARATORS.split(core)
    )


def _random_piece(piece: str, min_length: int) -> bool:
    if len(piece) < min_length:
        return False
    has_upper = any(c.isupper() for c in piece)
    has_lower = any(c.islower() for c in piece)
    has_digit = any(c.isdigit() for c in piece)
    if not has_digit or not (has_upper or has_lower):
        return False
    classes = has_upper + has_lower + has_digit
    threshold = 3.0 if classes == 2 else 3.5  # hex tops out at 4 bits, base62 near 6
    return _entropy(piece) >= threshold


def secret_kind(value: str, *, min_token_length: int = 32) -> str | None:
    """The kind of credential ``value`` looks like (``openai_style_key``, ``jwt``,
    ``high_entropy_token``...), or None. Never returns the value itself."""
    for kind, pattern in _KEY_SHAPES:
        if pattern.search(value):
            return kind
    if _URL_USERINFO.search(value) and re.search(r"://[^/\s@]*:[^/\s@]+@", value):
        return "url_credentials"
    if _URL_TOKEN.search(value):
        return "url_token_parameter"
    for match in _LONG_TOKEN.finditer(value):
        if _random_looking(match.group(0), min_token_length):
            return "high_entropy_token"
    return None


def is_secret_field_name(name: str) -> bool:
    """Whether a config key's NAME says its value is a credential (``api_key``, ``Authorization``,
    ``x-goog-api-key``, ``refresh_token``...). ``max_tokens`` and ``stop_token_ids`` are not."""
    return bool(SECRET_FIELD_NAME.match(name.strip()))


def find_secrets(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """``(field path, reason)`` for every secret-looking key or value in nested config."""
    if isinstance(value, dict):
        for key, inner in value.items():
            name = str(key)
            where = f"{path}.{name}" if path else name
            if is_secret_field_name(name) and inner not in (None, "", [], {}):
                yield where, "is named like a credential"
            elif (kind := secret_kind(name)) is not None:
                yield f"{path or '(top)'} key", f"looks like a secret ({kind})"
            else:
                yield from find_secrets(inner, where)
    elif isinstance(value, list | tuple):
        for i, inner in enumerate(value):
            yield from find_secrets(inner, f"{path}[{i}]")
    elif isinstance(value, str) and (kind := secret_kind(value)) is not None:
        yield path or "(value)", f"looks like a secret ({kind})"


def scrub(text: str, known_values: Iterable[str] = ()) -> str:
    """``text`` with every credential replaced by ``[redacted]``: the known key values (see
    :func:`known_secret_values`), key shapes, credential assignments, URL user-info and token
    query parameters, and long random-looking tokens."""
    if not text:
        return text
    # Longest first, so a key that contains another known value is removed whole.
    for value in sorted(known_secret_values(known_values), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)
    text = _URL_TOKEN.sub(lambda m: f"{m.group('name')}{REDACTED}", text)
    for _, pattern in _KEY_SHAPES:
        text = pattern.sub(REDACTED, text)
    text = _ASSIGNED.sub(
        lambda m: m.group(0) if REDACTED in m.group("value") else m.group("name") + REDACTED,
        text,
    )
    # Request ids and hashes in error bodies are shorter or hex-only at 32; keys are longer.
    return _LONG_TOKEN.sub(
        lambda m: REDACTED if _random_looking(m.group(0), 40) else m.group(0), text
    )

"""Digests of surrogates: the one thing the residue scan is told about de-identification.

The de-identifier records every surrogate it inserts; the row stores short SHA-256 digests of
them (and of their digits when they have seven or more, so a phone surrogate is recognised
however a detector cuts its separators). The residue scan imports only this module, never the
de-identifier's detectors, so the two layers do not share blind spots. Surrogates are
synthetic, so their digests reveal nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

MIN_DIGITS = 7


def surrogate_digest(value: str) -> str:
    """The digest of one surrogate string (16 hex characters)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]


def digits_of(value: str) -> str:
    """The ASCII digits of ``value``, in order."""
    return "".join(c for c in value if "0" <= c <= "9")


def surrogate_digests(values: Iterable[str]) -> list[str]:
    """Sorted digests of ``values`` as inserted, plus of their digits when there are seven or
    more: what a row's ``surrogate_digests`` column holds.
    """
    out = set()
    for value in values:
        out.add(surrogate_digest(value))
        digits = digits_of(value)
        if len(digits) >= MIN_DIGITS:
            out.add(surrogate_digest(digits))
    return sorted(out)

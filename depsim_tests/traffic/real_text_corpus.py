"""PII-free conversations made of real text nobody on this project wrote.

The text comes from the files of depsim's runtime dependencies as installed in the project's
virtualenv (Python source, configs, docs, test data, record files full of hashes): chunks of
10-60 lines become user and assistant turns. It is deterministic (paths sorted, choices seeded)
and measures how often the de-identifier plus the residue scan quarantine ordinary technical
text.

Which packages: the installed distributions reachable from :data:`CORPUS_ROOTS` (depsim's
runtime dependencies, named here once) through their declared requirements, each read through
its installed file list (``RECORD``). Not "everything in site-packages": installing a dev tool
must not change the corpus. pyright alone ships 5,400 text files (a quarter of site-packages
then), among them typeshed's stub of braintree's test card numbers, 13 valid test cards that
the de-identifier rightly replaced; and a new package shifts every seeded choice after it. The
versions are the lockfile's (requirements.lock), so the corpus moves only when it does.

What is left out, and why (the counts are in :attr:`RealCorpus.excluded`):

- packages whose content is personal-data-shaped by design (``faker``, ``phonenumbers``,
  ``stdnum``, ``presidio*``, ``email_validator``): their example data is fake PII, not
  PII-free text;
- files that name people by design: ``AUTHORS``, ``CONTRIBUTORS``, ``MAINTAINERS``,
  ``METADATA``/``PKG-INFO`` (author and maintainer e-mails), ``LICENSE``/``COPYING``/
  ``NOTICE`` (copyright holders);
- chunks with real personal data in them: an e-mail address (``x@y.tld``), a ``Copyright``/
  ``(c)``/``©`` line, an ``Author:``/``Maintainer:``/``__author__``/``author_email`` line,
  ``Signed-off-by``/``Co-authored-by``/``Written by``/``Contributed by``/``Thanks to``, a
  GitHub ``@handle`` mention in prose, or an ``.. codeauthor::``/``.. moduleauthor::`` line.

Then the traps the issue names are added: bucket names (``wisk-couchbase-migrations-bucket``),
hashes, uuids, versions, documentation IPs, URLs with harmless queries, base64 in code, dates,
ports and long integers.
"""

from __future__ import annotations

import importlib.metadata as metadata
import random
import re
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
EXTENSIONS = (".py", ".pyi", ".toml", ".cfg", ".ini", ".yaml", ".yml", ".json", ".txt", ".rst",
              ".md")  # fmt: skip
PII_BY_DESIGN = ("faker", "phonenumbers", "stdnum", "presidio", "email_validator", "mimesis")
PEOPLE_FILES = re.compile(
    r"(?i)^(?:authors|contributors|maintainers|metadata|pkg-info|license|licence|copying|notice"
    r"|credits|thanks)(?:[._-].*)?$"
)
MAX_FILE_BYTES = 1_000_000

# depsim's runtime dependencies when the corpus was fixed (pyproject.toml, December 2026). A
# dependency added later joins only when named here, so the measured rates stay comparable.
CORPUS_ROOTS = (
    "dagster", "dagster-webserver", "dagster-duckdb", "duckdb", "pandas", "pydantic",
    "openai[aiohttp]", "scipy", "numpy", "PyYAML", "Faker", "fastjsonschema", "starlette",
    "uvicorn", "matplotlib", "tqdm", "pyarrow", "orjson", "scikit-learn", "presidio-analyzer",
    "phonenumbers", "python-stdnum", "zstandard",
)  # fmt: skip
# Packaging tools some dependencies list (spacy and thinc require setuptools): their version
# comes with the virtualenv, not with depsim, so they stay out.
NOT_CORPUS = frozenset({"setuptools", "pip", "wheel"})

# Each pattern marks a chunk that names a real person; the key is the reason counted.
PERSONAL = {
    "email_address": re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}"),
    "copyright_line": re.compile(r"(?i)copyright|\(c\)\s*\d|©"),
    "author_line": re.compile(
        r"(?i)\b(?:author|maintainer)s?\b\s*[:=]|__author__|author_email|maintainer_email"
        r"|codeauthor::|moduleauthor::|sectionauthor::"
    ),
    "credit_line": re.compile(
        r"(?i)signed-off-by|co-authored-by|written by|contributed by|thanks to|patch by"
        r"|reported by|originally by"
    ),
    "github_handle": re.compile(r"(?<![\w@.])@[A-Za-z][A-Za-z0-9-]{2,38}\b(?![.(])"),
}


@dataclass
class RealConversation:
    """One PII-free conversation and where each of its turns came from."""

    conversation_id: str
    messages: list[dict[str, Any]]
    origin: list[str]


@dataclass
class RealCorpus:
    """The conversations and what was left out building them."""

    conversations: list[RealConversation]
    files_seen: int
    excluded: dict[str, int] = field(default_factory=dict)


def corpus_distributions(roots: tuple[str, ...] = CORPUS_ROOTS) -> list[metadata.Distribution]:
    """The installed distributions reachable from ``roots`` by their (non-optional, or
    requested-extra) requirements for this interpreter, sorted by name."""
    found: dict[str, tuple[metadata.Distribution, frozenset[str]]] = {}
    todo = [Requirement(spec) for spec in roots]
    while todo:
        req = todo.pop()
        key = canonicalize_name(req.name)
        if key in NOT_CORPUS:
            continue
        extras = frozenset(req.extras)
        if key in found and extras <= found[key][1]:
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            if req.name in roots or str(req) in roots:
                raise RuntimeError(f"corpus package {req.name!r} is not installed") from None
            continue  # an optional dependency of a dependency, not installed here
        extras |= found[key][1] if key in found else frozenset()
        found[key] = (dist, extras)
        for spec in dist.requires or ():
            dep = Requirement(spec)
            envs = [{"extra": e} for e in sorted(extras)] or [{"extra": ""}]
            if dep.marker is None or any(dep.marker.evaluate(env) for env in envs):
                todo.append(dep)
    return [found[key][0] for key in sorted(found)]


def candidate_files(root: Path = SITE_PACKAGES) -> tuple[list[Path], dict[str, int]]:
    """Text files of the corpus distributions under ``root`` usable as PII-free text, sorted;
    and exclusion counts."""
    excluded = {"pii_by_design_package": 0, "people_file": 0}
    files: set[Path] = set()
    root = root.resolve()
    for dist in corpus_distributions():
        for entry in dist.files or ():
            path = Path(str(dist.locate_file(entry))).resolve()
            if not path.is_relative_to(root):
                continue  # console scripts under bin/, data files outside site-packages
            rel = path.relative_to(root)
            if any(rel.parts[0].lower().startswith(p) for p in PII_BY_DESIGN):
                excluded["pii_by_design_package"] += 1
                continue
            if PEOPLE_FILES.match(path.name):
                excluded["people_file"] += 1
                continue
            if path.name.endswith(EXTENSIONS) or path.name == "RECORD":
                files.add(path)
    return sorted(files), excluded


def _read_lines(path: Path) -> list[str] | None:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    lines = text.splitlines()
    return lines if len(lines) >= 10 else None


def personal_reason(chunk: str) -> str | None:
    """The first reason a chunk names a real person, or None."""
    for reason, pattern in PERSONAL.items():
        if pattern.search(chunk):
            return reason
    return None


def real_corpus(n: int = 2000, seed: int = 20261201, root: Path = SITE_PACKAGES) -> RealCorpus:
    """``n`` conversations of 2-4 turns, each turn a 10-60 line chunk of a real file."""
    root = root.resolve()
    files, excluded = candidate_files(root)
    rng = random.Random(seed)
    excluded.update({reason: 0 for reason in PERSONAL})
    excluded["unreadable_or_short_file"] = 0
    cache: dict[Path, list[str] | None] = {}
    conversations: list[RealConversation] = []
    attempts = 0
    while len(conversations) < n and attempts < 50 * n:
        turns = rng.randint(2, 4)
        messages: list[dict[str, Any]] = []
        origin: list[str] = []
        while len(messages) < turns and attempts < 50 * n:
            attempts += 1
            path = files[rng.randrange(len(files))]
            if path not in cache:
                cache[path] = _read_lines(path)
            lines = cache[path]
            if lines is None:
                excluded["unreadable_or_short_file"] += 1
                continue
            size = rng.randint(10, 60)
            start = rng.randrange(max(1, len(lines) - size + 1))
            chunk = "\n".join(lines[start : start + size])
            reason = personal_reason(chunk)
            if reason is not None:
                excluded[reason] += 1
                continue
            role = "user" if len(messages) % 2 == 0 else "assistant"
            if role == "user":
                chunk = rng.choice(USER_FRAMES).format(chunk=chunk)
            messages.append({"role": role, "content": chunk})
            origin.append(f"{path.relative_to(root)}:{start + 1}-{start + size}")
        if len(messages) == turns:
            if messages[-1]["role"] != "assistant":
                messages.append({"role": "assistant", "content": "Here is what that does."})
            conversations.append(
                RealConversation(f"real-{len(conversations):05d}", messages, origin)
            )
    return RealCorpus(conversations, len(files), excluded)


USER_FRAMES = (
    "{chunk}",
    "What does this do?\n\n{chunk}",
    "Can you explain this file?\n```\n{chunk}\n```",
    "I get this, is it expected?\n{chunk}",
    "Please review:\n\n{chunk}\n\nThanks!",
)

# Real-style values a naive detector mistakes for personal data; none of them is.
TRAPS = (
    "The backup goes to wisk-couchbase-migrations-bucket every night.",
    "aws s3 cp dump.sql s3://wisk-couchbase-migrations-bucket/2024-03-01/dump.sql",
    "gsutil ls gs://risk-analytics-prod-exports/askew-metrics/",
    "Bucket name: desk-sketch-assets-eu-west-1, region eu-west-1",
    "commit 3f786850e387550fdab836ed7e6dc881de23001b (HEAD -> main)",
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "md5 d41d8cd98f00b204e9800998ecf8427e  empty.txt",
    "request_id=4f9c2d1e-8b7a-4c3d-9e2f-1a0b9c8d7e6f status=200",
    "uuid.UUID('123e4567-e89b-12d3-a456-426614174000')",
    "Requires numpy>=1.26.4, pandas==2.2.3 and python 3.11.9; tested on 3.12.0rc1",
    "Release v4.1.0-beta.2+build.20240301 is out; semver 2.0.0 applies.",
    "Point the client at 192.0.2.15, 198.51.100.7 and 203.0.113.200 (documentation ranges).",
    "The service listens on 10.0.0.12:8443 and 127.0.0.1:5432, 172.16.5.4 is the gateway.",
    "Set the resolver to 8.8.8.8 or 1.1.1.1 and the IPv6 one to 2001:db8::1.",
    "See https://docs.python.org/3/library/re.html?highlight=finditer#re.finditer for details.",
    "GET /api/v2/items?page=3&per_page=50&sort=created_at&order=desc HTTP/1.1",
    "https://www.google.com/search?q=duckdb+insert+by+name&hl=en&start=10",
    'ICON = "iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAYAAAAf8/9hAAAABHNCSVQICAgIfAhkiAAAAAlwSFlz"',
    "payload = base64.b64decode('eyJrZXkiOiAidmFsdWUiLCAibGlzdCI6IFsxLCAyLCAzXX0=')",
    "Logged at 2024-03-01T12:34:56.789Z, again 01/03/2024 and 2024-03-01 12:34:56,789",
    "Expose ports 8080, 8443, 5432, 6379 and 27017 on the container.",
    "MAX_ID = 9223372036854775807  # int64 max; seed = 1234567890123; ts = 1709294096000",
    "The build number is 20240301123456 and the job id 4711081512.",
    "Copy the checksum 7d865e959b2466918c9863afca942d0fb89d7c9ac0c99bafc3749504ded97730.",
    "docker pull ghcr.io/org/app@sha256:"
    "4b6c7a1c2e0f9d8e7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f",
    "The risk-management task-runner skipped disk-cleanup because of low disk space.",
    "Use --max-tokens 4096 --top-p 0.95 --seed 20261126 for reproducible runs.",
    'Stack trace: File "/usr/lib/python3.11/asyncio/base_events.py", line 653, in run',
    "kubectl get pods -n askari-system -o wide | grep whisk-broker-7d9f8c6b5-x2k9p",
    "Table 4: 1,234,567 rows, 89.5% hit rate, p95 latency 312 ms, 0.0034 error share.",
)


def trap_conversations() -> list[RealConversation]:
    """One short conversation per trap value."""
    return [
        RealConversation(
            f"trap-{i:03d}",
            [
                {"role": "user", "content": f"Is this line a problem?\n{text}"},
                {"role": "assistant", "content": f"No. Quoting it back: {text}"},
            ],
            ["trap"],
        )
        for i, text in enumerate(TRAPS)
    ]


if __name__ == "__main__":  # pragma: no cover - a quick look at the corpus
    corpus = real_corpus(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
    print(len(corpus.conversations), corpus.files_seen, corpus.excluded)

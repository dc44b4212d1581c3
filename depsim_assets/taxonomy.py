"""The behaviour taxonomy and the judge prompt, loaded from ``taxonomy/`` and validated.

The taxonomy is the contract between the judge and every rate depsim reports, so loading is
strict: a missing file, an unknown field or a regex that does not compile stops the run with
a message naming the file, the category and the field, rather than silently grading
against a different taxonomy. Both the categories and the prompt carry a content hash that
is stored on every grade.
"""

from __future__ import annotations

import hashlib
import os
import re
import string
import threading
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from depsim_assets import config, safe_yaml

FAMILIES: tuple[str, ...] = ("disallowed_content", "misalignment")

_CANONICAL: tuple[tuple[str, str], ...] = (
    ("mental_health", "disallowed_content"),
    ("abuse_harassment", "disallowed_content"),
    ("sexual_content", "disallowed_content"),
    ("violent_wrongdoing", "disallowed_content"),
    ("nonviolent_wrongdoing", "disallowed_content"),
    ("bio_risk", "disallowed_content"),
    ("violence", "disallowed_content"),
    ("extremism", "disallowed_content"),
    ("emotional_reliance", "disallowed_content"),
    ("self_harm", "disallowed_content"),
    ("hate", "disallowed_content"),
    ("confirmation_hacking", "misalignment"),
    ("claiming_real_world_experiences", "misalignment"),
    ("misrepresenting_work_completion", "misalignment"),
    ("promising_background_tasks", "misalignment"),
    ("fabricated_facts", "misalignment"),
    ("lying_about_tools", "misalignment"),
    ("calculator_hacking", "misalignment"),
    ("concealed_uncertainty", "misalignment"),
    ("unapproved_destructive_actions", "misalignment"),
)

CATEGORY_IDS: tuple[str, ...] = tuple(cid for cid, _ in _CANONICAL)
CATEGORY_FAMILY: dict[str, str] = dict(_CANONICAL)
SEVERITY_LEVELS: tuple[int, ...] = (0, 1, 2, 3, 4)

JUDGE_PROMPT_FILE = "judge_prompt.md"
# Optional: a family monitor's own prompt, e.g. judge_prompt.misalignment.md.
FAMILY_PROMPT_FILE = "judge_prompt.{family}.md"
CATEGORIES_DIR = "categories"
_REQUIRED_PLACEHOLDERS = ("categories", "fence_token", "flag_threshold")
# Where the answer format goes (the JSON schema, for servers without structured output);
# a template without it gets the format just before its fence line.
_OPTIONAL_PLACEHOLDERS = ("output_format",)
# How much of each category the prompt carries: ``compact`` (definition only; the all-in-one
# and per-family calls, which must fit small models), ``medium`` (+ what is in and out), or
# ``full`` (+ severity guide and examples; one behaviour per call).
DETAIL_LEVELS = ("compact", "medium", "full")
# How templates become prompts (category text per layout, where the fence line and the answer
# format go, the verdict's shape): code, not files, so it is named here and hashed into the
# prompt version. Change it whenever that code changes what a judge reads.
PROMPT_RENDERING = "2: compact text for all/family, full per behaviour; compact verdict"
_FENCE_LINE = "Fence token: $fence_token"

Severity = Annotated[int, Field(ge=0, le=4)]
NonEmptyStr = Annotated[str, Field(min_length=1)]


class TaxonomyError(ValueError):
    """The taxonomy folder is incomplete or malformed; the message names file, category, field."""


class Example(BaseModel):
    """A short illustrative reply fragment and the severity it should receive."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    text: NonEmptyStr
    severity: Severity


class Category(BaseModel):
    """One behaviour of the taxonomy, as written in ``categories/<id>.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    id: str
    family: str
    title: NonEmptyStr
    definition: NonEmptyStr
    includes: Annotated[list[NonEmptyStr], Field(min_length=1)]
    excludes: Annotated[list[NonEmptyStr], Field(min_length=1)]
    severity_guide: dict[int, NonEmptyStr]
    examples: Annotated[list[Example], Field(min_length=2)]
    indicators: Annotated[list[NonEmptyStr], Field(min_length=1)]

    @field_validator("id")
    @classmethod
    def _known_id(cls, value: str) -> str:
        if value not in CATEGORY_FAMILY:
            raise ValueError(f"unknown category id {value!r}; expected one of CATEGORY_IDS")
        return value

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        if value not in FAMILIES:
            raise ValueError(f"unknown family {value!r}; expected one of {list(FAMILIES)}")
        return value

    @field_validator("severity_guide")
    @classmethod
    def _all_levels(cls, value: dict[int, str]) -> dict[int, str]:
        missing = [level for level in SEVERITY_LEVELS if level not in value]
        extra = sorted(level for level in value if level not in SEVERITY_LEVELS)
        if missing:
            raise ValueError(f"missing levels {missing}")
        if extra:
            raise ValueError(f"unknown levels {extra}; levels are 0-4")
        return dict(sorted(value.items()))

    @field_validator("indicators")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for index, pattern in enumerate(value):
            try:
                re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"pattern {index} {pattern!r} does not compile: {exc}") from None
        return value

    def compiled_indicators(self) -> tuple[re.Pattern[str], ...]:
        """The indicators compiled case-insensitively (for the simulator's lexical judge)."""
        return _compile_all(tuple(self.indicators))

    def render(self, detail: str = "full") -> str:
        """This category as a block of the judge prompt (indicators deliberately left out);
        ``detail`` is one of :data:`DETAIL_LEVELS`."""
        head = [f"### {self.id}: {self.title} ({self.family})", f"Definition: {self.definition}"]
        if detail == "compact":
            return "\n".join(head)
        lines = [
            *head,
            "Includes:",
            *(f"- {item}" for item in self.includes),
            "Excludes:",
            *(f"- {item}" for item in self.excludes),
        ]
        if detail == "medium":
            return "\n".join(lines)
        lines += [
            "Severity guide:",
            *(f"- {level}: {text}" for level, text in self.severity_guide.items()),
            "Examples:",
            *(f'- "{example.text}" -> severity {example.severity}' for example in self.examples),
        ]
        return "\n".join(lines)


_PATTERN_CACHE: dict[tuple[str, ...], tuple[re.Pattern[str], ...]] = {}


def _compile_all(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    compiled = _PATTERN_CACHE.get(patterns)
    if compiled is None:
        compiled = tuple(re.compile(p, re.IGNORECASE) for p in patterns)
        _PATTERN_CACHE[patterns] = compiled
    return compiled


class Taxonomy(BaseModel):
    """All 20 categories in canonical order, the judge prompt template, and their versions."""

    model_config = ConfigDict(frozen=True)

    categories: list[Category]
    version: str
    judge_prompt_template: str
    judge_prompt_version: str
    family_prompt_templates: dict[str, str] = {}

    @property
    def ids(self) -> tuple[str, ...]:
        """Category ids in canonical order."""
        return tuple(category.id for category in self.categories)

    def by_id(self, category_id: str) -> Category:
        """The category with this id; ``KeyError`` if there is none."""
        for category in self.categories:
            if category.id == category_id:
                return category
        raise KeyError(category_id)

    def render_categories(
        self, only: tuple[str, ...] | None = None, detail: str | None = None
    ) -> str:
        """The text substituted for ``$categories`` (``only``: a monitor's subset of ids).

        ``detail`` defaults by size: ``full`` for one category, else ``compact``: each
        layout's calls must be smaller than the one before it (all 8.2k characters, a family
        at most 5.6k, one behaviour at most 4.4k), or splitting would not make a prompt fit."""
        if detail is None:
            n = len(self.categories) if only is None else len(only)
            detail = "full" if n == 1 else "compact"
        if detail not in DETAIL_LEVELS:
            raise ValueError(f"detail {detail!r}: expected one of {list(DETAIL_LEVELS)}")
        return "\n\n".join(
            category.render(detail)
            for category in self.categories
            if only is None or category.id in only
        )

    def render_system_prompt(
        self,
        fence_token: str,
        flag_threshold: int,
        only: tuple[str, ...] | None = None,
        *,
        output_format: str = "",
        detail: str | None = None,
    ) -> str:
        """The judge's system prompt for one request, with its fence token and threshold.

        Everything but the fence token is the same for every call of a run with the same
        categories, and the default template puts the fence line last, so a server's prompt
        cache can reuse the whole block before it. ``output_format`` (the answer's JSON schema
        when the server cannot enforce it) goes where ``$output_format`` is, else just before
        the fence line.
        """
        if not fence_token or any(ch.isspace() or ch in "<>" for ch in fence_token):
            # The token delimits fences line by line, so it must be one bare word.
            raise ValueError(f"fence token must be a non-empty word, got {fence_token!r}")
        template = self.judge_prompt_template
        families = {self.by_id(cid).family for cid in only} if only else set()
        if len(families) == 1:
            # A family monitor uses its family's own prompt when the taxonomy has one.
            template = self.family_prompt_templates.get(families.pop(), template)
        fence_line = _FENCE_LINE.replace("$fence_token", fence_token)
        block = f"\n{output_format.strip()}\n" if output_format.strip() else ""
        if "$output_format" not in template and block:
            template = template.replace(_FENCE_LINE, "$output_format" + _FENCE_LINE, 1)
        text = string.Template(template).substitute(
            categories=self.render_categories(only, detail),
            fence_token=fence_token,
            flag_threshold=str(flag_threshold),
            output_format=block,
        )
        assert fence_line in text
        return text


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _error(path: Path, category_id: str, field: str, message: str) -> TaxonomyError:
    return TaxonomyError(f"{_display(path)}: category {category_id!r}: field {field!r}: {message}")


def _describe_validation_error(path: Path, category_id: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = err["loc"]
        field = str(loc[0]) if loc else "<document>"
        where = "".join(f"[{part}]" for part in loc[1:])
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"field {field!r}{where}: {message}")
    return f"{_display(path)}: category {category_id!r}: " + "; ".join(parts)


def _load_category(path: Path, category_id: str) -> tuple[Category, bytes]:
    if not path.is_file():
        raise _error(path, category_id, "<file>", "category file is missing")
    raw = path.read_bytes()
    try:
        # The taxonomy folder can be the user's (DEPSIM_TAXONOMY_DIR): no aliases, no
        # duplicate keys, bounded size, as for every YAML depsim reads.
        data = safe_yaml.loads(raw.decode("utf-8-sig"), where="")
    except UnicodeDecodeError as exc:
        raise _error(path, category_id, "<yaml>", f"not UTF-8 (byte {exc.start})") from None
    except safe_yaml.YamlError as exc:
        why = re.sub(r"not valid YAML \((.*)\)$", r"\1", str(exc).removeprefix(": "))
        raise _error(path, category_id, "<yaml>", f"not valid YAML: {why}") from None
    if not isinstance(data, dict):
        raise _error(path, category_id, "<document>", "expected a mapping of fields")
    try:
        category = Category.model_validate(data)
    except ValidationError as exc:
        raise TaxonomyError(_describe_validation_error(path, category_id, exc)) from None
    if category.id != category_id:
        raise _error(path, category_id, "id", f"id {category.id!r} does not match the file name")
    expected_family = CATEGORY_FAMILY[category_id]
    if category.family != expected_family:
        raise _error(
            path,
            category_id,
            "family",
            f"family {category.family!r} is wrong; {category_id!r} is {expected_family!r}",
        )
    return category, raw


def _load_prompt(path: Path) -> str:
    if not path.is_file():
        raise TaxonomyError(f"{_display(path)}: judge prompt file is missing")
    text = path.read_text(encoding="utf-8")
    template = string.Template(text)
    if not template.is_valid():
        raise TaxonomyError(
            f"{_display(path)}: invalid placeholder (write a literal dollar sign as $$)"
        )
    found = set(template.get_identifiers())
    missing = [name for name in _REQUIRED_PLACEHOLDERS if name not in found]
    unknown = sorted(found - set(_REQUIRED_PLACEHOLDERS) - set(_OPTIONAL_PLACEHOLDERS))
    if missing:
        raise TaxonomyError(f"{_display(path)}: missing placeholders {missing}")
    if unknown:
        raise TaxonomyError(f"{_display(path)}: unknown placeholders {unknown}")
    if _FENCE_LINE not in text.splitlines():
        raise TaxonomyError(f"{_display(path)}: needs the line {_FENCE_LINE!r} on its own")
    return text


def _short_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _build(root: Path) -> Taxonomy:
    categories_dir = root / CATEGORIES_DIR
    if not categories_dir.is_dir():
        raise TaxonomyError(f"{_display(categories_dir)}: taxonomy categories folder is missing")
    for extra in sorted(categories_dir.glob("*.yaml")):
        if extra.stem not in CATEGORY_FAMILY:
            # A stray file would otherwise be ignored while its author expects it graded.
            raise _error(extra, extra.stem, "id", "not one of the canonical category ids")
    categories = []
    digest = hashlib.sha256()
    for category_id in CATEGORY_IDS:
        category, raw = _load_category(categories_dir / f"{category_id}.yaml", category_id)
        categories.append(category)
        # Length-prefixing keeps the hash unambiguous if bytes move between files.
        digest.update(f"{category_id}:{len(raw)}\n".encode())
        digest.update(raw)
    template = _load_prompt(root / JUDGE_PROMPT_FILE)
    family_templates = {
        family: _load_prompt(root / FAMILY_PROMPT_FILE.format(family=family))
        for family in FAMILIES
        if (root / FAMILY_PROMPT_FILE.format(family=family)).exists()
    }
    prompt_bytes = template.encode("utf-8") + f"\n--- rendering {PROMPT_RENDERING} ---\n".encode()
    for family, text in sorted(family_templates.items()):
        # Without family prompts the version is the main prompt's hash alone, as before.
        prompt_bytes += f"\n--- {family} ---\n".encode() + text.encode("utf-8")
    return Taxonomy(
        categories=categories,
        version=digest.hexdigest()[:12],
        judge_prompt_template=template,
        judge_prompt_version=_short_hash(prompt_bytes),
        family_prompt_templates=family_templates,
    )


_cache: dict[Path, tuple[tuple[Any, ...], Taxonomy]] = {}
_cache_lock = threading.Lock()


def _fingerprint(root: Path) -> tuple[Any, ...]:
    paths = [root / JUDGE_PROMPT_FILE, root / CATEGORIES_DIR]
    paths += [root / FAMILY_PROMPT_FILE.format(family=family) for family in FAMILIES]
    categories_dir = root / CATEGORIES_DIR
    if categories_dir.is_dir():
        paths.extend(sorted(categories_dir.iterdir()))
    stamps = []
    for path in paths:
        try:
            stat = os.stat(path)
            stamps.append((path.name, stat.st_mtime_ns, stat.st_size))
        except FileNotFoundError:
            stamps.append((path.name, None, None))
    return tuple(stamps)


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """Load and validate the taxonomy folder (default: ``config.taxonomy_dir()``).

    Results are cached per folder until any file in it changes.
    """
    root = Path(path) if path is not None else config.taxonomy_dir()
    root = root.expanduser().resolve()
    fingerprint = _fingerprint(root)
    with _cache_lock:
        cached = _cache.get(root)
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    taxonomy = _build(root)
    with _cache_lock:
        _cache[root] = (fingerprint, taxonomy)
    return taxonomy

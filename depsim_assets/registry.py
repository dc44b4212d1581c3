"""The candidate registry: ``candidates.yaml`` in the depsim home folder.

One entry per candidate model: where it is served, which env var holds its API key, how to
sample it, and the days it served production (``deployed_on``). One entry is the baseline:
the production model simulated on the same prefixes as every candidate. ``production`` is
reserved for the original replies and is never an entry.

An entry never holds a key itself, only the NAME of the env var that does.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from depsim_assets import safe_yaml
from depsim_assets.config import PRODUCTION_CANDIDATE, registry_path
from depsim_assets.secrets import find_secrets, is_secret_field_name, secret_kind

NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
ENV_NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Prefixes of provider keys that also fit the env-name alphabet (sk_live_..., hf_..., gsk_...).
_KEY_PREFIXES = re.compile(r"^(?:sk[-_]|pk[-_]|rk[-_]|xai-|gsk_|hf_|AIza|ghp_|github_pat_|eyJ)")

HOW_TO_PASS_A_KEY = (
    "put the key in an environment variable and name that variable in the entry, "
    "e.g. `api_key_env: OPENAI_API_KEY` (then `export OPENAI_API_KEY=...`)"
)
SECRET_REFUSAL = "looks like a secret; put it in an env var and name the var in api_key_env"


class RegistryError(ValueError):
    """The registry file is missing, malformed, or names an unknown candidate."""


class Candidate(BaseModel):
    """One registered candidate model and how to reach it."""

    model_config = ConfigDict(extra="forbid")

    name: str
    base_url: str = Field(description="Endpoint base URL, or 'sim' for the built-in simulator.")
    model: str
    api_key_env: str | None = Field(default=None, description="NAME of the env var with the key.")
    params: dict[str, Any] = Field(default_factory=dict, description="Generation parameters.")
    samples: int = Field(default=1, ge=1, le=64, description="Samples per prefix.")
    max_concurrency: int = Field(
        default=16, ge=1, le=4096, description="Cap on requests in flight (adaptive below it)."
    )
    rpm: float | None = Field(default=None, gt=0, description="Requests per minute allowed.")
    tpm: float | None = Field(default=None, gt=0, description="Tokens per minute allowed.")
    timeout_s: float = Field(default=120.0, gt=0, description="Per-request timeout.")
    max_retries: int = Field(
        default=4, ge=0, le=20, description="Retries of 429/5xx/timeouts (jittered backoff)."
    )
    deployed_on: list[str] = Field(default_factory=list)
    price_in_per_mtok: float = Field(default=0.0, ge=0, description="USD per 1M input tokens.")
    price_out_per_mtok: float = Field(default=0.0, ge=0, description="USD per 1M output tokens.")
    mode: Literal["online", "batch"] = Field(
        default="online", description="online: one request each; batch: the OpenAI Batch API."
    )
    batch_poll_s: float = Field(
        default=30.0, gt=0, le=3600, description="Batch mode: seconds between status polls."
    )
    batch_max_wait_s: float | None = Field(
        default=None,
        gt=0,
        description="Batch mode: stop waiting after this long (the batch runs on; a rerun "
        "collects it). None: wait until it finishes.",
    )
    retired: bool = Field(
        default=False,
        description="Retired: no new runs and no partitions; its rows stay in the warehouse.",
    )
    context_window: int | None = Field(
        default=None,
        ge=256,
        description="The model's context length in tokens; a longer prompt ends as a per-row "
        "error without a request. None: unknown (the server's refusal is the limit).",
    )
    max_tokens: int | None = Field(
        default=None, ge=1, description="Cap on tokens generated per reply (max_tokens)."
    )
    max_tool_calls: int = Field(
        default=8,
        ge=0,
        description="Agentic prefixes: tool calls a turn may make; a step whose calls would "
        "pass it ends the turn with status step_limit (0: any tool call does).",
    )
    max_turn_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Agentic prefixes: completion tokens a turn may spend over its steps; a "
        "tool call after passing it ends the turn with status step_limit. None: no limit.",
    )

    def cost_usd(self, prompt_tokens: int, completion_tokens: int) -> float:
        """What ``prompt_tokens`` in and ``completion_tokens`` out cost at this entry's prices."""
        return (
            prompt_tokens * self.price_in_per_mtok + completion_tokens * self.price_out_per_mtok
        ) / 1e6

    @field_validator("name", "model")
    @classmethod
    def _check_not_a_key(cls, value: str, info: Any) -> str:
        # A key pasted here would be stored on every row and printed by every command.
        if secret_kind(value, min_token_length=24) is not None:
            raise ValueError(f"{info.field_name} {SECRET_REFUSAL}")
        return value

    @field_validator("params")
    @classmethod
    def _check_params(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Params are sent with every request (extra_headers too) and stored in params_json,
        # so a credential in them, at any depth, would end in the warehouse.
        for where, reason in find_secrets(value, "params"):
            raise ValueError(
                f"{where} {reason}: refused; a key must not sit in params. Put it in an env var "
                "and name the var in api_key_env"
            )
        return value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError(
                f"{value!r} is not a valid candidate name (letters, digits, '.', '_', '-'; 1-64)"
            )
        if value == PRODUCTION_CANDIDATE:
            raise ValueError(f"{PRODUCTION_CANDIDATE!r} is reserved for the original replies")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _check_env_name(cls, value: str | None) -> str | None:
        if value is None:
            return value
        looks_like_key = (
            _KEY_PREFIXES.match(value) is not None
            or secret_kind(value, min_token_length=24) is not None
        )
        if looks_like_key or not ENV_NAME_PATTERN.match(value):
            # Never echo the value: it is most likely the key itself.
            raise ValueError(
                "api_key_env must be the NAME of an environment variable (letters, digits, '_'"
                ", not starting with a digit), not a key; " + HOW_TO_PASS_A_KEY
            )
        return value


class Registry(BaseModel):
    """The whole registry: candidates and the baseline's name."""

    model_config = ConfigDict(extra="forbid")

    baseline: str | None = None
    candidates: list[Candidate] = Field(default_factory=list)

    def names(self) -> list[str]:
        """Active (not retired) candidate names, in file order: the ones that get runs."""
        return [c.name for c in self.candidates if not c.retired]

    def retired_names(self) -> list[str]:
        """Retired candidate names: kept for their data and provenance, never run."""
        return [c.name for c in self.candidates if c.retired]

    def get(self, name: str) -> Candidate:
        """The entry called ``name``; :class:`RegistryError` if there is none."""
        for cand in self.candidates:
            if cand.name == name:
                return cand
        raise RegistryError(
            f"unknown candidate {name!r}: registered are {self.names() or 'none'} "
            "(add one with `depsim candidates add`)"
        )

    def baseline_name(self) -> str:
        """The baseline candidate; the registry must name one that is registered."""
        if not self.baseline:
            raise RegistryError("the registry names no baseline (set `baseline:` to a candidate)")
        return self.get(self.baseline).name


def _refuse_inline_keys(raw: Any, where: str) -> None:
    entries = raw.get("candidates") if isinstance(raw, dict) else None
    for i, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict):
            continue
        held = [str(k) for k in entry if is_secret_field_name(str(k)) and k != "api_key_env"]
        if held:
            name = entry.get("name")
            label = name if isinstance(name, str) and secret_kind(name) is None else f"#{i + 1}"
            raise RegistryError(
                f"{where}: candidate {label!r} field {held[0]!r} holds a credential in the "
                "file; refused. " + HOW_TO_PASS_A_KEY
            )


def parse_registry(text: str, where: str = "candidates.yaml") -> Registry:
    """Parse registry YAML; every problem is one :class:`RegistryError` line naming ``where``."""
    try:
        # Anchors, aliases and duplicate keys refused: an alias bomb hung the code location.
        raw = safe_yaml.loads(text, where=where) or {}
    except safe_yaml.YamlError as exc:
        raise RegistryError(str(exc)) from None
    if not isinstance(raw, dict):
        raise RegistryError(f"{where}: expected a mapping with `baseline` and `candidates`")
    _refuse_inline_keys(raw, where)
    try:
        registry = Registry.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = list(err["loc"])
        label = ".".join(str(p) for p in loc)
        if loc[:1] == ["candidates"] and len(loc) > 1 and isinstance(loc[1], int):
            entries = raw.get("candidates") or []
            entry = entries[loc[1]] if loc[1] < len(entries) else {}
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or secret_kind(name) is not None:
                name = None  # a name that is itself a pasted key is never echoed
            field = ".".join(str(p) for p in loc[2:]) or "entry"
            label = f"candidate {name or '#' + str(loc[1] + 1)!r} field {field!r}"
        raise RegistryError(f"{where}: {label}: {err['msg']}") from None
    seen: set[str] = set()
    for cand in registry.candidates:
        if cand.name in seen:
            raise RegistryError(f"{where}: candidate {cand.name!r} is registered twice")
        seen.add(cand.name)
    if registry.baseline is not None and registry.baseline not in seen:
        raise RegistryError(
            f"{where}: baseline {registry.baseline!r} is not a registered candidate"
        )
    if registry.baseline is not None and registry.baseline in registry.retired_names():
        raise RegistryError(f"{where}: baseline {registry.baseline!r} is retired")
    return registry


def make_candidate(**fields: Any) -> Candidate:
    """Build one entry from keyword fields; a bad field is one :class:`RegistryError` line."""
    try:
        return Candidate(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "entry"
        name = fields.get("name")
        if not isinstance(name, str) or secret_kind(name) is not None:
            name = None  # a key pasted as the name is never echoed
        raise RegistryError(f"candidate {name!r} field {field!r}: {err['msg']}") from None


def load_registry(path: Path | None = None) -> Registry:
    """Read and validate the registry file (``<home>/candidates.yaml`` by default)."""
    path = path or registry_path()
    if not path.exists():
        raise RegistryError(
            f"{path}: no candidate registry (run `depsim demo` or `depsim candidates add`)"
        )
    return parse_registry(path.read_text(encoding="utf-8"), where=str(path))


def save_registry(registry: Registry, path: Path | None = None) -> Path:
    """Write the registry atomically (temp file, then rename)."""
    path = path or registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    body = registry.model_dump(mode="json", exclude_defaults=False)
    text = "# depsim candidate registry: see README 'Candidates'.\n" + yaml.safe_dump(
        body, sort_keys=False
    )
    parse_registry(text, where=str(path))  # never write what could not be read back
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def upsert_candidate(
    candidate: Candidate, *, baseline: bool = False, path: Path | None = None
) -> Registry:
    """Add or replace one entry (creating the file if needed) and save."""
    path = path or registry_path()
    registry = load_registry(path) if path.exists() else Registry()
    others = [c for c in registry.candidates if c.name != candidate.name]
    registry = Registry(
        baseline=candidate.name if baseline else registry.baseline,
        candidates=[*others, candidate]
        if len(others) == len(registry.candidates)
        else [candidate if c.name == candidate.name else c for c in registry.candidates],
    )
    save_registry(registry, path)
    return registry


def retire_candidate(name: str, *, undo: bool = False, path: Path | None = None) -> bool:
    """Mark ``name`` retired (or active again with ``undo``) and save; False if already so.

    The entry stays in the file: the rows it produced stay in the warehouse, and its
    endpoint, params and ``deployed_on`` days are their provenance (forecast validation of a
    shipped model reads them). The candidate registry sensor removes its partitions.
    """
    path = path or registry_path()
    registry = load_registry(path)
    entry = next((c for c in registry.candidates if c.name == name), None)
    if entry is None:
        known = [c.name for c in registry.candidates]
        raise RegistryError(f"unknown candidate {name!r}: registered are {known or 'none'}")
    if not undo and registry.baseline == name:
        raise RegistryError(
            f"{name!r} is the baseline; make another candidate the baseline first "
            "(`depsim candidates add OTHER ... --baseline`)"
        )
    if entry.retired != undo:
        return False
    updated = entry.model_copy(update={"retired": not undo})
    registry = Registry(
        baseline=registry.baseline,
        candidates=[updated if c.name == name else c for c in registry.candidates],
    )
    save_registry(registry, path)
    return True


def generation_fingerprint(candidates: list[Candidate]) -> str:
    """A short hash of what shapes generated replies: model, endpoint, params, samples, and
    the agentic turn's limits (max_tool_calls, max_turn_tokens).

    Used as part of ``candidate_completions``' code version, so a changed registry shows as
    stale partitions in the UI. Retirement, prices and concurrency do not change a reply.
    """
    settings = [
        [c.name, c.base_url, c.model, c.params, c.samples, *_turn_limits(c)]
        for c in sorted(candidates, key=lambda c: c.name)
    ]
    raw = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:12]


def _turn_limits(candidate: Candidate) -> list[Any]:
    # Hashed only when set away from the defaults, so an entry that never set them keeps the
    # fingerprint it had before the limits existed (its partitions do not all turn stale).
    limits = [candidate.max_tool_calls, candidate.max_turn_tokens]
    defaults = [Candidate.model_fields[f].default for f in ("max_tool_calls", "max_turn_tokens")]
    return [] if limits == defaults else [{"max_tool_calls": limits[0],
                                           "max_turn_tokens": limits[1]}]


def generation_code_version(path: Path | None = None) -> str:
    """``gen-<hash>`` of the registry's generation settings, read when definitions load.

    A missing or invalid registry gives ``gen-none`` / ``gen-invalid`` instead of failing:
    the code location must still load so the registry sensor can report what is wrong.
    """
    try:
        return f"gen-{generation_fingerprint(load_registry(path).candidates)}"
    except RegistryError as exc:
        return "gen-none" if "no candidate registry" in str(exc) else "gen-invalid"

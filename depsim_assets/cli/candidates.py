"""``depsim candidates add|list|retire``: the candidate registry and its partitions."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from depsim_assets import config
from depsim_assets.cli.instance import get_instance


def _parse_params(pairs: Sequence[str]) -> dict[str, Any]:
    from depsim_assets import safe_yaml

    params: dict[str, Any] = {}
    for i, pair in enumerate(pairs, 1):
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            # Not echoed: a pasted key without '=' would land in the terminal's scrollback.
            raise ValueError(f"--param #{i}: expected KEY=VALUE")
        params[key] = safe_yaml.loads(raw, where=f"--param {key}")
    return params


# Fields `candidates add` sets from named arguments or not at all (retire has its command).
_ADD_FIXED_FIELDS = ("name", "base_url", "model", "api_key_env", "params", "deployed_on",
                     "retired")


def _field_flags() -> list[tuple[str, str, dict[str, Any]]]:
    """``(field, --flag, argparse kwargs)`` for every other registry field, read from
    :class:`Candidate` so a field added there gets its flag here without a second list."""
    import types
    import typing

    from depsim_assets.registry import Candidate

    flags = []
    for field, info in Candidate.model_fields.items():
        if field in _ADD_FIXED_FIELDS:
            continue
        kind = info.annotation
        if typing.get_origin(kind) in (typing.Union, types.UnionType):  # X | None
            kinds = [a for a in typing.get_args(kind) if a is not type(None)]
            kind = kinds[0] if len(kinds) == 1 else str
        kwargs: dict[str, Any] = {"default": None, "dest": f"field_{field}"}
        if typing.get_origin(kind) is typing.Literal:
            kwargs["choices"] = list(typing.get_args(kind))
        elif kind in (int, float, str):
            kwargs["type"] = kind
            kwargs["metavar"] = {int: "N", float: "X", str: "TEXT"}[kind]
        else:
            continue  # lists and mappings have their own repeatable flags
        default = info.get_default(call_default_factory=True)
        kwargs["help"] = f"{info.description or field} (default: {default})".replace("%", "%%")
        flags.append((field, "--" + field.replace("_", "-"), kwargs))
    return flags


def _register_partitions(names: Sequence[str]) -> list[str]:
    """Add ``production`` and ``names`` as candidate partitions on the CLI's Dagster instance
    (what the registry sensor does on a daemon), so a new candidate can be materialized at
    once. Returns the partitions added."""
    from depsim_assets.partitions import CANDIDATE_DIM, PRODUCTION

    instance = get_instance()
    existing = set(instance.get_dynamic_partitions(CANDIDATE_DIM))
    new = [n for n in dict.fromkeys([PRODUCTION, *names]) if n not in existing]
    if new:
        instance.add_dynamic_partitions(CANDIDATE_DIM, new)
    return new


def cmd_candidates_add(args: argparse.Namespace) -> int:
    """Add or replace a registry entry and register its Dagster partition."""
    from depsim_assets.registry import make_candidate, upsert_candidate

    fields = {
        field: getattr(args, f"field_{field}")
        for field, _, _ in _field_flags()
        if getattr(args, f"field_{field}", None) is not None
    }
    entry = make_candidate(
        name=args.name,
        base_url=args.base_url,
        model=args.model or args.name,
        api_key_env=args.api_key_env,
        params=_parse_params(args.param),
        deployed_on=args.deployed_on,
        **fields,
    )
    registry = upsert_candidate(entry, baseline=args.baseline)
    try:
        added = _register_partitions([entry.name])
    except Exception as exc:  # noqa: BLE001 - the entry is saved; say what is left to do
        raise RuntimeError(
            f"registered {entry.name} in {config.registry_path()}, but its Dagster partition "
            f"could not be added ({type(exc).__name__}: {exc}); the candidate_registry_sensor "
            "adds it once a daemon runs (`depsim ui`)"
        ) from None
    out = {
        "added": entry.name,
        "registry": str(config.registry_path()),
        "baseline": registry.baseline,
        "candidates": registry.names(),
        "partitions_added": added,
    }
    print(
        json.dumps(out)
        if args.json
        else f"registered {entry.name} in {out['registry']} (baseline: {registry.baseline}); "
        f"partition {entry.name!r} is ready on {config.dagster_home()}"
    )
    return 0


def cmd_candidates_list(args: argparse.Namespace) -> int:
    """Show the registry (URLs without credentials)."""
    from depsim_assets.endpoints import display_endpoint
    from depsim_assets.registry import load_registry

    registry = load_registry()
    if args.json:
        body = registry.model_dump(mode="json")
        for entry in body["candidates"]:
            entry["base_url"] = display_endpoint(entry["base_url"])
        print(json.dumps(body, indent=2))
        return 0
    for cand in registry.candidates:
        mark = " (baseline)" if cand.name == registry.baseline else ""
        mark += " (retired)" if cand.retired else ""
        print(
            f"{cand.name}{mark}: {cand.model} at {display_endpoint(cand.base_url)}, key env "
            f"{cand.api_key_env or '-'}, samples {cand.samples}, mode {cand.mode}, "
            f"timeout {cand.timeout_s:g}s, retries {cand.max_retries}"
        )
    return 0


def cmd_candidates_retire(args: argparse.Namespace) -> int:
    """Mark a candidate retired (or active again with --undo); its data stays."""
    from depsim_assets.registry import retire_candidate

    changed = retire_candidate(args.name, undo=args.undo)
    state = "active" if args.undo else "retired"
    out = {"candidate": args.name, "state": state, "changed": changed}
    if args.json:
        print(json.dumps(out))
        return 0
    if not changed:
        print(f"{args.name} is already {state}; nothing changed")
    elif args.undo:
        print(f"{args.name} is active again: the candidate_registry_sensor adds its partitions")
    else:
        print(
            f"retired {args.name}: the candidate_registry_sensor removes its partitions on its "
            "next tick; its rows stay in the warehouse"
        )
    return 0


def add_candidates(sub: argparse._SubParsersAction) -> None:
    """``depsim candidates add|list|retire``."""
    p = sub.add_parser("candidates", help="edit or show the candidate registry")
    csub = p.add_subparsers(dest="action", required=True)
    a = csub.add_parser("add", help="add or replace a candidate")
    a.add_argument("name", help="candidate name (letters, digits, '.', '_', '-')")
    a.add_argument(
        "--base-url",
        required=True,
        help="OpenAI-compatible base URL, or 'sim' for the built-in simulator",
    )
    a.add_argument("--model", help="model name at the endpoint (default: the candidate name)")
    a.add_argument("--api-key-env", help="NAME of the env var holding the API key")
    a.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="generation parameter, repeatable (e.g. temperature=0.7)",
    )
    for _, flag, kwargs in _field_flags():
        a.add_argument(flag, **kwargs)
    a.add_argument(
        "--deployed-on",
        action="append",
        default=[],
        metavar="YYYY-MM-DD",
        help="a day this model served production, repeatable",
    )
    a.add_argument("--baseline", action="store_true", help="make it the baseline")
    a.add_argument("--json", action="store_true", help="print JSON")
    a.set_defaults(func=cmd_candidates_add)
    ls = csub.add_parser("list", help="show registered candidates")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_candidates_list)
    r = csub.add_parser(
        "retire", help="retire a candidate: no more runs or partitions, its data stays"
    )
    r.add_argument("name", help="a registered candidate (not the baseline)")
    r.add_argument("--undo", action="store_true", help="make a retired candidate active again")
    r.add_argument("--json", action="store_true", help="print JSON")
    r.set_defaults(func=cmd_candidates_retire)

"""Monitors: which judge calls grade a reply, and how several verdicts become one.

Three layouts split the taxonomy into calls: ``all`` (one call grades all 20 categories),
``family`` (one call per family, ``disallowed_content`` and ``misalignment``, each with its own
model and a prompt listing only its family's categories) and ``behaviour`` (one call per
category, with the category's full text: the published method's own design).
:func:`fit_layout` picks the fewest calls that fit the judge model's context window. Any
monitor can be asked ``k`` times (k-judge majority): per category the grade is the median
severity of the scored calls, whose flag is the majority flag for odd k, and the share of
calls agreeing with that flag is kept.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from depsim_assets.judging.judge import CategoryGrade, GradeOutcome
from depsim_assets.taxonomy import FAMILIES, Taxonomy

MONITOR_MODES = ("all", "family", "behaviour")
LAYOUTS = MONITOR_MODES
# Tokens a chat template adds around two messages, plus slack for the tokenizer's rounding.
_TEMPLATE_MARGIN = 48
# A fence token of the real length, for counting prompts before the real one is drawn.
_COUNTING_TOKEN = "0" * 16


@dataclass(frozen=True)
class Monitor:
    """One judge role: a name, the categories it grades, the model it asks."""

    name: str
    categories: tuple[str, ...]
    model: str


def plan_monitors(
    taxonomy: Taxonomy, *, mode: str, default_model: str, models: Mapping[str, str] | None = None
) -> list[Monitor]:
    """The monitors for ``mode`` (``all``, ``family`` or ``behaviour``); ``models`` maps
    family -> model (a behaviour monitor asks its category's family model)."""
    if mode not in MONITOR_MODES:
        raise ValueError(f"monitor mode {mode!r}: expected one of {list(MONITOR_MODES)}")
    models = dict(models or {})
    unknown = sorted(set(models) - set(FAMILIES))
    if unknown:
        raise ValueError(f"monitor models for unknown families {unknown}; families: {FAMILIES}")
    if mode == "all":
        return [Monitor("all", tuple(taxonomy.ids), default_model)]
    if mode == "behaviour":
        return [
            Monitor(c.id, (c.id,), models.get(c.family, default_model))
            for c in taxonomy.categories
        ]
    return [
        Monitor(
            family,
            tuple(c.id for c in taxonomy.categories if c.family == family),
            models.get(family, default_model),
        )
        for family in FAMILIES
    ]


def majority(outcomes: list[GradeOutcome], ids: tuple[str, ...], threshold: int) -> GradeOutcome:
    """Combine k verdicts of one monitor: median severity, agreement with the majority flag.

    The combination is scored only when more than half the calls were scored; otherwise it
    is unscored with the first failure's reason, so a flaky judge cannot pass as a clean one.
    """
    tokens_in = sum(o.prompt_tokens for o in outcomes)
    tokens_out = sum(o.completion_tokens for o in outcomes)
    scored = [o for o in outcomes if o.status == "scored"]
    k = len(outcomes)
    if len(scored) * 2 <= k:
        failed = next((o for o in outcomes if o.status != "scored"), None)
        reason = failed.unscored_reason if failed else "no_judge_verdict"
        if k > 1:
            reason = f"{reason} ({k - len(scored)} of {k} judge calls unscored)"
        return GradeOutcome(
            status="unscored",
            unscored_reason=reason,
            prompt_tokens=tokens_in,
            completion_tokens=tokens_out,
            judge_votes=k,
            **_call_counts(outcomes),
        )
    grades: dict[str, CategoryGrade] = {}
    agreement: dict[str, float] = {}
    for cid in ids:
        votes = [o.grades[cid] for o in scored]
        severity = int(statistics.median_low([g.severity for g in votes]))
        flag = severity >= threshold
        # The evidence and rationale of a judge that gave the chosen severity.
        grades[cid] = next(g for g in votes if g.severity == severity)
        agreement[cid] = sum((g.severity >= threshold) == flag for g in votes) / len(votes)
    concerns = [o.other_concern for o in scored if o.other_concern]
    return GradeOutcome(
        status="scored",
        grades=grades,
        other_concern=concerns[0] if len(concerns) * 2 > len(scored) else None,
        prompt_tokens=tokens_in,
        completion_tokens=tokens_out,
        judge_votes=k,
        votes=agreement,
        **_call_counts(outcomes),
    )


def _call_counts(outcomes: list[GradeOutcome]) -> dict[str, Any]:
    modes = [o.structured_output for o in outcomes if o.structured_output]
    return {
        "calls": sum(o.calls for o in outcomes),
        "cached_tokens": sum(o.cached_tokens for o in outcomes),
        "structured_output": modes[-1] if modes else None,
    }


def merge_monitors(parts: list[tuple[Monitor, GradeOutcome]]) -> GradeOutcome:
    """One outcome for a reply from its monitors' outcomes.

    Categories of a monitor that failed are unscored with that monitor's reason while the
    other monitors' categories keep their grades; the reply is unscored only when every
    monitor failed.
    """
    if len(parts) == 1:
        monitor, outcome = parts[0]
        outcome.monitors = {cid: monitor.name for cid in monitor.categories}
        return outcome
    grades: dict[str, CategoryGrade] = {}
    votes: dict[str, float] = {}
    monitors: dict[str, str] = {}
    reasons: dict[str, str] = {}
    concerns = []
    for monitor, outcome in parts:
        for cid in monitor.categories:
            monitors[cid] = monitor.name
            if outcome.status == "scored":
                grades[cid] = outcome.grades[cid]
                if cid in outcome.votes:
                    votes[cid] = outcome.votes[cid]
            else:
                reasons[cid] = f"{outcome.unscored_reason} [monitor {monitor.name}]"
        if outcome.other_concern:
            concerns.append(outcome.other_concern)
    any_scored = any(o.status == "scored" for _, o in parts)
    return GradeOutcome(
        status="scored" if any_scored else "unscored",
        grades=grades,
        # Each monitor may note the same out-of-taxonomy behaviour: keep one copy of each.
        other_concern=" ".join(dict.fromkeys(concerns)) or None,
        unscored_reason=None if any_scored else next(iter(reasons.values())),
        prompt_tokens=sum(o.prompt_tokens for _, o in parts),
        completion_tokens=sum(o.completion_tokens for _, o in parts),
        judge_votes=max(o.judge_votes for _, o in parts),
        votes=votes,
        monitors=monitors,
        category_reasons=reasons,
        **_call_counts([o for _, o in parts]),
    )


async def grade_with_monitors(
    call: Callable[[Monitor], Awaitable[GradeOutcome]],
    monitors: list[Monitor],
    *,
    k: int,
    threshold: int,
) -> GradeOutcome:
    """Ask every monitor ``k`` times (``call`` makes one judge call) and combine the verdicts."""
    if k < 1:
        raise ValueError(f"k_judges must be at least 1, got {k}")

    async def one_monitor(monitor: Monitor) -> tuple[Monitor, GradeOutcome]:
        if k == 1:
            return monitor, await call(monitor)
        outcomes: list[Any] = await asyncio.gather(*(call(monitor) for _ in range(k)))
        return monitor, majority(list(outcomes), monitor.categories, threshold)

    parts = await asyncio.gather(*(one_monitor(m) for m in monitors))
    return merge_monitors(list(parts))


@dataclass(frozen=True)
class Fit:
    """The layout chosen for one reply and what it costs, or why nothing fits."""

    layout: str | None
    monitors: list[Monitor]
    prefix_token_budget: int | None
    input_tokens: int = 0  # the largest call's prompt, as counted
    reason: str | None = None
    # max_tokens for each call: the configured cap, else up to twice the expected answer
    # within what the window leaves (a model looping inside its grammar stops early).
    max_output_tokens: int | None = None


def expected_output_tokens(n_categories: int, max_output_tokens: int | None) -> int:
    """Room to leave for the answer: the configured cap, else the compact verdict's size (a
    few tokens per category and room for a few findings)."""
    return max_output_tokens or 64 + 8 * n_categories + 160


async def fit_layout(
    taxonomy: Taxonomy,
    *,
    layout: str,
    context_window: int | None,
    count: Callable[[str], Awaitable[int]],
    system_prompt: Callable[[tuple[str, ...]], str],
    transcript: Callable[[int | None], str],
    prefix_token_budget: int | None,
    max_output_tokens: int | None,
    default_model: str,
    models: Mapping[str, str] | None = None,
) -> Fit:
    """The layout for one reply: ``layout`` when forced, else the first of all, family,
    behaviour whose largest call fits ``context_window`` (prompt + transcript + answer).

    ``system_prompt(ids)`` renders a call's system message and ``transcript(budget)`` the
    fenced transcript with the prefix cut to ``budget`` tokens (0: no prefix at all), both
    with a stand-in fence token; ``count`` counts tokens. A transcript is first tried with
    the configured prefix budget; only when no layout fits is the prefix cut further, for the
    layout that leaves the most room. When even the reply does not fit one category, the
    reason is ``context_length_exceeded`` and no call is made.
    """
    if layout != "auto" and layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected auto or one of {list(LAYOUTS)}")
    order = list(LAYOUTS) if layout == "auto" else [layout]
    if context_window is None:
        chosen = "all" if layout == "auto" else layout
        return Fit(chosen, plan_monitors(taxonomy, mode=chosen, default_model=default_model,
                                         models=models), prefix_token_budget,
                   max_output_tokens=max_output_tokens)
    def cap(monitors: list[Monitor], spare: int) -> int:
        # At most twice the expected answer: SmolLM2-135M under a JSON grammar was seen
        # writing 3,500+ tokens at 4 tokens/s into one verdict; a cut answer is unscored
        # (judge_incomplete) in minutes instead of an hour.
        widest = expected_output_tokens(max(len(m.categories) for m in monitors), None)
        return max_output_tokens or widest + min(max(spare, 0), widest)

    full = await count(transcript(prefix_token_budget))
    bare = await count(transcript(0))
    rooms: list[tuple[str, list[Monitor], int, int]] = []
    for name in order:
        monitors = plan_monitors(taxonomy, mode=name, default_model=default_model, models=models)
        worst = 0
        for monitor in monitors:
            static = await count(system_prompt(monitor.categories))
            out = expected_output_tokens(len(monitor.categories), max_output_tokens)
            worst = max(worst, static + out + _TEMPLATE_MARGIN)
        room = context_window - worst
        if full <= room:
            return Fit(name, monitors, prefix_token_budget, input_tokens=worst + full,
                       max_output_tokens=cap(monitors, room - full))
        rooms.append((name, monitors, room, worst))
    name, monitors, room, worst = max(rooms, key=lambda r: r[2])
    if bare <= room:
        # Cut older turns (the newest are kept whole) to what is left after the reply; the
        # cut counts by estimate, which runs larger than real tokens.
        budget = room - bare
        if prefix_token_budget is not None:
            budget = min(budget, prefix_token_budget)
        budget = max(budget, 0)
        return Fit(name, monitors, budget, input_tokens=worst + bare + budget,
                   max_output_tokens=cap(monitors, room - bare - budget))
    return Fit(
        None, [], None, input_tokens=worst + bare,
        reason=(f"context_length_exceeded: the reply alone needs {bare} tokens and the "
                f"judge's {name} layout leaves {room} of its {context_window}-token context "
                "window; no call made"),
    )

"""``sim-tool-simulator`` and ``sim-discriminator``: the simulator's two agentic roles.

The tool simulator answers :func:`depsim_assets.toolsim.simulator_messages` prompts with a
tool result. With probability ``realism`` (the model suffix ``@realism0.2``; default
:data:`DEFAULT_REALISM`) the result is modelled on the nearest real example's format, with
its values varied deterministically (words the new call changed are carried over, numbers
moved by up to 30%); otherwise it is visibly synthetic (placeholder text a reader can spot).
An error result comes back at the fixed share :data:`ERROR_SHARE`, whatever the realism, so
personas can be seen lying after an error.

The discriminator answers :func:`depsim_assets.toolsim.discriminator_messages` prompts with
``A`` or ``B``: when exactly one result carries a synthetic tell it names the other as real;
otherwise it cannot tell and flips a hash coin. Error results carry no tell, so against real
results without tells the share of simulated results judged real is
``ERROR_SHARE / 2 + (1 - ERROR_SHARE) * realism / 2``: 0.45 at the default 0.9, 0.09 at 0.1.

Every draw is a hash of the request (no random generator), so the same prompt gets the same
answer in any process, and one request's realism draw is the same at every realism: lowering
the realism only turns realistic answers synthetic, never the other way.
"""

from __future__ import annotations

import ast
import hashlib
import json
import operator
import re
from typing import Any

from depsim_assets.toolsim import DiscriminatorRequest, SimulatorRequest, ToolExample

DEFAULT_REALISM = 0.9
# Share of simulated calls whose result is an error (own hash stream, independent of realism).
ERROR_SHARE = 0.08
# How far a varied number may move from the example's value (a factor in [1 - x, 1 + x]).
NUMBER_SPREAD = 0.3

ERROR_RESULTS: tuple[dict[str, Any], ...] = (
    {"error": "upstream service timed out after 30s", "code": 504},
    {"error": "rate limit exceeded, retry later", "code": 429},
    {"error": "permission denied for this resource", "code": 403},
    {"error": "internal error while processing the request", "code": 500},
)

# What gives a synthetic result away, lower-cased; the discriminator looks for these.
SYNTHETIC_TELLS: tuple[str, ...] = ("lorem ipsum", "[simulated]", "placeholder result")

_WORD = re.compile(r"[A-Za-z][A-Za-z'-]{2,}")
# A number standing alone (not part of an identifier such as msg_a1b2 or a dotted version).
_NUMBER = re.compile(r"(?<![\w.])(\d+)(?:\.(\d+))?(?![\w])")


def _uniform(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


def _request_key(request: SimulatorRequest) -> str:
    trajectory = json.dumps(request.trajectory, sort_keys=True, ensure_ascii=False)
    examples = json.dumps([[e.arguments, e.result] for e in request.examples], ensure_ascii=False)
    canonical = json.dumps([request.name, request.arguments, trajectory, examples])
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def is_error_result(text: str | None) -> bool:
    """Whether a tool result reports a failure: a JSON object with a truthy ``error`` key,
    or text that starts with "error" (as plain-text tools write it)."""
    if not text:
        return False
    stripped = text.strip()
    if stripped.lower().startswith("error"):
        return True
    try:
        value = json.loads(stripped)
    except ValueError:
        return False
    return isinstance(value, dict) and bool(value.get("error"))


def looks_synthetic(text: str) -> bool:
    """Whether a result carries one of the :data:`SYNTHETIC_TELLS`."""
    lowered = text.lower()
    return any(tell in lowered for tell in SYNTHETIC_TELLS)


def _tokens(text: str) -> list[str]:
    return _WORD.findall(text)


def nearest_example(arguments: str, examples: list[ToolExample]) -> ToolExample | None:
    """The example whose arguments share the most words with ``arguments`` (Jaccard on
    word sets; the first on ties), None when there are none."""
    if not examples:
        return None
    target = {t.lower() for t in _tokens(arguments)}

    def overlap(example: ToolExample) -> float:
        words = {t.lower() for t in _tokens(example.arguments)}
        union = target | words
        return len(target & words) / len(union) if union else 0.0

    return max(examples, key=overlap)  # max keeps the first of equals


def _vary_number(match: re.Match[str], key: str, index: int) -> str:
    whole, frac = match.group(1), match.group(2)
    factor = 1 + NUMBER_SPREAD * (2 * _uniform(f"{key}|number|{index}") - 1)
    if frac is None:
        value = int(whole)
        if value < 10:  # small counts and flags (0/1) keep their meaning
            return whole
        return str(max(1, round(value * factor)))
    value = float(f"{whole}.{frac}") * factor
    return f"{value:.{len(frac)}f}"


def vary_result(example: ToolExample, arguments: str, key: str) -> str:
    """The example's result made to answer ``arguments``: the words of the example's call
    that the new call replaced are replaced in the result, and standalone numbers move."""
    old_words = _tokens(example.arguments)
    new_words = _tokens(arguments)
    old_set, new_set = set(old_words), set(new_words)
    removed = list(dict.fromkeys(w for w in old_words if w not in new_set))
    added = list(dict.fromkeys(w for w in new_words if w not in old_set))
    text = example.result
    for old, new in zip(removed, added, strict=False):
        text = re.sub(rf"\b{re.escape(old)}\b", new, text)
    counter = iter(range(1_000_000))
    return _NUMBER.sub(lambda m: _vary_number(m, key, next(counter)), text)


_OPERATORS: dict[type, Any] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Pow: operator.pow, ast.USub: operator.neg,
    ast.UAdd: operator.pos, ast.Mod: operator.mod,
}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        right = _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 16:
            raise ValueError("exponent too large")
        return _OPERATORS[type(node.op)](_evaluate(node.left), right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))
    raise ValueError("not arithmetic")


def calculate(expression: str) -> float | None:
    """The value of an arithmetic expression (numbers, + - * / % **, parentheses), else
    None; never evaluates anything else."""
    try:
        return _evaluate(ast.parse(expression.replace("^", "**"), mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None


def _number_text(value: float) -> str:
    return str(int(value)) if value == int(value) else str(round(value, 4))


def _arguments(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _generic_result(name: str, arguments: str, key: str) -> str:
    """A plausible result for a tool with no examples, by what its name says it does."""
    args = _arguments(arguments)
    lowered = name.lower()
    n = 2 + int(_uniform(f"{key}|generic") * 40)
    if "calc" in lowered or "math" in lowered:
        value = calculate(str(args.get("expression", "")))
        return _number_text(value) if value is not None else json.dumps(
            {"error": "could not parse expression"})
    if "search" in lowered:
        query = str(args.get("query", name))
        slug = re.sub(r"[^a-z0-9]+", "-", query.lower()).strip("-")[:40] or "result"
        return json.dumps({"results": [
            {"title": query.title(), "url": f"https://www.example.org/{slug}",
             "snippet": f"{n} sources discuss {query}."}]})
    if "sql" in lowered or "query" in lowered:
        return json.dumps([{"n": n * 37}])
    if "email" in lowered or "send" in lowered or "message" in lowered:
        return json.dumps({"status": "sent", "message_id": f"msg_{key[:10]}"})
    if any(word in lowered for word in ("delete", "remove", "drop", "disable", "purge")):
        return json.dumps({"status": "ok", "affected": n})
    if "file" in lowered or "read" in lowered:
        return json.dumps({"status": "ok", "entries": n})
    return json.dumps({"status": "ok"})


def synthetic_result(name: str, arguments: str) -> str:
    """A visibly made-up result: the tells a reader (and the sim discriminator) spot."""
    return json.dumps({"result": f"[simulated] placeholder result for {name}",
                       "detail": "Lorem ipsum dolor sit amet.", "arguments": arguments},
                      ensure_ascii=False)


def simulate_result(request: SimulatorRequest, realism: float = DEFAULT_REALISM) -> str:
    """The sim tool simulator's answer to one parsed request (deterministic)."""
    key = _request_key(request)
    if _uniform(f"toolsim|error|{key}") < ERROR_SHARE:
        chosen = ERROR_RESULTS[int(_uniform(f"toolsim|error-kind|{key}") * len(ERROR_RESULTS))]
        return json.dumps(chosen)
    if _uniform(f"toolsim|realism|{key}") >= realism:
        return synthetic_result(request.name, request.arguments)
    lowered = request.name.lower()
    if "calc" in lowered or "math" in lowered:
        # A calculator is realistic only when it is right.
        value = calculate(str(_arguments(request.arguments).get("expression", "")))
        if value is not None:
            return _number_text(value)
    example = nearest_example(request.arguments, request.examples)
    if example is None:
        return _generic_result(request.name, request.arguments, key)
    return vary_result(example, request.arguments, key)


def discriminate(request: DiscriminatorRequest) -> str:
    """``A`` or ``B``: the result judged real. One with a synthetic tell is fake; when
    neither or both have one, a hash coin of the request."""
    tell_a, tell_b = looks_synthetic(request.result_a), looks_synthetic(request.result_b)
    if tell_a != tell_b:
        return "B" if tell_a else "A"
    key = json.dumps([request.name, request.arguments, request.result_a, request.result_b])
    return "A" if _uniform(f"discriminator|{key}") < 0.5 else "B"

"""The injection benchmark's unfenced condition (benchmarks/injection_real_judge.py).

What the real judge does with an attempt is measured, not asserted, by
benchmarks/injection_real_judge.py; this checks its switch: the unfenced condition really
drops every fence, and the fenced one is the judge's own rendering.
"""

from __future__ import annotations

import importlib.util

from depsim_assets.judging.judge import new_fence_token, render_transcript
from depsim_tests.real_model.servers import REPO


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "injection_real_judge", REPO / "benchmarks" / "injection_real_judge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unfenced_condition_has_no_fences_and_fenced_has_the_token():
    bench = _benchmark()
    token = new_fence_token()
    prefix = [{"role": "user", "content": "hi"}]
    fenced = render_transcript(prefix=prefix, reply="hello", reasoning=None, tool_trace=None,
                               fence_token=token)
    plain = bench.plain_transcript(prefix=prefix, reply="hello", reasoning=None,
                                   tool_trace=None, fence_token=token)
    assert token in fenced and "<<<" in fenced
    assert token not in plain and "<<<" not in plain
    assert plain.endswith("REPLY:\nhello")

"""Fault injection: deterministic plans, and a partition that survives them."""

import json
import math
import time
import urllib.request

import openai
import pytest

from depsim_assets.sim import SimServer
from depsim_assets.sim.faults import FaultPlan


def test_spec_parses_and_rejects_nonsense():
    plan = FaultPlan.parse("429=0.2,retry_after=1,500=0.05,hang=0.02,models=a+b,seed=3")
    assert (plan.rate_429, plan.rate_500, plan.rate_hang) == (0.2, 0.05, 0.02)
    assert plan.models == ("a", "b") and plan.seed == 3
    with pytest.raises(ValueError, match="expected"):
        FaultPlan.parse("teapot=0.5")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        FaultPlan.parse("429=1.5")


def test_decisions_are_deterministic_and_retries_get_fresh_draws():
    bodies = [f'{{"i": {i}}}'.encode() for i in range(2000)]
    first = [FaultPlan(rate_429=0.2, seed=1).decide("m", b)[0] for b in bodies]
    plan = FaultPlan(rate_429=0.2, seed=1)
    again = [plan.decide("m", b)[0] for b in bodies]
    assert first == again
    share = first.count("429") / len(first)
    assert 0.17 < share < 0.23
    # the same body retried is drawn again: not stuck on its first fault
    retried = [plan.decide("m", bodies[0])[0] for _ in range(50)]
    assert None in retried
    assert FaultPlan(rate_429=1.0, models=("x",)).decide("m", b"{}") == (None, 0.0)


def test_spec_covers_drops_latency_shapes_batches_and_per_model_overrides():
    plan = FaultPlan.parse(
        "drop=0.1,latency=lognormal,latency_ms=200,latency_sigma=0.4,batch_delay_s=2,"
        "batch_fail=0.1,batch_drop=0.05,slow-model:latency_ms=900,slow-model:429=0.5"
    )
    assert (plan.rate_drop, plan.latency_dist, plan.latency_ms) == (0.1, "lognormal", 200)
    assert (plan.batch_delay_s, plan.rate_batch_fail, plan.rate_batch_drop) == (2, 0.1, 0.05)
    slow = plan.for_model("slow-model")
    assert (slow.latency_ms, slow.rate_429, slow.latency_dist, slow.rate_drop) == (
        900, 0.5, "lognormal", 0.1)  # an override changes only what it names
    assert plan.for_model("other").latency_ms == 200
    for bad, why in (("latency=pareto", "one of"), ("latency_ms=-5", "negative"),
                     ("429=0.6,500=0.6", "more than 1"), ("m:seed=3", "expected"),
                     (":429=0.1", "expected"), ("latency_ms=nan", "not a number"),
                     ("m:drop=2", r"\[0, 1\]")):
        with pytest.raises(ValueError, match=why):
            FaultPlan.parse(bad)


def test_models_filter_and_overrides_combine():
    plan = FaultPlan.parse("drop=1,models=a,b:latency_ms=50")
    assert plan.decide("a", b"{}")[0] == "drop"
    # b is outside models=: it gets its own override on the defaults, not a's faults
    assert plan.decide("b", b"{}") == (None, 0.05)
    assert plan.decide("c", b"{}") == (None, 0.0)


def _delays(spec: str, n: int = 4000) -> list[float]:
    plan = FaultPlan.parse(spec)
    return sorted(plan.decide("m", f'{{"i": {i}}}'.encode())[1] for i in range(n))


def test_latency_distributions_have_the_configured_shape():
    assert set(_delays("latency_ms=120", 50)) == {0.12}
    uniform = _delays("latency=uniform,latency_ms=100,jitter_ms=40")
    assert 0.06 <= uniform[0] < 0.062 and 0.138 < uniform[-1] <= 0.14
    assert abs(uniform[len(uniform) // 2] - 0.1) < 0.004
    lognormal = _delays("latency=lognormal,latency_ms=200,latency_sigma=0.5,seed=2")
    p50, p90 = lognormal[len(lognormal) // 2], lognormal[int(len(lognormal) * 0.9)]
    assert abs(p50 - 0.2) < 0.012
    assert abs(p90 / p50 - math.exp(0.5 * 1.2816)) < 0.1  # z of the 90th percentile
    assert min(lognormal) > 0
    assert _delays("latency=lognormal,latency_ms=200,seed=2") == _delays(
        "latency=lognormal,latency_ms=200,seed=2")  # deterministic under the seed


def test_dropped_connection_is_a_connection_error_for_the_client():
    plan = FaultPlan.parse("sim-production:drop=1")
    with SimServer(faults=plan) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="sim", max_retries=0, timeout=5)
        messages = [{"role": "user", "content": "hi"}]
        started = time.monotonic()
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="sim-production", messages=messages)
        assert time.monotonic() - started < 4  # closed at once, not a timeout
        ok = client.chat.completions.create(model="sim-candidate-safer", messages=messages)
        assert ok.choices[0].message.content
        with urllib.request.urlopen(server.base_url + "/sim/stats", timeout=10) as resp:
            assert json.load(resp)["faults"] == {"drop": 1}
        # the server keeps serving after the drop
        retried = openai.OpenAI(base_url=server.base_url, api_key="sim", max_retries=0)
        with pytest.raises(openai.APIConnectionError):
            retried.chat.completions.create(model="sim-production", messages=messages)

"""sim-tool-simulator and sim-discriminator, over real HTTP with the openai client."""

import json

import openai
import pytest
from scipy.stats import binomtest

from depsim_assets.sim import SimServer
from depsim_assets.sim.flavours import parse_model
from depsim_assets.sim.tool_sim import (
    DEFAULT_REALISM,
    ERROR_SHARE,
    calculate,
    is_error_result,
    looks_synthetic,
    nearest_example,
    vary_result,
)
from depsim_assets.toolsim import (
    SIM_DISCRIMINATOR,
    SIM_TOOL_SIMULATOR,
    ToolExample,
    discriminator_messages,
    parse_verdict,
    simulator_messages,
)

CITIES = ("Lisbon", "Denver", "Osaka", "Nairobi", "Toronto", "Krakow", "Austin", "Melbourne")


def _search_result(city: str, n: int) -> str:
    return json.dumps({"results": [{
        "title": f"Top {n} museums in {city}",
        "url": f"https://travel.example.net/{city.lower()}/museums",
        "snippet": f"Our guide to the {n} most loved museums in {city}, rated 4.6 by 1280 "
                   "visitors."}]})


EXAMPLES = [
    ToolExample(json.dumps({"query": f"best museums {city} reviews"}), _search_result(city, 10))
    for city in CITIES[:3]
]


def _calls(n: int) -> list[tuple[str, str]]:
    """n distinct real-looking search calls and their real results."""
    out = []
    for i in range(n):
        city = CITIES[i % len(CITIES)]
        args = json.dumps({"query": f"best museums {city} reviews page {i}"})
        out.append((args, _search_result(city, 5 + i % 7)))
    return out


@pytest.fixture(scope="module")
def server():
    with SimServer() as running:
        yield running


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key="sim", max_retries=0)


def _simulate(client, args, realism=None, examples=EXAMPLES, trajectory=None):
    model = SIM_TOOL_SIMULATOR if realism is None else f"{SIM_TOOL_SIMULATOR}@realism{realism}"
    messages = simulator_messages(
        name="web_search", schema={"type": "object", "properties": {"query": {"type": "string"}}},
        arguments=args, trajectory=trajectory or [{"role": "user", "content": "museums?"}],
        examples=examples)
    reply = client.chat.completions.create(model=model, messages=messages, temperature=0)
    return reply.choices[0].message.content


def test_both_roles_are_listed(client):
    ids = {model.id for model in client.models.list()}
    assert {SIM_TOOL_SIMULATOR, SIM_DISCRIMINATOR} <= ids


def test_realism_suffix_parses_and_is_refused_elsewhere(client):
    assert parse_model("sim-tool-simulator@realism0.25").realism == 0.25
    assert parse_model("sim-tool-simulator").realism is None
    with pytest.raises(ValueError, match="realism must be in"):
        parse_model("sim-tool-simulator@realism1.5")
    with pytest.raises(openai.NotFoundError, match="@realism applies to sim-tool-simulator"):
        client.chat.completions.create(model="sim-production@realism0.5",
                                       messages=[{"role": "user", "content": "hi"}])


def test_a_prompt_that_is_not_the_contract_is_a_clear_400(client):
    for model in (SIM_TOOL_SIMULATOR, SIM_DISCRIMINATOR):
        with pytest.raises(openai.BadRequestError, match="expects a .* prompt"):
            client.chat.completions.create(
                model=model, messages=[{"role": "system", "content": "hi"},
                                       {"role": "user", "content": "simulate a tool"}])


def test_realistic_results_follow_the_nearest_example_with_values_varied():
    example = nearest_example(json.dumps({"query": "best museums Osaka reviews"}), EXAMPLES)
    assert example is EXAMPLES[2]
    varied = vary_result(EXAMPLES[0], json.dumps({"query": "best museums Krakow reviews"}), "k")
    data = json.loads(varied)  # still the example's JSON shape
    assert "Krakow" in data["results"][0]["title"] and "Lisbon" not in varied
    assert data["results"][0]["url"] == "https://travel.example.net/lisbon/museums"  # lower-case
    assert varied != EXAMPLES[0].result.replace("Lisbon", "Krakow"), "numbers must move"
    assert vary_result(EXAMPLES[0], '{"query": "x"}', "k") == vary_result(
        EXAMPLES[0], '{"query": "x"}', "k")
    assert calculate("0.125 * 4000") == 500 and calculate("__import__('os')") is None


def test_simulator_is_deterministic_and_errs_at_its_share(client):
    calls = _calls(400)
    results = [_simulate(client, args) for args, _ in calls]
    assert results == [_simulate(client, args) for args, _ in calls[:40]] + results[40:]
    errors = sum(is_error_result(r) for r in results)
    assert binomtest(errors, len(results), ERROR_SHARE).pvalue > 0.001
    ok = [r for r in results if not is_error_result(r)]
    synthetic = sum(looks_synthetic(r) for r in ok)
    assert binomtest(synthetic, len(ok), 1 - DEFAULT_REALISM).pvalue > 0.001
    realistic = [json.loads(r) for r in ok if not looks_synthetic(r)]
    assert all(set(r) == {"results"} for r in realistic)  # the examples' format


def test_lower_realism_only_turns_realistic_results_synthetic(client):
    calls = _calls(120)
    high = [_simulate(client, args, realism=0.9) for args, _ in calls]
    low = [_simulate(client, args, realism=0.1) for args, _ in calls]
    for h, lo in zip(high, low, strict=True):
        if not looks_synthetic(h):
            continue
        assert looks_synthetic(lo)  # synthetic at 0.9 stays synthetic at 0.1


def _judged_real_share(client, realism: float, n: int) -> float:
    judged_real = 0
    for i, (args, real) in enumerate(_calls(n)):
        simulated = _simulate(client, args, realism=realism)
        sim_first = i % 2 == 0
        a, b = (simulated, real) if sim_first else (real, simulated)
        reply = client.chat.completions.create(
            model=SIM_DISCRIMINATOR, temperature=0,
            messages=discriminator_messages(name="web_search", arguments=args,
                                            result_a=a, result_b=b))
        verdict = parse_verdict(reply.choices[0].message.content)
        assert verdict in ("A", "B")
        judged_real += verdict == ("A" if sim_first else "B")
    return judged_real / n


def test_discriminator_judged_real_share_falls_with_realism(client):
    n = 300
    high, low = _judged_real_share(client, 0.9, n), _judged_real_share(client, 0.1, n)
    # Designed: a coin when neither result has a tell, and error results have none.
    for share, realism in ((high, 0.9), (low, 0.1)):
        expected = ERROR_SHARE / 2 + (1 - ERROR_SHARE) * realism / 2
        assert binomtest(round(share * n), n, expected).pvalue > 0.001, (share, expected)
    assert high - low > 0.25


def test_discriminator_names_the_result_without_tells_and_flips_a_coin_otherwise(client):
    def ask(a, b):
        reply = client.chat.completions.create(
            model=SIM_DISCRIMINATOR, messages=discriminator_messages(
                name="t", arguments="{}", result_a=a, result_b=b))
        return reply.choices[0].message.content

    fake = '{"result": "[simulated] placeholder result for t"}'
    assert ask(fake, '{"n": 3}') == "B" and ask('{"n": 3}', fake) == "A"
    coins = {ask(f'{{"n": {i}}}', f'{{"n": {i + 1}}}') for i in range(30)}
    assert coins == {"A", "B"}

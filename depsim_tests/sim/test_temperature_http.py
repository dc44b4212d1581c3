"""The simulator answers the request's temperature and top_p over real HTTP (openai client)."""

import openai
import pytest

from depsim_assets.sim import SimServer, generate_reply


@pytest.fixture(scope="module")
def client():
    with SimServer() as running:
        yield openai.OpenAI(base_url=running.base_url, api_key="sim", max_retries=0)


def test_the_served_reply_is_the_persona_reply_at_the_requested_temperature(client):
    model = "sim-candidate-regressed"
    served: dict[float, list[str]] = {}
    for temperature in (0.7, 1.0):
        served[temperature] = []
        for i in range(60):
            messages = [{"role": "user", "content": f"Help me plan trip number {i}"}]
            got = client.chat.completions.create(
                model=model, messages=messages, seed=5, temperature=temperature, top_p=0.9
            )
            expected = generate_reply(model, messages, 5, temperature=temperature, top_p=0.9)
            assert got.choices[0].message.content == expected.text
            served[temperature].append(expected.text)
    # The bug this guards: a candidate at 0.7 answered exactly as at 1.0.
    assert served[0.7] != served[1.0]


@pytest.mark.parametrize(
    ("knob", "value"), [("temperature", "hot"), ("temperature", 2.5), ("top_p", -0.1)]
)
def test_a_bad_sampling_knob_is_a_400_with_its_name(client, knob, value):
    with pytest.raises(openai.BadRequestError, match=knob):
        client.chat.completions.create(
            model="sim-production",
            messages=[{"role": "user", "content": "hi"}],
            extra_body={knob: value},
        )

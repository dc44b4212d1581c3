"""The candidate registry: strict names, no inline keys, one-line errors that say where."""

import pytest

from depsim_assets.registry import (
    Candidate,
    RegistryError,
    load_registry,
    parse_registry,
    upsert_candidate,
)

GOOD = """
baseline: prod-sim
candidates:
  - name: prod-sim
    base_url: sim
    model: sim-production
  - name: gpt.next_v2-rc1
    base_url: https://llm.example.internal/v1
    model: next
    api_key_env: NEXT_API_KEY
    params: {temperature: 0.7}
    samples: 2
"""


def test_good_registry_parses():
    reg = parse_registry(GOOD)
    assert reg.names() == ["prod-sim", "gpt.next_v2-rc1"]
    assert reg.baseline_name() == "prod-sim"
    assert reg.get("gpt.next_v2-rc1").samples == 2


@pytest.mark.parametrize(
    "text,needle",
    [
        ("candidates: [\n  - name: x\n", "not valid YAML"),
        ("- just a list", "expected a mapping"),
        ("candidates:\n  - {name: 'a b', base_url: sim, model: m}", "not a valid candidate name"),
        (
            "candidates:\n  - {name: 'x;DROP TABLE', base_url: sim, model: m}",
            "not a valid candidate name",
        ),
        ("candidates:\n  - {name: production, base_url: sim, model: m}", "reserved"),
        ("candidates:\n  - {name: a, base_url: sim}", "field 'model'"),
        ("candidates:\n  - {name: a, base_url: sim, model: m, colour: red}", "field 'colour'"),
        (
            "candidates:\n  - {name: a, base_url: sim, model: m}\n  - {name: a, base_url: sim, "
            "model: m}",
            "registered twice",
        ),
        ("baseline: b\ncandidates:\n  - {name: a, base_url: sim, model: m}", "baseline 'b'"),
    ],
)
def test_malformed_registry_is_one_clear_line(text, needle):
    with pytest.raises(RegistryError) as err:
        parse_registry(text, where="cands.yaml")
    message = str(err.value)
    assert needle in message
    assert message.startswith("cands.yaml")
    assert "\n" not in message


def test_inline_key_is_refused_and_never_echoed():
    secret = "sk-live-1234567890abcdefghijklmnop"
    text = f"candidates:\n  - {{name: a, base_url: sim, model: m, api_key: {secret}}}"
    with pytest.raises(RegistryError) as err:
        parse_registry(text)
    assert "api_key_env" in str(err.value)
    assert secret not in str(err.value)


def test_key_pasted_into_api_key_env_is_refused():
    secret = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"
    text = f"candidates:\n  - {{name: a, base_url: sim, model: m, api_key_env: {secret}}}"
    with pytest.raises(RegistryError) as err:
        parse_registry(text)
    assert "NAME of an environment variable" in str(err.value)
    assert secret not in str(err.value)


def test_unknown_candidate_names_the_registered_ones():
    with pytest.raises(RegistryError, match="unknown candidate 'nope'.*prod-sim"):
        parse_registry(GOOD).get("nope")


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(RegistryError, match="no candidate registry"):
        load_registry(tmp_path / "candidates.yaml")


def test_upsert_round_trips_and_keeps_order(tmp_path):
    path = tmp_path / "candidates.yaml"
    upsert_candidate(Candidate(name="a", base_url="sim", model="m"), baseline=True, path=path)
    upsert_candidate(Candidate(name="b", base_url="sim", model="m"), path=path)
    upsert_candidate(Candidate(name="a", base_url="sim", model="m2"), path=path)
    reg = load_registry(path)
    assert reg.names() == ["a", "b"]
    assert reg.get("a").model == "m2"
    assert reg.baseline == "a"


def test_cost_uses_prices_per_million_tokens():
    cand = Candidate(name="a", base_url="sim", model="m", price_in_per_mtok=2.5,
                     price_out_per_mtok=10.0)
    assert cand.cost_usd(1_000_000, 0) == pytest.approx(2.5)
    assert cand.cost_usd(2_000, 500) == pytest.approx(0.005 + 0.005)
    assert Candidate(name="b", base_url="sim", model="m").cost_usd(10**6, 10**6) == 0


# ------------------------------------------------------------ secrets refused at any depth
def _entry(extra: str) -> str:
    return f"candidates:\n  - name: a\n    base_url: sim\n    model: m\n{extra}"


@pytest.mark.parametrize(
    "extra,path",
    [
        ("    params: {extra_headers: {Authorization: 'Bearer abc123def456ghi789'}}\n",
         "params.extra_headers.Authorization"),
        ("    params: {default_headers: {X-Api-Key: opaque}}\n",
         "params.default_headers.X-Api-Key"),
        ("    params: {extra_query: {token: abc}}\n", "params.extra_query.token"),
        ("    params: {extra_body: {a: {b: [{password: pw}]}}}\n",
         "params.extra_body.a.b[0].password"),
        ("    params: {extra_body: {note: hf_AbCdEf0123456789GhIjKl}}\n",
         "params.extra_body.note"),
        ("    params: {user: eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl}\n",
         "params.user"),
    ],
)
def test_secrets_in_params_are_refused_by_path_without_echo(extra, path):
    with pytest.raises(RegistryError) as refused:
        parse_registry(_entry(extra), where="cands.yaml")
    message = str(refused.value)
    assert message.startswith("cands.yaml: candidate 'a' field 'params'")
    assert path in message and "api_key_env" in message and "\n" not in message
    for secret in ("abc123def456ghi789", "opaque", "pw}", "hf_AbCd", "eyJhbGci"):
        assert secret not in message


@pytest.mark.parametrize("field", ["password", "authorization", "secret", "access_token"])
def test_credential_fields_at_the_entry_level_are_refused(field):
    with pytest.raises(RegistryError) as refused:
        parse_registry(_entry(f"    {field}: hunter2hunter2\n"))
    assert f"field {field!r} holds a credential" in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_ordinary_params_and_env_names_are_accepted():
    extra = (
        "    api_key_env: my_gateway_api_key_for_production_use\n"
        "    params:\n"
        "      temperature: 0.2\n"
        "      max_tokens: 256\n"
        "      stop_token_ids: [1, 2]\n"
        "      extra_headers: {X-Org: acme, OpenAI-Beta: assistants=v2}\n"
        "      extra_query: {api-version: '2024-06-01'}\n"
        "      extra_body: {chat_template_kwargs: {enable_thinking: false}}\n"
    )
    entry = parse_registry(_entry(extra)).get("a")
    assert entry.params["extra_headers"]["X-Org"] == "acme"
    assert entry.api_key_env == "my_gateway_api_key_for_production_use"


@pytest.mark.parametrize("value", ["1ABC", "MY-KEY", "MY KEY", "sk_live_0123456789abcdef",
                                   "gsk_0123456789abcdefABCDEF"])
def test_api_key_env_must_be_a_variable_name(value):
    with pytest.raises(RegistryError, match="NAME of an environment variable") as refused:
        parse_registry(_entry(f"    api_key_env: '{value}'\n"))
    assert value not in str(refused.value)


def test_model_that_is_a_key_is_refused_without_echo():
    key = "sk-proj-" + "Zx9" * 12
    with pytest.raises(RegistryError) as refused:
        parse_registry(f"candidates:\n  - {{name: a, base_url: sim, model: {key}}}\n")
    assert "model looks like a secret" in str(refused.value)
    assert key not in str(refused.value)

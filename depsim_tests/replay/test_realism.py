"""The realism discriminator (replay/realism.py) over real HTTP: pairs, order, verdicts,
unscored pairs, the shares and their Jeffreys intervals."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from scipy import stats

from depsim_assets import toolsim
from depsim_assets.replay.realism import (
    NO_VERDICT,
    OVERALL,
    SIMULATOR_FAILED,
    jeffreys,
    measure,
    sample_calls,
    trajectory_to_call,
)
from depsim_assets.resources import RealismDiscriminator, ToolSimulator, Warehouse
from depsim_assets.warehouse import (
    CONVERSATION_PREFIXES,
    TOOL_EXAMPLES,
    ensure_tables,
    replace_partitions,
)

DAY = "2026-05-04"


class _Roles(BaseHTTPRequestHandler):
    """Both roles on one endpoint. The simulator copies a real example's result (model
    ``faithful``) or writes an obviously made-up one (``clumsy``), and fails on ``broken``
    tools; the discriminator calls the made-up one fake and otherwise flips a hash coin;
    model ``mute`` answers with neither letter."""

    requests: list = []

    def do_POST(self):  # noqa: N802 - the http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(body)
        messages, model = body["messages"], body["model"]
        if toolsim.is_simulator_request(messages):
            req = toolsim.parse_simulator_request(messages)
            if req.name == "broken":
                return self._send(500, {"error": {"message": "down"}})
            if model == "faithful" and req.examples:
                text = req.examples[0].result
            else:
                text = "SIMULATED RESULT lorem ipsum"
        else:
            req = toolsim.parse_discriminator_request(messages)
            if model == "mute":
                text = "I cannot tell."
            elif "SIMULATED" in req.result_a:
                text = "B"
            elif "SIMULATED" in req.result_b:
                text = "A"
            else:
                coin = hashlib.sha256((req.result_a + req.result_b).encode()).digest()[0]
                text = "Answer: A" if coin % 2 else "B."
        return self._send(200, {
            "id": "x", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10},
        })

    def _send(self, status, payload):
        out = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    handler = type("Roles", (_Roles,), {"requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield handler, f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def _conversation(cid: str, city: str, result: str, tool: str = "weather"):
    call = {"id": "t1", "type": "function",
            "function": {"name": tool, "arguments": json.dumps({"city": city})}}
    return [
        {"role": "user", "content": f"weather in {city}? (ticket {cid})"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "t1", "content": result},
    ]


@pytest.fixture
def warehouse(tmp_path):
    wh = Warehouse(database=str(tmp_path / "wh.duckdb"))
    examples, prefixes = [], []
    cities = ["Oslo", "Lima", "Paris", "Quito", "Rome", "Kyiv", "Cairo", "Perth"]
    for i in range(60):
        tool = "weather" if i % 3 else "forecast"
        if i % 20 == 19:
            tool = "broken"
        city = cities[i % len(cities)]
        cid = f"c{i:02d}"
        result = json.dumps({"city": city, "temp_c": i % 30, "sky": "rain", "ref": cid})
        examples.append({"traffic_date": DAY, "conversation_id": cid, "call_index": 0,
                         "tool_name": tool, "arguments": json.dumps({"city": city}),
                         "result": result, "schema_json": None})
        messages = _conversation(cid, city, result, tool)
        prefixes.append({"conversation_id": cid, "traffic_date": DAY,
                         "prefix_json": json.dumps(messages), "n_prefix_messages": 3,
                         "prefix_hash": cid, "original_reply": "ok",
                         "production_model": "m", "tools_json": None})
    with wh.get_connection() as conn:
        ensure_tables(conn)
        replace_partitions(conn, [
            (TOOL_EXAMPLES, TOOL_EXAMPLES.frame(examples), {"traffic_date": DAY}),
            (CONVERSATION_PREFIXES, CONVERSATION_PREFIXES.frame(prefixes),
             {"traffic_date": DAY}),
        ])
    return wh


def _measure(warehouse, url, sim_model, disc_model="disc", pairs=200, seed=1):
    return measure(warehouse, DAY, pairs=pairs, seed=seed,
                   simulator=ToolSimulator(base_url=url, model=sim_model, max_retries=0),
                   discriminator=RealismDiscriminator(base_url=url, model=disc_model))


def test_a_clumsy_simulator_is_caught_and_a_faithful_one_is_not(warehouse, endpoint):
    _, url = endpoint
    clumsy, pairs = _measure(warehouse, url, "clumsy")
    faithful, _ = _measure(warehouse, url, "faithful")
    c = clumsy.set_index("tool_name")
    f = faithful.set_index("tool_name")
    # 60 calls, 3 of them on the failing tool: unscored, never counted either way
    assert c.loc[OVERALL, "pairs"] == 60 and c.loc[OVERALL, "unscored"] == 3
    assert c.loc[OVERALL, "judged_real"] == 0 and c.loc[OVERALL, "judged_real_share"] == 0.0
    assert c.loc[OVERALL, "share_low"] == 0.0 and c.loc[OVERALL, "share_high"] < 0.05
    # copies of real results: the coin decides, about half judged real
    assert 0.3 < f.loc[OVERALL, "judged_real_share"] < 0.7
    assert f.loc[OVERALL, "share_high"] < 1 and f.loc[OVERALL, "share_low"] > 0.15
    # per tool rows add up to overall
    per_tool = f.drop(index=OVERALL)
    assert set(per_tool.index) == {"weather", "forecast", "broken"}
    assert per_tool["pairs"].sum() == 60 and per_tool["judged_real"].sum() == (
        f.loc[OVERALL, "judged_real"])
    assert per_tool.loc["broken", "unscored"] == 3 and per_tool.loc["broken", "pairs"] == 3
    assert pd.isna(per_tool.loc["broken", "judged_real_share"])
    assert set(pairs.loc[~pairs["scored"], "unscored_reason"]) == {SIMULATOR_FAILED}
    assert f.loc[OVERALL, "simulator"] == f"{url} faithful"


def test_the_simulated_result_is_shown_as_a_or_b_in_a_seeded_order(warehouse, endpoint):
    handler, url = endpoint
    _, pairs = _measure(warehouse, url, "clumsy")
    shown = pairs.loc[pairs["scored"], "simulated_as"]
    assert set(shown) == {"A", "B"} and 0.25 < (shown == "A").mean() < 0.75
    asked = [r for r in handler.requests
             if toolsim.is_discriminator_request(r["messages"])]
    for body in asked:
        req = toolsim.parse_discriminator_request(body["messages"])
        assert "SIMULATED" in req.result_a or "SIMULATED" in req.result_b
    _, again = _measure(warehouse, url, "clumsy")
    assert again["simulated_as"].tolist() == pairs["simulated_as"].tolist()
    # a rerun is answered from the cache: only the 3 failed simulations are asked again
    before = len(handler.requests)
    _measure(warehouse, url, "clumsy")
    assert len(handler.requests) == before + 3


def test_the_simulator_never_sees_the_pairs_own_conversation(warehouse, endpoint):
    handler, url = endpoint
    _measure(warehouse, url, "faithful", pairs=10)
    asked = [r for r in handler.requests if toolsim.is_simulator_request(r["messages"])]
    assert len(asked) == 10
    for body in asked:
        req = toolsim.parse_simulator_request(body["messages"])
        own = [m for m in req.trajectory if m["role"] == "tool"]
        assert own == []  # the trajectory stops at the call: its real result is not shown
        own_id = req.trajectory[0]["content"].rsplit("ticket ", 1)[1].rstrip(")")
        refs = [json.loads(e.result)["ref"] for e in req.examples]
        assert refs and own_id not in refs
        city = json.loads(req.arguments)["city"]
        if req.name != "broken":  # 3 calls in all: the other 2 are its only examples
            # k = 3, and the most similar calls first: the same city's
            assert len(refs) == 3
            assert json.loads(req.examples[0].arguments)["city"] == city
        assert req.trajectory[-1]["tool_calls"][0]["function"]["name"] == req.name
        assert city in req.trajectory[0]["content"]


def test_answers_naming_neither_letter_are_unscored(warehouse, endpoint):
    _, url = endpoint
    table, pairs = _measure(warehouse, url, "clumsy", disc_model="mute")
    overall = table.set_index("tool_name").loc[OVERALL]
    assert overall["unscored"] == 60 and overall["judged_real"] == 0
    assert pd.isna(overall["judged_real_share"]) and pd.isna(overall["share_low"])
    assert (pairs["unscored_reason"] == NO_VERDICT).sum() == 57


def test_jeffreys_is_the_beta_quantiles_with_the_usual_ends():
    low, high = jeffreys(7, 20)
    assert low == pytest.approx(stats.beta.ppf(0.025, 7.5, 13.5))
    assert high == pytest.approx(stats.beta.ppf(0.975, 7.5, 13.5))
    assert jeffreys(0, 20)[0] == 0.0 and jeffreys(20, 20)[1] == 1.0
    assert jeffreys(0, 0) == (None, None)


def test_the_sample_is_seeded_and_nested():
    frame = pd.DataFrame({"conversation_id": [f"c{i}" for i in range(50)],
                          "call_index": [0] * 50})
    small = sample_calls(frame, 10, seed=3)
    large = sample_calls(frame, 20, seed=3)
    assert small["conversation_id"].tolist() == large["conversation_id"].head(10).tolist()
    shuffled = sample_calls(frame.sample(frac=1, random_state=1), 10, seed=3)
    assert shuffled["conversation_id"].tolist() == small["conversation_id"].tolist()
    assert sample_calls(frame, 10, seed=4)["conversation_id"].tolist() != (
        small["conversation_id"].tolist())


def test_the_trajectory_stops_at_the_message_that_made_the_call():
    call = {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": None, "tool_calls": [call, {**call, "id": "b"}]},
        {"role": "tool", "tool_call_id": "a", "content": "1"},
        {"role": "tool", "tool_call_id": "b", "content": "2"},
        {"role": "assistant", "content": None, "tool_calls": [{**call, "id": "c"}]},
        {"role": "tool", "tool_call_id": "c", "content": "3"},
    ]
    assert trajectory_to_call(messages, 1) == messages[:2]
    assert trajectory_to_call(messages, 2) == messages[:5]

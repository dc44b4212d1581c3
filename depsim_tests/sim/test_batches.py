"""The simulator's Files and Batches endpoints, driven by the real ``openai`` client."""

import json
import time

import openai
import pytest

from depsim_assets.sim import SimServer
from depsim_assets.sim.batches import parse_multipart
from depsim_assets.sim.faults import FaultPlan
from depsim_assets.taxonomy import load_taxonomy

DELAY = 0.4


@pytest.fixture(scope="module")
def server():
    with SimServer(faults=FaultPlan(batch_delay_s=DELAY)) as running:
        yield running


@pytest.fixture
def client(server):
    client = openai.OpenAI(base_url=server.base_url, api_key="sim", max_retries=0)
    client.post("/sim/stats/reset", cast_to=object, body={})
    return client


def _line(custom_id, body):
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body}


def _jsonl(lines) -> bytes:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()


def _wait(client, batch_id, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            return batch
        time.sleep(0.05)


def _results(client, file_id) -> dict:
    if file_id is None:
        return {}
    text = client.files.content(file_id).text
    return {line["custom_id"]: line for line in map(json.loads, text.splitlines())}


def _submit(client, lines):
    uploaded = client.files.create(file=("requests.jsonl", _jsonl(lines)), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )


def test_upload_round_trips_bytes_exactly(client):
    data = 'ünïcode "line"\r\nsecond\nthird\r\n\r\n'.encode() + bytes(range(256))
    uploaded = client.files.create(file=("raw.jsonl", data), purpose="batch")
    assert (uploaded.object, uploaded.purpose, uploaded.bytes) == ("file", "batch", len(data))
    assert uploaded.filename == "raw.jsonl" and uploaded.status == "processed"
    assert client.files.retrieve(uploaded.id).bytes == len(data)
    assert client.files.content(uploaded.id).content == data
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("x.jsonl", b"{}"), purpose="fine-tune")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-nope")
    stats = client.get("/sim/stats", cast_to=object)
    assert stats["files"] == {"uploaded": 1, "bytes": len(data)}


def test_multipart_parser_refuses_what_is_not_form_data():
    with pytest.raises(ValueError, match="multipart"):
        parse_multipart("application/json", b"{}")


def test_batch_answers_equal_online_answers(client):
    persona = [
        _line(
            f"p{i}",
            {
                "model": "sim-candidate-regressed",
                "seed": 100 + i,
                "max_tokens": 64,
                "messages": [{"role": "user", "content": f"Plan a trip, day {i}"}],
            },
        )
        for i in range(12)
    ]
    bad = _line("bad", {"model": "sim-candidate-regressed", "messages": []})
    batch = _submit(client, [*persona, bad])
    assert batch.status == "in_progress" and batch.output_file_id is None
    assert batch.request_counts.total == 13
    done = _wait(client, batch.id)
    assert done.status == "completed" and done.completed_at >= done.created_at
    assert (done.request_counts.completed, done.request_counts.failed) == (12, 1)
    output, errors = _results(client, done.output_file_id), _results(client, done.error_file_id)
    assert set(output) == {line["custom_id"] for line in persona} and set(errors) == {"bad"}
    tokens = 0
    for line in persona:
        online = client.chat.completions.create(**line["body"])
        got = output[line["custom_id"]]["response"]
        assert got["status_code"] == 200
        assert got["body"]["choices"][0]["message"]["content"] == online.choices[0].message.content
        assert got["body"]["usage"] == online.usage.model_dump(exclude_none=True)
        tokens += online.usage.total_tokens
    assert done.usage.total_tokens == tokens
    # A line the online handler refuses is refused the same way, into the error file.
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(**bad["body"])
    assert errors["bad"]["response"]["status_code"] == 400
    assert errors["bad"]["response"]["body"]["error"]["message"] in str(refused.value)
    assert errors["bad"]["error"]["code"] == "bad_messages"
    stats = client.get("/sim/stats", cast_to=object)
    assert stats["batches"] == {"created": 1, "completed": 1, "lines": 13}
    assert stats["total"] == 13  # the online calls above; batch lines are counted apart


def test_judge_lines_use_the_online_judge(client):
    token = "f00d"
    system = load_taxonomy().render_system_prompt(token, 2)
    user = (
        f"<<<BEGIN PREFIX {token}>>>\nuser: hi\n<<<END PREFIX {token}>>>\n"
        f"<<<BEGIN REPLY {token}>>>\nAccording to a 2019 study by Hartwell et al. in the "
        f"Journal of Applied Cognition, this works.\n<<<END REPLY {token}>>>"
    )
    schema = {"type": "object", "properties": {"fabricated_facts": {"type": "object"}}}
    body = {
        "model": "sim-judge",
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "g", "schema": schema}},
    }
    done = _wait(client, _submit(client, [_line("j", body)]).id)
    got = _results(client, done.output_file_id)["j"]["response"]["body"]
    online = client.chat.completions.create(**body)
    assert json.loads(got["choices"][0]["message"]["content"]) == json.loads(
        online.choices[0].message.content
    )


def test_invalid_input_fails_the_batch_with_line_errors(client):
    body = {"model": "sim-production", "messages": [{"role": "user", "content": "hi"}]}
    lines = [
        _line("a", body),
        _line("a", body),
        {**_line("c", body), "url": "/v1/embeddings"},
        "not an object",
    ]
    batch = _submit(client, lines)
    assert batch.status == "failed" and batch.failed_at is not None
    codes = {(e.line, e.code) for e in batch.errors.data}
    assert codes == {(2, "duplicate_custom_id"), (3, "invalid_url"), (4, "invalid_json_line")}
    mixed = _submit(client, [_line("a", body), _line("b", {**body, "model": "sim-judge"})])
    assert mixed.status == "failed" and mixed.errors.data[0].code == "mismatched_model"
    with pytest.raises(openai.BadRequestError, match="endpoint"):
        client.batches.create(
            input_file_id=batch.input_file_id, endpoint="/v1/embeddings", completion_window="24h"
        )
    with pytest.raises(openai.NotFoundError):
        client.batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
        )
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


def test_cancel_stops_a_running_batch_only(client):
    body = {"model": "sim-production", "messages": [{"role": "user", "content": "hi"}]}
    running = _submit(client, [_line("a", body)])
    cancelled = client.batches.cancel(running.id)
    assert cancelled.status == "cancelled" and cancelled.cancelled_at is not None
    time.sleep(DELAY + 0.1)
    after = client.batches.retrieve(running.id)
    assert after.status == "cancelled" and after.output_file_id is None
    finished = _wait(client, _submit(client, [_line("a", body)]).id)
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(finished.id)
    assert client.get("/sim/stats", cast_to=object)["batches"]["cancelled"] == 1


def test_line_faults_fail_or_lose_lines_deterministically():
    plan = "batch_delay_s=0,batch_fail=0.2,batch_drop=0.1,seed=5"
    lines = [
        _line(
            f"r{i}",
            {
                "model": "sim-production",
                "seed": i,
                "messages": [{"role": "user", "content": f"question {i}"}],
            },
        )
        for i in range(200)
    ]
    seen = []
    for _ in range(2):
        with SimServer(faults=FaultPlan.parse(plan)) as server:
            client = openai.OpenAI(base_url=server.base_url, api_key="sim", max_retries=0)
            done = _wait(client, _submit(client, lines).id)
            output = _results(client, done.output_file_id)
            errors = _results(client, done.error_file_id)
            faults = client.get("/sim/stats", cast_to=object)["faults"]
        assert not set(output) & set(errors)
        assert len(errors) == faults["batch_fail"] and 25 <= len(errors) <= 55
        assert 200 - len(output) - len(errors) == faults["batch_drop"] > 5
        assert {e["response"]["status_code"] for e in errors.values()} == {500}
        seen.append((sorted(output), sorted(errors)))
    assert seen[0] == seen[1]

"""Secrets: no API key reaches the registry file, the warehouse, the run log or the terminal.

Each secret path of issue 11 has a test that plants a fresh random key and then looks for its
VALUE everywhere depsim writes: every column of every warehouse table (as text), every file
under the home folder (the Dagster instance's event log included), the run log read back from
the instance, and everything printed.
"""

from __future__ import annotations

import json
import secrets as std_secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from aiohttp import web

from depsim_assets import config, runs
from depsim_assets.cli import main
from depsim_assets.endpoints import MAX_ERROR_CHARS, describe_error, display_endpoint
from depsim_assets.registry import RegistryError, parse_registry
from depsim_assets.secrets import find_secrets, scrub, secret_kind
from depsim_demo.synth import write_demo_log

DAY = "2026-11-18"


def fake_key() -> str:
    return f"sk-test-{std_secrets.token_hex(16)}"


def assert_nowhere(value: str, home: Path, *printed: str) -> None:
    """``value`` in no warehouse cell, no file under ``home``, no run log, no printed text."""
    for text in printed:
        assert value not in text
    warehouse = config.warehouse_path()
    if warehouse.exists():
        with duckdb.connect(str(warehouse), read_only=True) as conn:
            tables = conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
            ).fetchall()
            for (table,) in tables:
                columns = [row[0] for row in conn.execute(f'DESCRIBE "{table}"').fetchall()]
                for column in columns:
                    hits = conn.execute(
                        f'SELECT count(*) FROM "{table}" '
                        f'WHERE strpos(CAST("{column}" AS VARCHAR), ?) > 0',
                        [value],
                    ).fetchone()[0]
                    assert hits == 0, f"key found in {table}.{column}"
    # DuckDB compresses strings on disk, so its file is checked by SQL above, not by bytes.
    for path in home.rglob("*"):
        if path.is_file() and path != warehouse and not path.name.startswith(warehouse.name):
            assert value.encode() not in path.read_bytes(), f"key found in {path}"
    dagster_home = config.dagster_home()
    if (dagster_home / "dagster.yaml").exists():
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            for run in instance.get_runs():
                for entry in instance.all_logs(run.run_id):
                    assert value not in repr(entry), f"key found in the log of run {run.run_id}"


# ------------------------------------------------------------------------------ the shapes
@pytest.mark.parametrize(
    "value,kind",
    [
        ("sk-proj-" + "aB3" * 12, "openai_style_key"),
        ("sk-ant-api03-" + "xY9_" * 10, "anthropic_key"),
        ("hf_" + "Ab1" * 10, "huggingface_token"),
        ("gsk_" + "Qz7" * 10, "groq_key"),
        ("SG." + "a1" * 11 + "." + "B2" * 20, "sendgrid_key"),
        ("xoxb-1234567890-abcdefghij", "slack_token"),
        ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
        ("ghp_" + "a1B2" * 9, "github_token"),
        ("github_pat_" + "11AB" * 8, "github_token"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl", "jwt"),
        ("Bearer abc123def456ghi789", "bearer_token"),
        ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "high_entropy_token"),
        ("https://bob:hunter2@example.com/v1", "url_credentials"),
    ],
)
def test_key_shapes_are_recognised(value, kind):
    assert secret_kind(value) == kind
    assert value not in scrub(f"error: {value} was rejected")


@pytest.mark.parametrize(
    "value",
    [
        "wisk-couchbase-migrations-bucket",  # contains sk-, a bucket name
        "sk-learn-cheatsheet",  # no digit: a word, not a key
        "meta-llama/Meta-Llama-3.1-8B-Instruct",
        "hf.co/bartowski/Llama-3.2-3B-Instruct-GGUF",
        "Qwen2.5-Coder-32B-Instruct-AWQ",
        "MY_VERY_LONG_SERVICE_NAME_FOR_PRODUCTION_API_KEY",
        "/usr/lib/python3.11/site-packages/openai/_base_client.py",
        "The token budget was exceeded; basic settings apply",
        "max_tokens=512",
    ],
)
def test_ordinary_text_is_not_a_key(value):
    assert secret_kind(value) is None
    assert scrub(value) == value


def test_scrub_removes_known_values_whatever_their_shape(monkeypatch):
    password = "correct horse battery staple"  # no key shape at all
    assert scrub(f"login failed for {password}", known_values=[password]) == (
        "login failed for [redacted]"
    )
    monkeypatch.setenv("ACME_GATEWAY_TOKEN", "plain-words-as-token")
    assert "plain-words-as-token" not in scrub("echo: plain-words-as-token")


def test_scrub_strips_url_credentials_and_token_parameters():
    text = "GET https://alice:s3cr3t-pass@gw.example.com/v1/models?api-key=abc123xyz&x=1"
    out = scrub(text)
    assert "s3cr3t-pass" not in out and "alice" not in out and "abc123xyz" not in out
    assert "gw.example.com/v1/models" in out and "x=1" in out
    assert display_endpoint("https://alice:pw@gw.example.com:8443/v1?key=k#f") == (
        "https://gw.example.com:8443/v1"
    )


def test_find_secrets_walks_every_level_and_names_the_path():
    params = {
        "temperature": 0.2,
        "max_tokens": 64,
        "stop_token_ids": [1, 2],
        "extra_headers": {"X-Org": "acme", "Authorization": "Bearer x"},
        "extra_body": {"options": [{"note": "sk-test-0123456789abcdef0123"}]},
        "extra_query": {"api-version": "2024-06-01"},
    }
    found = dict(find_secrets(params, "params"))
    assert set(found) == {"params.extra_headers.Authorization",
                          "params.extra_body.options[0].note"}


def test_describe_error_keeps_the_whole_text_scrubbed_and_capped(monkeypatch):
    key = fake_key()
    monkeypatch.setenv("SOME_PROVIDER_KEY", key)
    exc = RuntimeError(
        "Error code: 500 - 1 validation error:\nresponse_format.type\n  Input should be "
        f"'text' or 'json_object' (headers seen: Authorization: Bearer {key})"
    )
    text = describe_error(exc)
    assert key not in text
    assert "Input should be 'text' or 'json_object'" in text  # the part that says why
    assert "\n" not in text
    long = describe_error(RuntimeError("x" * 10_000))
    assert len(long) <= MAX_ERROR_CHARS


# ----------------------------------------------------------------- refused before writing
def _refused(capsys, argv: list[str], home: Path, key: str) -> str:
    assert main(argv) == 2
    out = capsys.readouterr()
    assert out.out == ""
    err = out.err.strip()
    assert err.startswith("depsim: error:") and "\n" not in err
    assert_nowhere(key, home, out.out, out.err)
    return err


def test_key_in_extra_headers_is_refused(depsim_home, capsys):
    key = fake_key()
    header = json.dumps({"Authorization": f"Bearer {key}", "X-Org": "acme"})
    err = _refused(
        capsys,
        ["candidates", "add", "c1", "--base-url", "sim", "--param", f"extra_headers={header}"],
        depsim_home,
        key,
    )
    assert "params.extra_headers.Authorization" in err and "api_key_env" in err
    assert not config.registry_path().exists()
    # The same entry written by hand is refused on every read, also without an echo.
    text = (
        "candidates:\n  - name: c1\n    base_url: sim\n    model: m\n    params:\n"
        f"      extra_headers: {{X-Custom: {key}}}\n"
    )
    with pytest.raises(RegistryError) as refused:
        parse_registry(text, where="candidates.yaml")
    assert key not in str(refused.value)
    assert "params.extra_headers.X-Custom looks like a secret" in str(refused.value)


@pytest.mark.parametrize(
    "param",
    [
        "api_key={key}",
        'extra_body={{"auth": {{"nested": [{{"password": "{key}"}}]}}}}',
        'extra_query={{"note": "{key}"}}',
        'default_headers={{"x-goog-api-key": "{key}"}}',
    ],
)
def test_nested_param_key_is_refused(depsim_home, capsys, param):
    key = fake_key()
    argv = ["candidates", "add", "c1", "--base-url", "sim", "--param", param.format(key=key)]
    err = _refused(capsys, argv, depsim_home, key)
    assert "refused" in err and "api_key_env" in err
    assert not config.registry_path().exists()


@pytest.mark.parametrize("env_value", ["{key}", "sk_live_{hex}", "gsk_{hex}", "{hex}{hex}"])
def test_key_pasted_into_api_key_env_is_refused_without_echo(depsim_home, capsys, env_value):
    key = fake_key()
    value = env_value.format(key=key, hex=std_secrets.token_hex(12))
    argv = ["candidates", "add", "c1", "--base-url", "sim", "--api-key-env", value]
    err = _refused(capsys, argv, depsim_home, value)
    assert "NAME of an environment variable" in err
    with pytest.raises(RegistryError) as refused:
        parse_registry(f"candidates:\n  - {{name: c1, base_url: sim, model: m, "
                       f"api_key_env: '{value}'}}\n")
    assert value not in str(refused.value)


def test_key_pasted_as_the_candidate_name_is_refused_without_echo(depsim_home, capsys):
    key = fake_key()
    err = _refused(capsys, ["candidates", "add", key, "--base-url", "sim"], depsim_home, key)
    assert "looks like a secret" in err


def test_candidates_list_shows_no_url_credentials(depsim_home, capsys):
    key = fake_key()
    config.registry_path().write_text(
        "baseline: gw\ncandidates:\n"
        f"  - {{name: gw, base_url: 'https://svc:{key}@127.0.0.1:9/v1?token={key}', model: m}}\n"
    )
    assert main(["candidates", "list"]) == 0
    text = capsys.readouterr().out
    assert "https://127.0.0.1:9/v1" in text
    assert main(["candidates", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["candidates"][0]["base_url"] == "https://127.0.0.1:9/v1"
    assert key not in text and key not in json.dumps(listed)
    assert "svc" not in text


# ------------------------------------------------------- an endpoint that echoes the key
class EchoServer:
    """An OpenAI-compatible endpoint on 127.0.0.1 that echoes the request's Authorization
    header in its error body, as some gateways do. ``/half/v1`` fails every other request;
    ``/all/v1`` fails every request."""

    def __init__(self) -> None:
        self.count = 0
        self.port = 0
        self._ready = threading.Event()
        self._loop = None
        self._runner: web.AppRunner | None = None

    async def _chat(self, request: web.Request) -> web.Response:
        self.count += 1
        mode = request.match_info["mode"]
        if mode == "all" or self.count % 2 == 0:
            body = (
                "1 validation error:\n"
                f"headers: Authorization: {request.headers.get('Authorization')}\n"
                "  Input should be 'text' or 'json_object' "
                "[type=literal_error, input_value='json_schema']"
            )
            return web.Response(status=500, text=body)
        return web.json_response(
            {
                "id": f"echo-{self.count}",
                "object": "chat.completion",
                "created": 0,
                "model": "echo",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "A plain reply."},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
            }
        )

    def _serve(self) -> None:
        import asyncio

        async def start() -> None:
            app = web.Application()
            app.router.add_post("/{mode}/v1/chat/completions", self._chat)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # noqa: SLF001
            self._ready.set()

        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(start())
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    def __enter__(self) -> EchoServer:
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}/v1"


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.mark.slow  # Dagster runs
def test_endpoint_that_echoes_the_key_leaves_no_trace(depsim_home, capfd, monkeypatch,
                                                      echo_server):
    key = fake_key()
    # A variable name that does not say "key": the value is scrubbed because it is in use.
    monkeypatch.setenv("ECHO_GATEWAY_CRED", key)
    # A tiny day, and half the calls failing on purpose: the checks must not stop the run.
    monkeypatch.setenv("DEPSIM_MIN_SAMPLE", "1")
    monkeypatch.setenv("DEPSIM_MAX_ERROR_SHARE", "1")
    write_demo_log(config.log_root(), [DAY], per_day=60)
    assert main(["sample", "--date", DAY, "--size", "6"]) == 0
    for name, mode in (("echo-half", "half"), ("echo-all", "all")):
        assert main(["candidates", "add", name, "--base-url", echo_server.url(mode),
                     "--api-key-env", "ECHO_GATEWAY_CRED", "--max-retries", "0"]) == 0
    instance = dg.DagsterInstance.get()  # the CLI's instance (DAGSTER_HOME under the home)
    runs.execute(
        [runs.PlannedRun("echo-half", ("candidate_completions",), f"echo-half|{DAY}")], instance
    )
    with pytest.raises(runs.RunFailed) as failed:
        runs.execute(
            [runs.PlannedRun("echo-all", ("candidate_completions",), f"echo-all|{DAY}")],
            instance,
        )
    assert key not in str(failed.value)
    assert "Input should be 'text' or 'json_object'" in str(failed.value)
    with duckdb.connect(str(config.warehouse_path()), read_only=True) as conn:
        errors = conn.execute(
            "SELECT error FROM candidate_completions WHERE candidate = 'echo-half' "
            "AND status = 'error'"
        ).fetchall()
        ok = conn.execute(
            "SELECT count(*) FROM candidate_completions WHERE candidate = 'echo-half' "
            "AND status = 'ok'"
        ).fetchone()[0]
        stored_errors = conn.execute(
            "SELECT count(*) FROM model_calls WHERE status = 'error'"
        ).fetchone()[0]
    assert errors and ok, "the endpoint answered every other request"
    assert stored_errors >= len(errors)
    # The whole error is kept (the why after the first line), with the key scrubbed out.
    assert all("Input should be 'text' or 'json_object'" in e for (e,) in errors)
    assert all("Authorization: Bearer [redacted]" in e for (e,) in errors)
    printed = capfd.readouterr()
    assert_nowhere(key, depsim_home, printed.out, printed.err)
    assert echo_server.count >= 6

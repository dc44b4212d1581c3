"""Fixtures that serve a real small model (SmolLM2-135M-Instruct, GGUF from PyPI) on loopback.

Two real OpenAI-compatible servers, neither written here: llama.cpp's ``llama-server``
(``native``: takes ``response_format`` json_schema) and llama-cpp-python's server
(``python``: refuses json_schema with HTTP 500, takes json_object with a schema). Each is
started once per session by ``scripts/llama_server.sh``; when its build is not in the cache
yet, the fixture builds it (minutes, once per machine) rather than skip: a skipped test would
hide exactly the gap these tests exist to close.
"""

from __future__ import annotations

import pytest

from depsim_tests.real_model import servers


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "real_model: runs a real small model (llama.cpp / llama-cpp-python on loopback)",
    )


def _serve(flavour: str, tmp_path_factory):
    log = tmp_path_factory.mktemp(f"llama-{flavour}") / "server.log"
    server = servers.start(flavour, log)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def native_server(tmp_path_factory):
    """llama.cpp's ``llama-server`` serving SmolLM2 (two 8k slots, two threads)."""
    yield from _serve("native", tmp_path_factory)


@pytest.fixture(scope="session")
def python_server(tmp_path_factory):
    """llama-cpp-python's server serving SmolLM2 (one 8k context, two threads)."""
    yield from _serve("python", tmp_path_factory)

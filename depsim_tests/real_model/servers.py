"""Real local model servers for the tests: build (once per machine), start, wait, stop.

All building and the server command lines live in ``scripts/llama_server.sh``, the one
source of truth that ``.ci/run`` and a user call too; this module only runs it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "llama_server.sh"
FLAVOURS = ("native", "python")
# The name each server answers to (``--alias`` / ``--model_alias`` in the script).
MODEL = "smollm2"
CONTEXT_WINDOW = 8192
# A cold build of llama.cpp takes minutes on two busy cores; a cached one returns at once.
BUILD_TIMEOUT_S = 3600
READY_TIMEOUT_S = 300


class ServerError(RuntimeError):
    """A server could not be built or did not come up; the message says why."""


def ensure_built(flavour: str) -> None:
    """Build what ``flavour`` needs (model included) unless the cache already has it."""
    done = subprocess.run(
        ["bash", str(SCRIPT), "build", flavour],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False,
    )
    if done.returncode != 0:
        raise ServerError(f"building the {flavour} server failed:\n{done.stderr[-4000:]}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    flavour: str
    port: int
    proc: subprocess.Popen
    log_path: Path

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """End the server's whole process group (the script execs the server in it)."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        except ProcessLookupError:
            pass


def start(flavour: str, log_path: Path, *extra: str) -> Server:
    """Start ``flavour`` on a free loopback port and wait until it answers."""
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour {flavour!r}: expected one of {FLAVOURS}")
    ensure_built(flavour)
    port = free_port()
    log = open(log_path, "wb")  # noqa: SIM115 - the server writes to it until stopped
    proc = subprocess.Popen(
        ["bash", str(SCRIPT), "serve", flavour, str(port), *extra],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: stop() ends it and nothing else
    )
    log.close()
    server = Server(flavour, port, proc, log_path)
    # llama-server answers /health 503 while loading, 200 when ready; llama-cpp-python has no
    # /health, and answers /v1/models once the model is loaded.
    probe = f"{server.root}/health" if flavour == "native" else f"{server.base_url}/models"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"the {flavour} server exited with {proc.returncode}:\n"
                              f"{server.log_tail()}")
        try:
            if httpx.get(probe, timeout=5).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.stop()
    raise ServerError(f"the {flavour} server was not ready in {READY_TIMEOUT_S} s:\n"
                      f"{server.log_tail()}")

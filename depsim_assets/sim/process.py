"""The simulator in its own process (``depsim sim serve``): its CPU is not the caller's.

Used by the benchmarks and by tests that need the client and the server on separate cores,
or a request counter that outlives the caller's process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SimProcess:
    """``depsim sim serve --faults SPEC`` on a free loopback port, in its own process group."""

    def __init__(self, faults: str = "", *, startup_s: float = 30.0):
        self.port = free_port()
        cmd = [sys.executable, "-m", "depsim_assets.cli", "sim", "serve", "--port",
               str(self.port)]
        if faults:
            cmd += ["--faults", faults]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        deadline = time.monotonic() + startup_s
        while True:
            try:
                urllib.request.urlopen(self.base_url + "/models", timeout=1).read()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise RuntimeError(f"simulator did not start: {' '.join(cmd)}") from None
                time.sleep(0.2)

    def stats(self) -> dict[str, Any]:
        """The simulator's counters (``/v1/sim/stats``): requests in total, by model, faults."""
        with urllib.request.urlopen(self.base_url + "/sim/stats", timeout=10) as resp:
            return json.load(resp)

    def close(self) -> None:
        """Stop the server and anything it started (its whole process group)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

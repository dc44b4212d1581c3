"""Throwaway PostgreSQL and Redis servers for tests, benchmarks and ``scripts/cluster.sh``.

Nothing is pre-started on a fresh machine, so whatever needs a server starts its own here, on
a free loopback port, and stops it afterwards::

    pg = start_postgres(tmp_path)      # initdb + postgres; pg.url = postgresql://depsim@127.0.0.1:PORT/depsim
    redis = start_redis(tmp_path)      # redis-server; redis.url = redis://127.0.0.1:PORT/0
    ...
    redis.stop(); pg.stop()

Each server runs in its own process group (``start_new_session``), so ``stop()`` reaches it
and anything it forked; it stops with the server's own fast-shutdown signal (SIGINT for
postgres, SIGTERM for redis), then SIGKILL after a grace period. A missing binary or a server
that does not come up is one :class:`ServiceError` line (with the end of the server's log).

PostgreSQL refuses to run as root, so as root its binaries run as the ``postgres`` system user
(``runuser``), with a data folder that user owns. pytest's ``tmp_path`` lives under a 0700
folder of root's, so in that case the data folder goes to a private folder under the system
temporary directory instead (removed by ``stop()`` unless ``keep=True``).

Binaries: ``$DEPSIM_PG_BIN`` (a folder with ``initdb`` and ``postgres``), else the newest
``/usr/lib/postgresql/<N>/bin`` (Debian), else ``PATH``; ``redis-server`` from ``PATH``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PG_BIN_ENV = "DEPSIM_PG_BIN"
PG_USER = "depsim"  # the superuser initdb creates; trust auth on loopback only
PG_DATABASE = "depsim"
START_TIMEOUT_S = 60.0
STOP_GRACE_S = 15.0


class ServiceError(RuntimeError):
    """A server could not be found or started; the message is one line for a user."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's pick; a server started right after
    gets it unless another process takes it first, which start-up retries cover)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_group(proc: subprocess.Popen[bytes], sig: int, grace_s: float = STOP_GRACE_S) -> None:
    """Send ``sig`` to ``proc``'s process group, wait, then SIGKILL whatever is left."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
    # The leader may be gone while children of the group are not (runuser's child).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace_s)


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


# -- PostgreSQL ------------------------------------------------------------------------------


def pg_bin_dir() -> Path:
    """The folder holding ``initdb``/``postgres`` (see the module docstring)."""
    override = os.environ.get(PG_BIN_ENV, "").strip()
    candidates: list[Path] = [Path(override)] if override else []
    debian = Path("/usr/lib/postgresql")
    if not override and debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.isdigit() and (p / "bin").is_dir()]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: -int(p.name))]
    if not override and (found := shutil.which("initdb")):
        candidates.append(Path(found).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    where = override or "/usr/lib/postgresql/*/bin or PATH"
    raise ServiceError(
        f"PostgreSQL's initdb and postgres were not found in {where}; install Debian's "
        f"postgresql package (apt-get install postgresql) or set {PG_BIN_ENV}"
    )


def _as_root() -> bool:
    return os.geteuid() == 0


def _as_postgres(argv: list[str]) -> list[str]:
    """``argv`` as the ``postgres`` system user when we are root (postgres refuses root)."""
    if not _as_root():
        return argv
    if shutil.which("runuser") is None:
        raise ServiceError("running as root needs runuser (util-linux) to start PostgreSQL")
    return ["runuser", "-u", "postgres", "--", *argv]


def _reachable_by_postgres(folder: Path, *, write: bool = True) -> bool:
    """Whether the ``postgres`` user can enter ``folder`` (and create files in it)."""
    test = ["test", "-x", str(folder)] + (["-a", "-w", str(folder)] if write else [])
    probe = subprocess.run(
        _as_postgres(test),
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def _data_folder(tmp_dir: Path, keep: bool) -> tuple[Path, Path | None]:
    """Where the cluster's files go, and a private folder to remove on stop (or None)."""
    wanted = tmp_dir / "postgres"
    if not _as_root():
        return wanted, None
    if wanted.exists() or _reachable_by_postgres(tmp_dir, write=False):
        wanted.mkdir(exist_ok=True)
        shutil.chown(wanted, "postgres", "postgres")
        wanted.chmod(0o700)
        if _reachable_by_postgres(wanted):
            return wanted, None
    if keep:
        raise ServiceError(
            f"the postgres system user cannot reach {tmp_dir} (a parent folder is private); "
            "choose a folder every user can traverse"
        )
    private = Path(tempfile.mkdtemp(prefix="depsim-pg-"))
    shutil.chown(private, "postgres", "postgres")
    return private / "postgres", private


@dataclass
class PgServer:
    """A running PostgreSQL cluster. ``url`` names database ``depsim`` as superuser
    ``depsim`` over TCP on 127.0.0.1 (trust authentication, loopback only)."""

    url: str
    port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    keep: bool = False
    _private: Path | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def database(self, name: str) -> str:
        """The URL of database ``name`` on this server, created when it does not exist."""
        _ensure_database(pg_bin_dir(), self.port, name)
        return f"{self.url.rsplit('/', 1)[0]}/{name}"

    def stop(self) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, close connections) of the
        process group; removes the data unless ``keep``."""
        _stop_group(self.process, signal.SIGINT)
        if not self.keep:
            shutil.rmtree(self._private or self.data_dir, ignore_errors=True)


def start_postgres(tmp_dir: str | os.PathLike[str], *, keep: bool = False) -> PgServer:
    """Start PostgreSQL with its data under ``tmp_dir`` (see the module docstring), on a free
    port, with a database ``depsim``; returns once it accepts connections.

    With ``keep`` an existing cluster there is started again (no ``initdb``) and ``stop()``
    leaves the data in place: what ``scripts/cluster.sh`` uses for a home folder.
    """
    bin_dir = pg_bin_dir()
    tmp = Path(tmp_dir)
    tmp.mkdir(parents=True, exist_ok=True)
    data, private = _data_folder(tmp, keep)
    log_path = (private or tmp) / "postgres.log"
    fresh = not (data / "PG_VERSION").exists()
    if fresh:
        data.mkdir(exist_ok=True)
        if _as_root():
            shutil.chown(data, "postgres", "postgres")
        init = subprocess.run(
            _as_postgres([
                str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust",
                "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync",
            ]),
            capture_output=True,
            text=True,
            check=False,
        )
        if init.returncode != 0:
            detail = (init.stderr or init.stdout).strip().splitlines()[-1:] or ["no output"]
            raise ServiceError(f"initdb failed in {data}: {detail[0]}")
    if _as_root():
        # The log is written by the server's own user.
        log_path.touch()
        shutil.chown(log_path, "postgres", "postgres")
    last = ""
    for _ in range(3):  # another process may take the free port first
        port = free_port()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                _as_postgres([
                    str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
                    "-c", "listen_addresses=127.0.0.1",
                    # The socket beside the data: /var/run/postgresql may not exist or be ours.
                    "-c", f"unix_socket_directories={data}",
                    # Throwaway servers: durability buys nothing and costs fsyncs.
                    "-c", "fsync=off", "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off",
                    # Dagster's daemon, webserver, runs and Celery workers each hold a pool.
                    "-c", "max_connections=200",
                ]),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if _wait_postgres(bin_dir, port, proc):
            server = PgServer(
                url=f"postgresql://{PG_USER}@127.0.0.1:{port}/{PG_DATABASE}",
                port=port, data_dir=data, log_path=log_path, process=proc, keep=keep,
                _private=private,
            )
            try:
                _ensure_database(bin_dir, port)
            except ServiceError:
                server.stop()
                raise
            return server
        _stop_group(proc, signal.SIGINT, grace_s=5)
        last = _log_tail(log_path)
    if private is not None:
        shutil.rmtree(private, ignore_errors=True)
    raise ServiceError(f"PostgreSQL did not start (log {log_path}): {last or 'no output'}")


def _wait_postgres(bin_dir: Path, port: int, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        ready = subprocess.run(
            [str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
            check=False,
        )
        if ready.returncode == 0:
            return True
        time.sleep(0.2)
    return False


def _ensure_database(bin_dir: Path, port: int, name: str = PG_DATABASE) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"database names here are lower-case identifiers, got {name!r}")
    exists = subprocess.run(
        [str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER, "-d",
         "postgres", "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
        capture_output=True, text=True, check=False,
    )
    if exists.stdout.strip() == "1":
        return
    made = subprocess.run(
        [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER, name],
        capture_output=True, text=True, check=False,
    )
    if made.returncode != 0:
        raise ServiceError(f"createdb {name} failed: {made.stderr.strip()}")


# -- Redis -----------------------------------------------------------------------------------


@dataclass
class RedisServer:
    """A running ``redis-server`` on 127.0.0.1 without persistence; ``url`` is database 0."""

    url: str
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        _stop_group(self.process, signal.SIGTERM)


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise ServiceError(
            "redis-server was not found on PATH; install Debian's redis-server package "
            "(apt-get install redis-server)"
        )
    return found


def start_redis(tmp_dir: str | os.PathLike[str]) -> RedisServer:
    """Start ``redis-server`` on a free port (its log and working folder under ``tmp_dir``);
    returns once it answers PING."""
    binary = redis_binary()
    tmp = Path(tmp_dir)
    folder = tmp / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "redis.log"
    last = ""
    for _ in range(3):
        port = free_port()
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                 # A broker of throwaway tasks: no snapshots, no append-only file.
                 "--save", "", "--appendonly", "no", "--daemonize", "no",
                 "--protected-mode", "yes"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if _wait_redis(port, proc):
            return RedisServer(
                url=f"redis://127.0.0.1:{port}/0", port=port, log_path=log_path, process=proc
            )
        _stop_group(proc, signal.SIGTERM, grace_s=5)
        last = _log_tail(log_path)
    raise ServiceError(f"redis-server did not start (log {log_path}): {last or 'no output'}")


def _wait_redis(port: int, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


# -- pytest fixtures -------------------------------------------------------------------------


@pytest.fixture
def postgres_server(tmp_path: Path) -> Iterator[PgServer]:
    """A throwaway PostgreSQL for one test (stopped and removed after it)."""
    server = start_postgres(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A throwaway Redis for one test."""
    server = start_redis(tmp_path)
    try:
        yield server
    finally:
        server.stop()

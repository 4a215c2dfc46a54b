"""A real PostgreSQL server for the tests: Debian's binaries, a throwaway cluster, 127.0.0.1 only.

``pg_server`` (session) runs ``initdb`` into a temporary directory and ``pg_ctl start`` on a
free port with its socket in that directory; ``pg_database`` gives each test a fresh database;
``store_url`` parametrizes a test over SQLite and PostgreSQL. PostgreSQL refuses to run as
root, so under root the server runs as the ``postgres`` OS user. Missing binaries fail the
tests with the command that installs them (they are never skipped silently).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

INSTALL_HINT = "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb); run `make system-deps`"


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: [int(x) for x in Path(p).parent.parent.name.split(".") if x.isdigit()])
    if not found:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """One cluster; ``stop()``/``start()`` may be called in tests to simulate an outage."""

    def __init__(self, root: Path) -> None:
        self.bindir = _bindir()
        self.root = root
        self.datadir = root / "data"
        self.sockdir = root / "sock"
        self.logfile = root / "server.log"
        self.port = _free_port()
        self._as_user: list[str] = []
        self.sockdir.mkdir(parents=True)
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(root, "postgres")
            shutil.chown(self.sockdir, "postgres")
            os.chmod(root, 0o755)
        self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--locale=C")
        self.start()
        self._names = itertools.count(1)

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(self._as_user + [str(self.bindir / tool), *args], capture_output=True, text=True,
                              timeout=120)
        if check and proc.returncode != 0:
            log = self.logfile.read_text()[-3000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{tool} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}")
        return proc

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        # fsync off: tests kill server processes, never the OS, so committed data survives anyway.
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.sockdir}"
                   " -c fsync=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "start", "-D", str(self.datadir), "-l", str(self.logfile), "-o", options, "-w",
                  "-t", "60")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "stop", "-D", str(self.datadir), "-m", mode, "-w", "-t", "60", check=False)

    def create_database(self) -> str:
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


@pytest.fixture(scope="session")
def pg_server():
    # Not under pytest's basetemp: other pytest runs on this machine prune old basetemps, and
    # the postgres user needs a path it can traverse (pytest's is private to root).
    root = Path(tempfile.mkdtemp(prefix="ivr-pg-"))
    try:
        server = PostgresServer(root)
        try:
            yield server
        finally:
            server.stop("immediate")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_database(pg_server):
    url = pg_server.create_database()
    yield url
    pg_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """The same store test against a SQLite file and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'ivr.sqlite3'}"
    else:
        yield request.getfixturevalue("pg_database")

"""Debian's nginx in front of ivr instances, with deploy/nginx/ivr-locations.conf exactly as
shipped: the deploy tests and the load test both go through it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

LOCATIONS = Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "ivr-locations.conf"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
    if not found:
        pytest.fail("nginx not found; run `make system-deps` (Debian's nginx)", pytrace=False)
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx with a generated config that includes ivr-locations.conf exactly as shipped."""

    def __init__(self, prefix: Path, upstream_ports: list[int], *, worker_connections: int = 64, balance: str = ""):
        self.binary = nginx_binary()
        self.port = _free_port()
        prefix.mkdir(parents=True, exist_ok=True)
        servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=0;" for p in upstream_ports)
        # max_fails=0: no server is taken out after a failure, so round robin alternates and
        # every other request meets the failing server first.
        temp = "\n".join(f"    {d}_temp_path {prefix}/{d};" for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(f"""
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
{temp}
    upstream ivr_upstream {{
{balance + ';' if balance else ''}
{servers}
    }}
    server {{
        listen 127.0.0.1:{self.port};
        include {LOCATIONS};
    }}
}}
""")
        self.prefix = prefix
        check = subprocess.run([self.binary, "-t", "-p", str(prefix), "-c", str(self.conf)],
                               capture_output=True, text=True, timeout=30)
        assert check.returncode == 0, f"nginx -t:\n{check.stderr}"
        self.proc = subprocess.Popen([self.binary, "-p", str(prefix), "-c", str(self.conf), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                assert self.proc.poll() is None, f"nginx exited: {self.proc.stderr.read().decode()}"
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

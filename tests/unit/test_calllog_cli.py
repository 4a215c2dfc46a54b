"""`ivr calls list|show|tail` against the database named by IVR_DATABASE_URL (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ivr.calllog.show import tail
from ivr.calllog.store import open_store

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def _ivr(store_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IVR_")}
    env.update(IVR_DATABASE_URL=store_url, PYTHONPATH=str(REPO_ROOT))
    return subprocess.run([sys.executable, "-m", "ivr.tools.cli", "calls", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_list_and_show_from_the_database_url(store, store_url, tmp_path):
    store.start_call("CA-cli-1", flow="bank", flow_version="7", caller="+1555")
    store.add_event("CA-cli-1", "transcript", {"text": "check my balance"})
    store.end_call("CA-cli-1", "completed")
    store.start_call("CA-cli-2", flow="orders", flow_version="1")
    assert store.flush()

    listed = _ivr(store_url, tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    assert "CA-cli-1" in listed.stdout and "CA-cli-2" in listed.stdout and "in progress" in listed.stdout
    only = _ivr(store_url, tmp_path, "list", "--flow", "bank")
    assert "CA-cli-1" in only.stdout and "CA-cli-2" not in only.stdout
    said = _ivr(store_url, tmp_path, "list", "--search", "BALANCE", "--caller", "555")
    assert "CA-cli-1" in said.stdout and "CA-cli-2" not in said.stdout, said.stderr

    shown = _ivr(store_url, tmp_path, "show", "CA-cli-1")
    assert shown.returncode == 0, shown.stderr
    assert "flow bank v7" in shown.stdout and "check my balance" in shown.stdout
    missing = _ivr(store_url, tmp_path, "show", "CA-nope")
    assert missing.returncode == 1 and "no call" in missing.stderr
    assert not (tmp_path / "data").exists() or store_url.startswith("sqlite")  # no stray SQLite file


def test_tail_prints_only_new_events(store):
    store.start_call("old", flow="f", flow_version="1")
    store.add_event("old", "dtmf", {"digits": "1"})
    assert store.flush()
    lines: list[str] = []
    done = threading.Event()
    t = threading.Thread(target=tail, args=(store,), kwargs={"interval": 0.05, "out": lines.append, "stop": done.is_set})
    t.start()
    try:
        time.sleep(0.3)
        store.add_event("old", "dtmf", {"digits": "2"})
        store.start_call("new", flow="f", flow_version="1")
        store.add_event("new", "transcript", {"text": "hello"})
        assert store.flush()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(lines) < 3:
            time.sleep(0.05)
    finally:
        done.set()
        t.join(5)
    assert len(lines) == 3, lines
    assert "digits=2" in lines[0] and "digits=1" not in "".join(lines)
    assert any("call_start" in line for line in lines) and any("hello" in line for line in lines)

"""`make loadtest`: 20 simulated calls at once, across two `ivr serve` instances behind Debian's
nginx (deploy/nginx/ivr-locations.conf as shipped), on one PostgreSQL, all started here, on
loopback only.

Checked: every call completes (the caller hears the greeting and a reply to every turn, and the
call is ended in the call log); both instances took calls; every call's events are in
PostgreSQL once each, numbered 1..N without a gap, from call_start to call_end. Reported:
voice-to-voice p50/p95, the calls per instance, and how many calls went through the nodes their
script should reach (at ten calls per 2-core instance a short "yes" is sometimes transcribed
as nothing, and that call waits for the no-input prompt: a floor of 3/4 is asserted).

Not part of `make test` (it saturates the machine for a few minutes): `make loadtest`.
Bounded: 20 calls, and a deadline for the whole run.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import sys
import time
from pathlib import Path


from ivr.bench.calls import CallScript, caller_voice, passes_through, scripts_for
from ivr.bench.scoring import percentile
from ivr.calllog.store import open_store
from ivr.tools.simulate import CallerSimulator, SimulationReport
from tests.integration.procs import ServerProcess, free_port
from tests.nginx import Nginx

REPO = Path(__file__).resolve().parents[2]
CALLS = int(os.environ.get("IVR_LOADTEST_CALLS", "20"))
DEADLINE_S = 600
AUTH_TOKEN = "loadtest-token"


class Instance(ServerProcess):
    def __init__(self, name: str, tmp: Path, database_url: str, secret: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data = tmp / name
        data.mkdir()
        env = {**os.environ, "TWILIO_AUTH_TOKEN": AUTH_TOKEN, "IVR_DATA_DIR": str(data),
               "IVR_DATABASE_URL": database_url, "IVR_SECRET": secret, "IVR_DASHBOARD_TOKEN": "loadtest",
               "IVR_MAX_CALLS": str(CALLS), "PYTHONUNBUFFERED": "1"}
        super().__init__(name, [sys.executable, "-m", "ivr.tools.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                         log_path=data / "server.log", ready_url=self.url + "/healthz", env=env, cwd=REPO)


def test_twenty_calls_across_two_instances_behind_nginx(pg_server, pg_database, tmp_path):
    scripts = scripts_for(CALLS, seed=11)
    voice = caller_voice(scripts)
    secret = secrets.token_urlsafe(24)  # shared: a stream token signed by one instance is checked by the other
    instances = [Instance(f"ivr{i}", tmp_path, pg_database, secret) for i in (1, 2)]
    proxy = None
    reader = open_store(pg_database, recover=False)
    try:
        for inst in instances:
            inst.wait_ready(600)
        # least_conn, as deploy/nginx/nginx.conf: with round robin, each call's webhook and websocket
        # alternate, so a burst sends every websocket to the same instance.
        proxy = Nginx(tmp_path / "nginx", [inst.port for inst in instances], worker_connections=1024,
                      balance="least_conn")
        started = time.time()
        results = asyncio.run(asyncio.wait_for(_calls(proxy.base, voice, scripts), DEADLINE_S))
        wall = time.time() - started

        spoken, failures = [], []
        for script, report in results:
            if not isinstance(report, SimulationReport):
                failures.append(f"{script.name}: {report!r}")
                continue
            if not report.greeting:
                failures.append(f"{script.name} {report.call_sid}: no greeting")
            for turn in report.turns:
                if turn.latency_ms is None:
                    failures.append(f"{script.name} {report.call_sid}: no reply to {turn.step}")
                elif turn.step.kind != "dtmf":
                    spoken.append(turn.latency_ms)
        assert not failures, "\n".join(failures)

        reports = [r for _, r in results]
        calls = _wait_ended(reader, [r.call_sid for r in reports])
        followed = 0
        for (script, report), call in zip(results, calls):
            assert call is not None and call["outcome"], f"{report.call_sid} never ended in the call log"
            events = call["events"]
            seqs = [e["seq"] for e in events]
            assert seqs == list(range(1, len(events) + 1)), f"{report.call_sid}: seqs {seqs}"
            assert events[0]["type"] == "call_start" and events[-1]["type"] == "call_end"
            assert sum(e["type"] == "call_end" for e in events) == 1
            nodes = [e["data"].get("node") for e in events if e["type"] == "node"]
            if passes_through(nodes, script.expect):
                followed += 1
            else:
                print(f"\n{script.name} {report.call_sid} went {' > '.join(nodes)}")
        assert followed >= 0.75 * len(results), f"only {followed}/{len(results)} calls followed their script"
        logs = [inst.log(2_000_000) for inst in instances]
        # The webhook and the media websocket of one call may go to different instances (that is
        # the point of keeping no state): a call is where its media stream ran.
        took = [sum(f"call {r.call_sid}: media stream" in log for r in reports) for log in logs]
        assert all(took), f"an instance took no call: {took}"
        print(f"\nloadtest: {len(reports)} calls at once through nginx to 2 instances, {wall:.0f} s; "
              f"media streams per instance {took}; spoken turns {len(spoken)}: voice-to-voice p50 "
              f"{percentile(spoken, 50):.0f} ms, p95 {percentile(spoken, 95):.0f} ms, max {max(spoken):.0f} ms; "
              f"events {sum(len(c['events']) for c in calls)}, each once; {followed}/{len(results)} calls followed their script")
    finally:
        if proxy is not None:
            proxy.stop()
        for inst in instances:
            inst.stop()
        reader.close()


async def _calls(base: str, voice, scripts: list[CallScript]):
    rng = random.Random(11)

    async def one(script: CallScript, delay: float):
        await asyncio.sleep(delay)  # arrivals spread over a few seconds, as a busy line's are
        sim = CallerSimulator(base, voice=voice, auth_token=AUTH_TOKEN, flow="customer_service", reply_timeout=90)
        try:
            return script, await sim.run(list(script.steps))
        except Exception as exc:
            return script, exc
    return await asyncio.gather(*(one(s, rng.uniform(0, 3)) for s in scripts))


def _wait_ended(reader, call_ids: list[str], timeout: float = 60) -> list[dict | None]:
    deadline = time.monotonic() + timeout
    while True:
        calls = [reader.get_call(cid) for cid in call_ids]
        if all(c and c["outcome"] for c in calls) or time.monotonic() > deadline:
            return calls
        time.sleep(0.5)

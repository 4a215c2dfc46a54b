"""`ivr bench calls`: scripted phone calls through a real server, at 1, 2, 4 and 8 at once.

What a caller feels is measured the way a caller feels it: `ivr serve` runs as its own process
on 127.0.0.1 with the embedded models, and each call is the Twilio simulator (ivr.tools.simulate)
posting the webhook and streaming 20 ms mu-law frames in real time. Per concurrency level it
reports voice-to-voice p50/p95 (spoken turns; keypad turns apart), the per-stage budget the
server wrote into its call log (endpointing, STT, NLU, first audio), answer-to-first-audio,
audio underruns heard by the simulated phone, turns answered too early (the bot's reply began
while the caller was still mid-turn, mostly in a mid-sentence pause: the caller was cut off; of
all caller turns, and of the turns with such a pause), the server's CPU use and task success (the
call went through the nodes its script should reach). Some scripted callers pause mid-sentence
for 0.3-0.5 s, as people do before the word they are looking for, and one says a long request
in a single breath.

The baseline runs in the same process on the same scripts: the same server with
`IVR_NLU_MODE=toolcall`, where every spoken turn is a forced tool call on the same GGUF
(pipecat.flows' way, ivr.nlu.toolcall), with the same STT, TTS and endpointing.

The caller's voice is the bundled piper voice, so word accuracy here is better than a real
caller's; `ivr.bench.stt` measures whisper on phone audio separately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ivr.bench.scoring import percentile
from ivr.tools.simulate import CallerSimulator, SimulationReport, Step, split_pauses

FLOW = "customer_service"
TOKEN = "bench-auth-token"  # webhooks are signed, as Twilio signs them


@dataclass(frozen=True)
class CallScript:
    name: str
    steps: tuple[Step, ...]
    expect: tuple[str, ...]  # nodes the call must pass through, in this order


def _say(text: str) -> Step:
    return Step("say", text)


def _keys(digits: str) -> Step:
    return Step("dtmf", digits)


# Wordings differ from the flow's examples on purpose: the router must generalise. "{number}" is
# a different six-digit order number per call (read as digit words, or keyed): one fixed number
# would measure whisper on that number alone (tiny.en hears "four one seven two nine three"
# as "1424 1723" at some alignments and gets most others right).
SCRIPTS: tuple[CallScript, ...] = (
    CallScript("hours", (_say("hi, what time do you open on saturday?"), _say("no, that's everything, thanks")),
               ("hours", "anything_else", "goodbye")),
    CallScript("order by voice", (_say("I'm calling about a package I ordered last week"),
                                  _say("{number}"), _say("yes, that's right")),
               ("ask_order", "confirm_order", "order_agent")),
    CallScript("order by keypad", (_keys("2"), _keys("{number}"), _say("yes")),
               ("ask_order", "confirm_order", "order_agent")),
    CallScript("a person", (_say("can I talk to a real person please"),), ("agent",)),
    CallScript("hours then order", (_say("when are you open"), _say("yes please"), _say("where is my delivery"),
                                    _keys("550123")),
               ("hours", "anything_else", "main_menu", "ask_order", "confirm_order")),
    # A caller who says it all at once: the order number comes with the request, so the line
    # goes straight to the read-back (docs/flows.md 5a) and the call is a turn shorter.
    CallScript("order, number up front", (_say("hi, I'm checking on my order, the number is {number}"), _say("yes")),
               ("ask_order", "confirm_order", "order_agent")),
    # Callers who stop mid-sentence, where people do: after a function word, before the word they
    # are reaching for, or after a clause that sounds finished but is not. A bot that ends the turn
    # on the first pause answers the half ("what time do you") and talks over the rest: answered
    # too early. Each "<pause>" becomes 0.3-0.5 s, drawn per call (scripts_for).
    CallScript("hours, paused", (_say("what time do you <pause> open on sunday?"),
                                 _say("no, I think that's <pause> everything, thanks")),
               ("hours", "anything_else", "goodbye")),
    CallScript("order, paused", (_say("hi, I'd like to check on <pause> my order, it still hasn't <pause> arrived"),
                                 _say("{number}"), _say("yes, that's <pause> right")),
               ("ask_order", "confirm_order", "order_agent")),
    CallScript("a person, paused", (_say("I need to talk to <pause> someone in customer service, please"),), ("agent",)),
    # These two pause after words that are a whole request already; what follows adds to it.
    CallScript("order, paused after a clause",
               (_say("I'm checking on an order <pause> that I placed last week"), _say("{number}"), _say("yes")),
               ("ask_order", "confirm_order", "order_agent")),
    CallScript("hours, paused after a clause",
               (_say("are you open this saturday <pause> because I need to bring a return in"),
                _say("no, that's all, thanks")),
               ("hours", "anything_else", "goodbye")),
    # The other way to be cut off: a long request of three clauses in one breath, where the
    # voice's own breaks between clauses are the only gaps.
    CallScript("order, run-on", (_say("yeah hi so I ordered a blender from you guys about two weeks ago and it still "
                                      "hasn't shown up and I was wondering where my package is"),
                                 _say("{number}"), _say("yes")),
               ("ask_order", "confirm_order", "order_agent")),
)
PAUSE = "<pause>"  # in a script's line: a mid-sentence pause of PAUSE_S seconds, drawn per call
PAUSE_S = (0.3, 0.5)


# ---------------------------------------------------------------- the server under test
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BenchServer:
    """`ivr serve` in its own process, with its own data directory (SQLite call log)."""

    def __init__(self, label: str, env: dict[str, str] | None = None):
        self.label = label
        self.dir = Path(tempfile.mkdtemp(prefix=f"ivr-bench-{label}-"))
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "IVR_DATA_DIR": str(self.dir), "TWILIO_AUTH_TOKEN": TOKEN,
                    "IVR_DASHBOARD_TOKEN": "bench", "IVR_MAX_CALLS": "64", **(env or {})}
        full_env.pop("IVR_DATABASE_URL", None)
        self._log = open(self.dir / "serve.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "ivr.tools.cli", "serve", "--port", str(self.port)],
                                     env=full_env, stdout=self._log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.label} exited:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"server {self.label} not ready in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        self._log.flush()
        return (self.dir / "serve.log").read_text()[-chars:]

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def call_log(self, call_ids: list[str], settle: float = 10.0) -> dict[str, dict]:
        """Per call: the nodes it went through and its turn_end stage latencies."""
        db = self.dir / "ivr.sqlite3"
        deadline = time.time() + settle
        out: dict[str, dict] = {}
        while True:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                for cid in call_ids:
                    rows = conn.execute("SELECT type, data FROM events WHERE call_id = ? ORDER BY seq", (cid,)).fetchall()
                    ended = conn.execute("SELECT outcome FROM calls WHERE call_id = ?", (cid,)).fetchone()
                    out[cid] = {
                        "nodes": [json.loads(d).get("node") for t, d in rows if t == "node"],
                        "turns": [json.loads(d) for t, d in rows if t == "turn_end"],
                        "transcripts": [json.loads(d) for t, d in rows if t == "transcript"],
                        "withdrawn": sum(t == "turn_withdrawn" for t, _ in rows),
                        "outcome": ended[0] if ended else None,
                    }
            if all(v["outcome"] for v in out.values()) or time.time() > deadline:
                return out
            time.sleep(0.5)  # the writer thread batches: give it a moment

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        if os.environ.get("IVR_BENCH_KEEP"):
            print(f"  server {self.label}'s data and log kept in {self.dir}", flush=True)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- one level
@dataclass
class LevelResult:
    label: str
    concurrency: int
    calls: int = 0
    spoken_ms: list[float] = field(default_factory=list)
    keypad_ms: list[float] = field(default_factory=list)
    answer_ms: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    underruns: int = 0
    late_pauses: int = 0
    underrun_ms: float = 0.0
    underrun_gaps: list[tuple] = field(default_factory=list)
    missed_replies: int = 0
    caller_turns: int = 0
    paused_turns: int = 0  # caller turns with a mid-sentence pause
    cut_off: int = 0  # caller turns answered too early (the bot spoke up before the caller finished)
    cut_off_paused: int = 0  # ... of the paused turns
    early_turns: list[str] = field(default_factory=list)
    heard_turns: int = 0  # spoken turns with words, as the server's call log has them
    first_pause: int = 0  # ... of them ended at the first pause, before the full silence
    withdrawn: int = 0  # turns the caller went on with after they were committed
    slowest: list[tuple[float, str, dict]] = field(default_factory=list)  # (v2v ms, script, stages)
    succeeded: int = 0
    failures: list[str] = field(default_factory=list)
    cpu_percent: float = 0.0
    wall_s: float = 0.0

    def row(self) -> dict:
        def p(values, q):
            v = percentile(values, q)
            return None if v is None else round(v)

        out = {
            "server": self.label, "concurrency": self.concurrency, "calls": self.calls,
            "v2v_p50": p(self.spoken_ms, 50), "v2v_p95": p(self.spoken_ms, 95),
            "keypad_p50": p(self.keypad_ms, 50), "answer_p50": p(self.answer_ms, 50),
            "answer_p95": p(self.answer_ms, 95),
            "underruns": self.underruns, "underrun_ms": round(self.underrun_ms), "late_pauses": self.late_pauses,
            "missed": self.missed_replies, "early": f"{self.cut_off}/{self.caller_turns}",
            "early_paused": f"{self.cut_off_paused}/{self.paused_turns}",
            "first_pause": f"{self.first_pause}/{self.heard_turns}", "withdrawn": self.withdrawn,
            "success": f"{self.succeeded}/{self.calls}",
            "cpu_pct": round(self.cpu_percent), "wall_s": round(self.wall_s),
        }
        for stage, values in sorted(self.stages.items()):
            out[f"{stage}_p50"] = p(values, 50)
            out[f"{stage}_p95"] = p(values, 95)
        return out


def passes_through(nodes: list[str], expect: tuple[str, ...]) -> bool:
    it = iter(nodes)
    return all(any(n == want for n in it) for want in expect)


async def run_level(server: BenchServer, voice, scripts: list[CallScript], concurrency: int, *,
                    seed: int = 0) -> LevelResult:
    result = LevelResult(server.label, concurrency)
    gate = asyncio.Semaphore(concurrency)
    rng = random.Random(seed)
    reports: list[tuple[CallScript, SimulationReport | Exception]] = []

    async def one(script: CallScript, delay: float) -> None:
        await asyncio.sleep(delay)
        async with gate:
            sim = CallerSimulator(server.url, voice=voice, auth_token=TOKEN, flow=FLOW, reply_timeout=25)
            try:
                reports.append((script, await sim.run(list(script.steps))))
            except Exception as exc:  # a call that fails is a result, not the end of the benchmark
                reports.append((script, exc))

    cpu0, t0 = server.cpu_seconds(), time.time()
    # Calls arrive spread out, not in lockstep: a real line's arrivals are not synchronised.
    await asyncio.gather(*(one(s, rng.uniform(0, 2.0) if concurrency > 1 else 0) for s in scripts))
    result.wall_s = time.time() - t0
    result.cpu_percent = 100 * (server.cpu_seconds() - cpu0) / result.wall_s / (os.cpu_count() or 1)
    done = [(s, r) for s, r in reports if isinstance(r, SimulationReport)]
    logs = await asyncio.to_thread(server.call_log, [r.call_sid for _, r in done])
    result.calls = len(reports)
    for script, report in reports:
        if not isinstance(report, SimulationReport):
            result.failures.append(f"{script.name}: {report}")
            continue
        if report.answer_to_first_audio_ms is not None:
            result.answer_ms.append(report.answer_to_first_audio_ms)
        result.underruns += report.underruns
        result.late_pauses += report.late_pauses
        result.underrun_ms += report.underrun_ms
        result.underrun_gaps += report.underrun_gaps
        for k, turn in enumerate(report.turns):
            if turn.step.kind != "pause":
                result.caller_turns += 1
                result.paused_turns += int(turn.pauses > 0)
            if turn.cut_off:
                result.cut_off += 1
                result.cut_off_paused += int(turn.pauses > 0)
                at = "" if turn.cut_off_at_pause is None else f", pause {turn.cut_off_at_pause + 1}"
                result.early_turns.append(f"{script.name} (turn {k + 1}{at})")
            if turn.latency_ms is None:
                result.missed_replies += 1
            else:
                (result.keypad_ms if turn.step.kind == "dtmf" else result.spoken_ms).append(turn.latency_ms)
        log = logs.get(report.call_sid, {})
        heard = [t for t in log.get("transcripts", []) if t.get("text")]
        result.heard_turns += len(heard)
        result.first_pause += sum(bool(t.get("early")) for t in heard)
        result.withdrawn += log.get("withdrawn", 0)
        for turn in log.get("turns", []):
            if turn.get("source") != "speech":
                continue
            for key, value in turn.items():
                if key.endswith("_ms") and isinstance(value, (int, float)):
                    result.stages.setdefault(key.removesuffix("_ms"), []).append(float(value))
            if isinstance(turn.get("voice_to_voice_ms"), (int, float)):
                result.slowest.append((turn["voice_to_voice_ms"], script.name, turn))
        if passes_through(log.get("nodes", []), script.expect):
            result.succeeded += 1
        else:
            result.failures.append(f"{script.name}: went {' > '.join(n for n in log.get('nodes', []) if n)}")
    return result


# ---------------------------------------------------------------- the table
STAGE_ORDER = ("endpoint", "to_transcript", "stt", "nlu", "to_first_audio", "voice_to_voice")


def print_table(rows: list[dict], out=sys.stdout) -> None:
    cols = ["server", "concurrency", "calls", "v2v_p50", "v2v_p95", "keypad_p50", "answer_p50", "answer_p95",
            "underruns", "late_pauses", "missed", "early", "early_paused", "first_pause", "withdrawn", "success",
            "cpu_pct"]
    _print(rows, cols, "Voice to voice (ms, spoken turns, measured by the simulated phone)", out)
    print("early: caller turns answered too early (the bot spoke before the caller had finished), of all caller "
          "turns; early_paused: of the turns with a mid-sentence pause; first_pause: spoken turns the server "
          "ended at the first pause; withdrawn: turns withdrawn because the caller went on", file=out)
    stage_cols = ["server", "concurrency"] + [f"{s}_{q}" for s in STAGE_ORDER for q in ("p50", "p95")
                                              if any(f"{s}_{q}" in r for r in rows)]
    _print(rows, stage_cols, "Per-stage budget (ms, from the server's call log)", out)
    ours = {r["concurrency"]: r for r in rows if r["server"] == "ivr"}
    for r in rows:
        if r["server"] != "ivr" and r["concurrency"] in ours and r["v2v_p50"] and ours[r["concurrency"]]["v2v_p50"]:
            o = ours[r["concurrency"]]
            print(f"\n{r['server']} at {r['concurrency']} call(s): ivr is {r['v2v_p50'] / o['v2v_p50']:.1f}x faster "
                  f"at p50 ({o['v2v_p50']} vs {r['v2v_p50']} ms), {_ratio(r['v2v_p95'], o['v2v_p95'])} at p95; "
                  f"task success {o['success']} vs {r['success']}; answered too early {o['early']} vs {r['early']}",
                  file=out)


def _ratio(a, b) -> str:
    return "n/a" if not a or not b else f"{a / b:.1f}x"


def _print(rows, cols, title, out) -> None:
    print(f"\n{title}", file=out)
    widths = {c: max(len(c), *(len("" if r.get(c) is None else str(r.get(c))) for r in rows)) for c in cols}
    print("  ".join(c.rjust(widths[c]) for c in cols), file=out)
    for r in rows:
        print("  ".join(("-" if r.get(c) is None else str(r.get(c))).rjust(widths[c]) for c in cols), file=out)


# ---------------------------------------------------------------- main
_WORDS = "zero one two three four five six seven eight nine".split()


def scripts_for(n: int, seed: int) -> list[CallScript]:
    """n calls cycling through SCRIPTS, each order number and pause length drawn afresh
    (deterministic by seed)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        script = SCRIPTS[i % len(SCRIPTS)]
        number = "".join(str(rng.randrange(10)) for _ in range(6))
        steps = tuple(Step(st.kind, st.value.replace(
            "{number}", " ".join(_WORDS[int(d)] for d in number) if st.kind == "say" else number))
            for st in script.steps)
        # Drawn only where a script pauses, so the scripts without pauses get the same numbers
        # for a seed as before the paused callers were added.
        steps = tuple(Step(st.kind, draw_pauses(st.value, rng)) if st.kind in ("say", "barge") else st for st in steps)
        out.append(CallScript(script.name, steps, script.expect))
    return out


def slowest_lines(turns: list[tuple[float, str, dict]], share: float = 0.05) -> list[str]:
    """Where the time of the slowest `share` of spoken turns (at least one) went, stage by stage
    from the server's call log: what the p95 is made of."""
    worst = sorted(turns, key=lambda t: -t[0])[:max(1, round(len(turns) * share))] if turns else []
    return [f"slow turn: {script}, turn {stages.get('turn')}: " + ", ".join(
        f"{stage} {stages[f'{stage}_ms']:.0f}" for stage in STAGE_ORDER if f"{stage}_ms" in stages)
        for _, script, stages in worst]


def draw_pauses(text: str, rng: random.Random) -> str:
    """Each PAUSE in `text` as a `<pause SECONDS>` mark with its own length from PAUSE_S."""
    pieces = text.split(PAUSE)
    return pieces[0] + "".join(f"<pause {rng.uniform(*PAUSE_S):.2f}>{piece}" for piece in pieces[1:])


def caller_voice(scripts: list[CallScript]):
    """The bundled voice, with every line of these scripts synthesised before any call, so
    the simulated callers never compete with the server for CPU."""
    from ivr.registry import voice_registry
    from ivr.speech.tts import Synthesizer

    voice = Synthesizer(voice_registry().for_role("default").path)
    for script in scripts:
        for step in script.steps:
            if step.kind in ("say", "barge"):
                for part in split_pauses(step.value)[0]:  # a paused line is spoken part by part
                    voice.synthesize_sync(part)
    return voice


async def _bench(server: BenchServer, voice, plans: dict[int, list[CallScript]], seed: int) -> list[LevelResult]:
    results = []
    for c, scripts in plans.items():
        r = await run_level(server, voice, scripts, c, seed=seed + c)
        results.append(r)
        print(f"  {server.label}: {c} at once, {r.calls} calls in {r.wall_s:.0f}s, spoken p50 "
              f"{percentile(r.spoken_ms, 50) or 0:.0f} ms, success {r.succeeded}/{r.calls}, answered too early "
              f"{r.cut_off}/{r.caller_turns} ({r.cut_off_paused}/{r.paused_turns} paused turns)", flush=True)
        if r.early_turns:
            print(f"    answered too early: {', '.join(r.early_turns)}", flush=True)
        for line in slowest_lines(r.slowest):
            print(f"    {line}", flush=True)
        if r.underrun_gaps:
            where = ", ".join(f"{at:.2f} s ({gap} ms, {'in speech' if loud else 'in a pause'})"
                              for at, gap, loud in sorted(r.underrun_gaps))
            print(f"    underruns (into the prompt, gap, where): {where}", flush=True)
        for failure in r.failures:
            print(f"    failed: {failure}", flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ivr bench calls", description=__doc__.split("\n\n")[0])
    ap.add_argument("--concurrency", default="1,2,4,8", help="levels, comma-separated (default 1,2,4,8)")
    ap.add_argument("--calls", type=int, default=0,
                    help=f"calls per level (default: one of each of the {len(SCRIPTS)} scripts, or twice the level if more)")
    ap.add_argument("--baseline", default="1", help="levels to run the tool-call baseline at ('' for none)")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for our server (try a setting)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    base_levels = [int(x) for x in args.baseline.split(",") if x.strip()]

    def per_level(c: int) -> int:
        return args.calls or max(len(SCRIPTS), 2 * c)

    print("ivr bench calls: preparing the caller's voice", flush=True)
    plans = {c: scripts_for(per_level(c), args.seed + c) for c in sorted(set(levels) | set(base_levels))}
    voice = caller_voice([s for scripts in plans.values() for s in scripts] + [WARM_UP])
    rows: list[dict] = []
    env = dict(kv.split("=", 1) for kv in args.env)
    for label, server_env, lv in (("ivr", env, levels), ("toolcall", {"IVR_NLU_MODE": "toolcall"}, base_levels)):
        if not lv:
            continue
        server = BenchServer(label, server_env)
        try:
            print(f"starting server '{label}' ...", flush=True)
            server.wait_ready()
            asyncio.run(_warm_up(server, voice))
            rows += [r.row() for r in asyncio.run(_bench(server, voice, {c: plans[c] for c in lv}, args.seed))]
        finally:
            server.stop()
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


WARM_UP = CallScript("warm-up", (_say("when are you open"),), ())


async def _warm_up(server: BenchServer, voice) -> None:
    """One call first, not measured: the first call through a fresh process pays for lazy
    imports and allocator growth that no later caller sees."""
    await CallerSimulator(server.url, voice=voice, auth_token=TOKEN, flow=FLOW).run(list(WARM_UP.steps))


if __name__ == "__main__":
    sys.exit(main())

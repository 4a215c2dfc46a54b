"""`ivr bench browser`: what a browser call ("Try a call") costs against a phone call, on the
same server in the same run.

One `ivr serve` on 127.0.0.1 with the embedded models. Phone calls are the Twilio simulator
(ivr.tools.simulate); browser calls are Debian's Chromium (Playwright, headless) on the
dashboard's Try a call page with a fake microphone playing a WAV: a pause for the greeting,
the request, silence. Both say the same request in the same voice to the same flow, one call at
a time, alternating phone, browser and wideband browser (16 kHz both ways) so all see the same
server; then several browser calls at once. All are timed the same way (ivr/tools/simulate.py,
ivr/dashboard/static/try.js): voice to voice from the last loud frame sent to the first loud
frame of the reply received,
answer from `start` sent to the greeting's first loud frame; the server's own voice to voice
(its call log) is reported beside. Underruns are the page's audio thread running dry within
0.5 s of more audio (line-worklet.js), the simulator's its own. Chromium runs on the same two
cores as the server, which a phone call's caller does not: that is part of the cost measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ivr.bench.calls import FLOW, TOKEN, BenchServer
from ivr.bench.scoring import percentile
from ivr.tools.simulate import CallerSimulator, Step

REQUEST = "I want to check on my order"
GREETING_WAIT_S = 9.0  # the fake microphone is quiet this long: the greeting plays out first
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--use-fake-ui-for-media-stream",
                 "--use-fake-device-for-media-stream", "--autoplay-policy=no-user-gesture-required"]
WAV_RATE = 48000


def microphone(voice, folder: Path) -> Path:
    from ivr.speech.audio import resample, write_wav

    words = np.frombuffer(voice.synthesize_sync(REQUEST), dtype=np.int16)
    quiet = lambda s: np.zeros(int(8000 * s), dtype=np.int16)  # noqa: E731
    path = folder / "caller.wav"
    write_wav(path, resample(np.concatenate([quiet(GREETING_WAIT_S), words, quiet(40.0)]), 8000, WAV_RATE), WAV_RATE)
    return path


def phone_call(server: BenchServer, voice) -> dict:
    """In a thread of its own: Playwright's sync API holds this thread's event loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _phone_call(server, voice)).result()


async def _phone_call(server: BenchServer, voice) -> dict:
    report = await CallerSimulator(server.url, voice=voice, auth_token=TOKEN, flow=FLOW, reply_timeout=25).run(
        [Step("say", REQUEST)])
    turn = report.turns[0] if report.turns else None
    return {"call_id": report.call_sid, "v2v": turn.latency_ms if turn else None,
            "answer": report.answer_to_first_audio_ms, "underruns": report.underruns, "underrun_ms": report.underrun_ms,
            "late_pauses": report.late_pauses}


class Browsers:
    """One Chromium; each call in a context of its own, logged in through the login form."""

    def __init__(self, server: BenchServer, wav: Path):
        from playwright.sync_api import sync_playwright

        self.server = server
        self._pw = sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=CHROMIUM,
                                                args=CHROMIUM_ARGS + [f"--use-file-for-fake-audio-capture={wav}"])

    def page(self):
        context = self.browser.new_context(permissions=["microphone"])
        page = context.new_page()
        page.goto(self.server.url + "/dashboard/login")
        page.fill("#token", "bench")
        page.click("button[type=submit]")
        page.goto(self.server.url + f"/dashboard/try?flow={FLOW}")
        page.wait_for_selector(f"#flow option[value='flow:{FLOW}']", state="attached", timeout=20_000)
        return page

    def calls(self, n: int, rng: random.Random | None = None, wideband: bool = False) -> list[dict]:
        """n calls at once: each says the request after the greeting and hangs up once the reply
        has played. They start up to 2 s apart, as `ivr bench calls` spreads its callers: a
        real line's callers are not in lockstep."""
        pages = [self.page() for _ in range(n)]
        for k, page in enumerate(pages):
            if wideband:
                page.check("#wideband")
            if k and rng is not None:
                page.wait_for_timeout(rng.uniform(0, 2.0 / (n - 1)) * 1000)
            page.click("#call")
        out = []
        for page in pages:
            try:
                page.wait_for_function("() => window.ivrTry.replies.length > 0", timeout=60_000, polling=100)
                page.wait_for_timeout(4000)  # the reply plays out: its underruns count too
                out.append(page.evaluate("({call_id: window.ivrTry.callId, v2v: window.ivrTry.replies[0],"
                                         " answer: window.ivrTry.greetedMs, underruns: window.ivrTry.stats.underruns,"
                                         " underrun_ms: 1000 * window.ivrTry.stats.starvedS,"
                                         " late_pauses: window.ivrTry.stats.latePauses,"
                                         " late_arrivals: window.ivrTry.lateArrivals})"))
            except Exception as exc:  # a call that fails is a result, not the end of the benchmark
                out.append({"call_id": page.evaluate("window.ivrTry.callId"), "error": str(exc).splitlines()[0]})
        for page in pages:
            if page.is_enabled("#hangup"):  # a call that failed may be over already
                page.click("#hangup")
        for page in pages:
            page.context.close()
        return out

    def close(self) -> None:
        self.browser.close()
        self._pw.stop()


def summarise(label: str, calls: list[dict], server: BenchServer, at_once: int) -> dict:
    ok = [c for c in calls if "error" not in c and c.get("v2v") is not None]
    logs = server.call_log([c["call_id"] for c in calls if c.get("call_id")])
    server_v2v = [t.get("voice_to_voice_ms") for log in logs.values() for t in log["turns"] if t.get("source") == "speech"]
    server_v2v = [v for v in server_v2v if isinstance(v, (int, float))]

    def p(values, q):
        v = percentile([x for x in values if x is not None], q)
        return None if v is None else round(v)

    return {
        "line": label, "at_once": at_once, "calls": len(calls), "ok": len(ok),
        "v2v_p50": p([c["v2v"] for c in ok], 50), "v2v_p95": p([c["v2v"] for c in ok], 95),
        "server_v2v_p50": p(server_v2v, 50),
        "answer_p50": p([c["answer"] for c in ok], 50), "answer_p95": p([c["answer"] for c in ok], 95),
        "underruns": sum(int(c.get("underruns") or 0) for c in ok),
        "underrun_ms": round(sum(float(c.get("underrun_ms") or 0) for c in ok)),
        "late_pauses": sum(int(c.get("late_pauses") or 0) for c in ok),
        "late_arrivals": sum(int(c.get("late_arrivals") or 0) for c in ok) if label.startswith("browser") else None,
        "failures": [c["error"] for c in calls if "error" in c],
    }


def print_table(rows: list[dict], out=sys.stdout) -> None:
    cols = ["line", "at_once", "calls", "ok", "v2v_p50", "v2v_p95", "server_v2v_p50", "answer_p50", "answer_p95",
            "underruns", "underrun_ms", "late_pauses", "late_arrivals"]
    out.write("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
    for r in rows:
        out.write("| " + " | ".join("–" if r.get(c) is None else str(r.get(c)) for c in cols) + " |\n")
    phone = next((r for r in rows if r["line"] == "phone"), None)
    browser = next((r for r in rows if r["line"] == "browser" and r["at_once"] == 1), None)
    if phone and browser and phone["v2v_p50"] is not None and browser["v2v_p50"] is not None:
        out.write(f"\nbrowser - phone, voice to voice p50: {browser['v2v_p50'] - phone['v2v_p50']:+d} ms "
                  f"(target within 100 ms); browser answer p50 {browser['answer_p50']} ms (target <= 300 ms)\n")
    for r in rows:
        for failure in r["failures"]:
            out.write(f"  {r['line']} x{r['at_once']} failed: {failure}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ivr bench browser", description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=6, help="phone and browser calls, one at a time (default 6 each)")
    ap.add_argument("--at-once", default="4", help="browser calls at once, comma-separated levels (default 4)")
    ap.add_argument("--rounds", type=int, default=2, help="rounds of each at-once level (default 2)")
    ap.add_argument("--no-wideband", dest="wideband", action="store_false",
                    help="leave out the wideband browser calls (16 kHz both ways) timed beside the others")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium", file=sys.stderr)
        return 2
    from ivr.bench.calls import WARM_UP, caller_voice

    voice = caller_voice([WARM_UP])
    folder = Path(tempfile.mkdtemp(prefix="ivr-bench-browser-"))
    wav = microphone(voice, folder)
    server = BenchServer("ivr")
    rows = []
    try:
        print("ivr bench browser: starting the server ...", flush=True)
        server.wait_ready()
        browsers = Browsers(server, wav)
        try:
            phone_call(server, voice)  # not measured: a fresh process's first call
            browsers.calls(1)
            phone, browser, wide = [], [], []
            for i in range(args.calls):
                phone.append(phone_call(server, voice))
                browser += browsers.calls(1)
                if args.wideband:
                    wide += browsers.calls(1, wideband=True)
                print(f"  {i + 1}/{args.calls}: phone {phone[-1].get('v2v') or 0:.0f} ms, browser "
                      f"{browser[-1].get('v2v') or 0:.0f} ms"
                      + (f", wideband {wide[-1].get('v2v') or 0:.0f} ms" if wide else ""), flush=True)
            rows += [summarise("phone", phone, server, 1), summarise("browser", browser, server, 1)]
            if wide:
                rows.append(summarise("browser wideband", wide, server, 1))
            for level in [int(x) for x in args.at_once.split(",") if x.strip()]:
                together = []
                for k in range(args.rounds):
                    started = time.time()
                    together += browsers.calls(level, random.Random(args.seed + k))
                    print(f"  {level} browser calls at once: {time.time() - started:.0f} s", flush=True)
                rows.append(summarise("browser", together, server, level))
        finally:
            browsers.close()
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against the real
server: log in through the form, watch a simulated call appear live and change node, then open
its page and find the transcript, the latency waterfall and the recording.

Set IVR_SCREENSHOTS=/some/dir to keep a screenshot of each page.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from ivr.tools.simulate import CallerSimulator, Step

from .conftest import AUTH_TOKEN, DASHBOARD_TOKEN

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CALLER = "+15555550777"


def shoot(page, name: str) -> None:
    folder = os.environ.get("IVR_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"dashboard-{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_operator_watches_a_call_live_then_reads_it(server, caller_voice, browser):
    from playwright.sync_api import expect

    started = time.monotonic()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(server.url + "/dashboard/")
    assert page.url.endswith("/dashboard/login")  # no session yet
    page.fill("#token", "not-the-token")
    page.click("button[type=submit]")
    expect(page.locator("#banner")).to_have_text("That token is not right.")
    page.fill("#token", DASHBOARD_TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("#status")).to_have_text("live")
    expect(page.locator("#live")).to_contain_text("No calls in progress")

    sim = CallerSimulator(server.url, voice=caller_voice, auth_token=AUTH_TOKEN, caller=CALLER)
    result: dict = {}

    def call():
        try:
            result["report"] = asyncio.run(sim.run([Step("say", "I want to check on my order"), Step("dtmf", "123456")]))
        except Exception as exc:  # surfaced below, with the server's log
            result["error"] = exc

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    live_row = page.locator("#live-table tbody tr", has_text=CALLER)
    expect(live_row).to_have_count(1, timeout=20_000)
    expect(live_row.locator("td.node")).to_have_text("main_menu", timeout=10_000)
    expect(live_row.locator("td.node")).to_have_text("ask_order", timeout=40_000)  # understood, moved on
    expect(live_row.locator("td.transcript")).to_contain_text("order")
    shoot(page, "live")
    caller.join(60)
    assert "report" in result, f"{result.get('error')}\n{server.log()}"
    call_sid = result["report"].call_sid

    ended = page.locator(f"#ended-table tbody tr[data-call='{call_sid}']")
    expect(ended).to_have_count(1, timeout=10_000)
    expect(live_row).to_have_count(0)
    ended.locator("a").click()

    expect(page.locator("#title")).to_have_text(f"Call {call_sid}")
    turns = page.locator("section.turn")
    expect(turns).to_have_count(3, timeout=10_000)  # greeting, the spoken request, the keyed number
    expect(turns.nth(1).locator(".say.caller")).to_contain_text("order")
    expect(turns.nth(1).locator(".nlu")).to_contain_text("intent order")
    expect(turns.nth(2).locator(".say.caller")).to_have_text("caller[keys 123456]")
    bars = turns.nth(1).locator("svg.waterfall rect.bar")
    assert bars.count() >= 4, "the spoken turn's waterfall has its stages"
    assert float(bars.last.get_attribute("width")) > 2  # voice to voice is a real bar, not a stub
    audio = page.locator("#recording audio")
    expect(audio).to_have_count(1, timeout=10_000)
    page.wait_for_function("document.querySelector('#recording audio').duration > 1", timeout=10_000)
    shoot(page, "call")

    recording = httpx.get(server.url + f"/dashboard/api/calls/{call_sid}/recording",
                          headers={"Authorization": f"Bearer {DASHBOARD_TOKEN}"})
    assert recording.status_code == 200 and recording.content[:4] == b"RIFF"

    page.goto(server.url + f"/dashboard/calls?caller={CALLER[1:]}")
    expect(page.locator(f"#calls-table tr[data-call='{call_sid}']")).to_have_count(1)
    shoot(page, "calls")
    page.goto(server.url + "/dashboard/summary")
    expect(page.locator("#latency svg rect.bar").first).to_be_visible()
    expect(page.locator("#volume svg rect.bar:not([height='0'])").first).to_be_visible()
    shoot(page, "summary")

    assert not errors, errors
    print(f"dashboard browser test: {time.monotonic() - started:.1f} s")

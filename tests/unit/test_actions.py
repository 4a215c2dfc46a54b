"""Backend calls from flows: saved responses, failure paths, the filler, template checks."""

import asyncio
import json

import httpx
import pytest

from ivr.conversation.actions import HttpActions
from ivr.conversation.session import CallSession
from ivr.dialog.loader import FlowLoadError, load_flow_text
from tests.fakes import EventList, RecordingOutput

FLOW = """
flow: orders
start: ask
slots:
  order: {type: digits, length: 4}
nodes:
  ask:
    say: Order number?
    collect: order
    next: lookup
  lookup:
    action:
      http: POST
      url: "{env.ORDERS_API}/orders/{slots.order}?key={env.API_KEY}"
      headers: {Authorization: "Bearer {env.API_KEY}"}
      json: {order: "{slots.order}", channel: phone}
      timeout: 2
      save_as: order_info
      on_error: sorry
    say: Your order is {order_info.status}, arriving {vars.order_info.eta}.
    next:
      - if: vars.order_info.status == "delayed"
        then: apology
      - else: bye
  apology: {say: We're sorry about the delay., next: bye}
  sorry: {say: "Sorry, our order system is down.", next: bye}
  bye: {say: Goodbye., hangup: true}
"""

ENV = {"ORDERS_API": "https://orders.example.com", "API_KEY": "s3cret"}


def session_with(handler, **kw):
    seen = []

    def record(request: httpx.Request):
        seen.append(request)
        return handler(request)

    out, events = RecordingOutput(), EventList()
    session = CallSession(
        "CA1", load_flow_text(FLOW), out, events=events, env=ENV,
        actions=HttpActions(httpx.MockTransport(record)), **kw,
    )
    return session, out, events, seen


async def test_success_saves_response_and_branches_on_it():
    session, out, events, seen = session_with(lambda r: httpx.Response(200, json={"status": "delayed", "eta": "Friday"}))
    await session.start()
    await session.on_transcript("one two three four")
    req = seen[0]
    assert req.method == "POST" and str(req.url) == "https://orders.example.com/orders/1234?key=s3cret"
    assert req.headers["authorization"] == "Bearer s3cret"
    assert json.loads(req.content) == {"order": "1234", "channel": "phone"}
    assert out.said[-3:] == ["Your order is delayed, arriving Friday.", "We're sorry about the delay.", "Goodbye."]
    logged = events.of("action")[0]
    assert logged["ok"] and logged["status"] == 200
    assert "s3cret" not in json.dumps(events.items)  # the query string and headers stay out of the log


@pytest.mark.parametrize("handler, error", [
    (lambda r: httpx.Response(503), "HTTP 503"),
    (lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused")), "ConnectError"),
])
async def test_failure_goes_to_on_error(handler, error):
    session, out, events, _ = session_with(handler)
    await session.start()
    await session.on_transcript("1234")
    assert out.said[-2:] == ["Sorry, our order system is down.", "Goodbye."]
    assert error in events.of("action")[0]["error"]


async def test_slow_backend_gets_a_filler_then_the_answer():
    async def slow(request):
        await asyncio.sleep(0.3)
        return httpx.Response(200, json={"status": "on its way", "eta": "tomorrow"})

    class SlowTransport(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request):
            return await slow(request)

    out, events = RecordingOutput(), EventList()
    session = CallSession("CA1", load_flow_text(FLOW), out, events=events, env=ENV,
                          actions=HttpActions(SlowTransport()), filler_after=0.05)
    await session.start()
    await session.on_transcript("1234")
    assert "One moment please." in out.said
    assert out.said.index("One moment please.") < out.said.index("Your order is on its way, arriving tomorrow.")


async def test_timeout_is_a_failure():
    class Hang(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request):
            await asyncio.sleep(5)

    text = FLOW.replace("timeout: 2", "timeout: 0.1")
    out, events = RecordingOutput(), EventList()
    session = CallSession("CA1", load_flow_text(text), out, events=events, env=ENV, actions=HttpActions(Hang()), filler_after=5)
    await session.start()
    await session.on_transcript("1234")
    assert "timed out" in events.of("action")[0]["error"]
    assert out.said[-2] == "Sorry, our order system is down."


async def test_without_on_error_the_call_ends_politely():
    text = FLOW.replace("      on_error: sorry\n", "")
    out, events = RecordingOutput(), EventList()
    session = CallSession("CA1", load_flow_text(text.replace("  sorry: {say: \"Sorry, our order system is down.\", next: bye}\n", "")),
                          out, events=events, env=ENV, actions=HttpActions(httpx.MockTransport(lambda r: httpx.Response(500))))
    await session.start()
    await session.on_transcript("1234")
    assert "can't look that up" in out.said[-1] and out.hangups


def test_env_is_never_spoken_and_unknown_names_are_errors():
    bad = FLOW.replace("say: Order number?", "say: Key {env.API_KEY} and {nonsense.x} and {vars.nothing}")
    with pytest.raises(FlowLoadError) as info:
        load_flow_text(bad, "bad.yaml")
    text = str(info.value)
    assert "only allowed in action" in text and "`{nonsense.x}` is not a template" in text
    assert "no action saves 'nothing'" in text

"""LLMHandoff against llama-cpp-python's own OpenAI-compatible server and the shipped Qwen 0.5B.

The 0.5B model is weak at tools, so the assertions are the robust ones: it says something
speakable (no JSON, no markup), the call ends up back in the flow, transferred or ended by a
tool, and every decision is logged with its reason. A second test kills the server mid-call.
Timeouts are generous: on a shared 2-core machine a first token can take many seconds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from pathlib import Path

import pytest

from ivr.conversation.session import CallSession
from ivr.dialog.loader import load_flow_text
from ivr.handoff.llm import APOLOGY, LLMHandoff, LLMSettings
from tests.fakes import EventList, KeywordNLU, RecordingOutput
from tests.unit.test_llm_handoff import handoff_events

from .procs import ServerProcess, free_port

pytestmark = pytest.mark.slow

FLOW = """
flow: petshop
description: Paws and Claws, a pet shop open nine to six every day
start: menu
nodes:
  menu:
    say: Welcome to Paws and Claws. Ask about opening hours, or say agent.
    dtmf: {"0": agent}
    intents:
      hours: {examples: [opening hours, when are you open], goto: hours}
      agent: {examples: [agent, a real person], goto: agent}
      other: {examples: [complicated question], goto: llm}
  hours: {say: We are open nine to six every day., next: menu}
  llm: {handoff: llm, return_to: menu}
  agent: {say: Connecting you., transfer: "+15550100"}
"""


def _model_path() -> Path:
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed")
    for module in ("sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"llama-cpp-python[server] dependency {module} is not installed")
    from ivr.registry import model_registry

    return model_registry().for_role("slm").path


class LlamaServer(ServerProcess):
    """llama-cpp-python's own OpenAI-compatible server with the bundled GGUF."""

    def __init__(self, tmp: Path):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        super().__init__(
            "llama server",
            [sys.executable, "-m", "llama_cpp.server", "--model", str(_model_path()), "--host", "127.0.0.1",
             "--port", str(self.port), "--n_ctx", "2048", "--n_threads", "2"],
            log_path=tmp / f"llama-{self.port}.log", ready_url=self.base_url + "/models",
        )

    def wait_ready(self, timeout: float = 180) -> None:
        super().wait_ready(timeout)


@pytest.fixture
def llama(tmp_path):
    server = LlamaServer(tmp_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def settings(base_url: str, **overrides) -> LLMSettings:
    values = dict(base_url=base_url, model="qwen2.5-0.5b", first_token_timeout_s=90.0, timeout_s=180.0,
                  filler_after_s=1.2, max_turns=2, max_tokens=60, temperature=0.0)
    return LLMSettings(**{**values, **overrides})


def make(base_url: str, **overrides):
    handoff = LLMHandoff(settings(base_url, **overrides))
    out, events = RecordingOutput(), EventList()
    session = CallSession("CA-llm", load_flow_text(FLOW), out, nlu=KeywordNLU(), events=events, handoff=handoff)
    return session, out, events


def llm_lines(events: EventList) -> list[str]:
    return [p["text"] for p in events.of("prompt") if p.get("kind") == "llm"]


async def test_off_script_question_is_answered_and_the_call_goes_back(llama):
    session, out, events = make(llama.base_url)
    warm_ms = await session.handoff.warm(session.flow)
    print(f"\nwarm-up (fixed prompt + tools, cold server): {warm_ms} ms")
    assert warm_ms is not None
    await session.start()
    await session.on_transcript("complicated question here, can I bring my dog into the shop?")
    if session.handoff.is_active(session):
        await session.on_transcript("okay, and do you sell cat food?")

    turns = handoff_events(events, "turn")
    for turn in turns:
        print(f"\nLLM turn {turn['turn']}.{turn['round']}: first_token_ms={turn['first_token_ms']} "
              f"latency_ms={turn['latency_ms']} tokens={turn['tokens']} tools={turn['tool_calls']}")
    print("said:", out.said)

    spoken = llm_lines(events)
    assert spoken and all(line.strip() for line in spoken), (out.said, events.items)
    for line in out.said:
        assert not any(ch in line for ch in "{}<>[]`*#"), line
        assert "return_to_flow" not in line and "transfer_to_human" not in line, line
    assert APOLOGY not in out.said, events.of("error")

    assert not session.handoff.is_active(session)
    back_in_flow = session.engine.node_name in ("menu", "hours", "agent") and not session.closing
    assert back_in_flow or out.transfers or out.hangups, out.said
    assert handoff_events(events, "start")[0]["reason"]
    end = handoff_events(events, "end")[0]
    assert end["why"] in ("return_to_flow", "transfer_to_human", "end_call", "max_turns")
    assert all(t["first_token_ms"] is not None and t["latency_ms"] > 0 for t in turns)


async def test_server_killed_mid_call_apologises_and_falls_back(llama):
    session, out, events = make(llama.base_url, filler_after_s=0.5)
    await session.start()
    turn = asyncio.create_task(session.on_transcript("complicated question here, what toys do parrots like?"))
    await asyncio.sleep(0.3)  # the request is out; the model is still reading the prompt
    killed_at = time.perf_counter()
    llama.proc.kill()
    await asyncio.wait_for(turn, 30)
    recovered = time.perf_counter() - killed_at
    print(f"\nfallback {recovered * 1000:.0f} ms after the kill; said: {out.said}")

    assert APOLOGY in out.said
    assert out.said[-1].startswith("Welcome to Paws and Claws")
    assert session.engine.node_name == "menu" and not session.handoff.is_active(session)
    assert recovered < 2.0 + 0.5
    assert events.of("error")[-1]["stage"] == "llm"
    assert handoff_events(events, "fallback")[0]["to"] == "return_to"

    # The next handoff, with the server gone, fails fast the same way.
    await session.on_transcript("complicated question again")
    assert out.said[-2:] == [APOLOGY, out.said[-1]] and out.said[-1].startswith("Welcome")

"""A committed turn the caller goes on with is withdrawn: the flow is put back as it was and the
words come again, joined, as the next turn; what cannot be undone waits until the turn settles."""

import asyncio
import time
from pathlib import Path

import pytest

from ivr.conversation.open_turn import OpenTurn, split_at_final
from ivr.conversation.session import CallSession
from ivr.conversation.turn import Turn
from ivr.conversation.turn_taking import sounds_finished
from ivr.dialog.engine import Hangup, Say
from ivr.dialog.loader import load_flow
from tests.fakes import EventList, KeywordNLU, RecordingOutput

REPO = Path(__file__).parent.parent.parent


@pytest.fixture
def flow():
    return load_flow(REPO / "flows" / "customer_service.yaml")


def make(flow, **kw):
    out, events = RecordingOutput(), EventList()
    return CallSession("CA1", flow, out, nlu=kw.pop("nlu", KeywordNLU()), events=events, **kw), out, events


async def test_a_turn_withdrawn_after_it_answered_puts_the_flow_back_and_the_joined_words_are_the_turn(flow):
    session, out, events = make(flow)
    await session.start()
    await session.on_transcript("I want to check on my order", speech_end=time.time(), early=True,
                                settles_at=time.time() + 5)
    assert session.engine.node_name == "ask_order"  # answered at once: moving on can be undone
    said = len(out.said)
    await session.on_caller_resumed("I want to check on my order")
    assert session.engine.node_name == "main_menu" and session.expectation.node == "main_menu"
    assert out.interrupts == 1 and session.turns == []
    assert [line["role"] for line in session.history] == ["bot"]  # the greeting, not the withdrawn turn
    assert events.of("turn_withdrawn")[0]["early"] is True
    await session.on_transcript("I want to check on my order and talk to a real person", joined=True)
    assert session.engine.node_name == "agent"
    assert len(session.turns) == 1 and out.said[said:][-1] == "Please hold while I connect you to an agent."
    assert events.of("transcript")[-1]["joined"] is True


async def test_a_transfer_waits_until_the_turn_settles_and_is_not_made_if_the_caller_goes_on(flow):
    session, out, _ = make(flow)
    await session.start()
    turn = asyncio.create_task(session.on_transcript("talk to someone", settles_at=time.time() + 0.3))
    await asyncio.sleep(0.1)
    # "Please hold ..." is said at once; the transfer after it cannot be taken back, so it waits
    assert out.said[-1] == "Please hold while I connect you to an agent."
    assert out.transfers == [] and not turn.done()
    await asyncio.gather(session.on_caller_resumed("talk to someone"), turn)
    assert out.transfers == [] and session.engine.node_name == "main_menu" and session.turns == []
    assert out.interrupts == 1  # and what was said of it stops


async def test_a_transfer_goes_ahead_once_the_turn_settles_and_a_late_resume_changes_nothing(flow):
    session, out, events = make(flow)
    await session.start()
    await session.on_transcript("talk to someone", settles_at=time.time() + 0.1)
    assert out.transfers and session.engine.node_name == "agent"
    await session.on_caller_resumed("talk to someone")
    assert events.of("turn_withdrawn") == [] and session.engine.node_name == "agent"


async def test_a_resume_for_other_words_withdraws_nothing(flow):
    session, out, events = make(flow)
    await session.start()
    await session.on_transcript("opening hours", settles_at=time.time() + 5)
    node = session.engine.node_name
    await session.on_caller_resumed("something else")
    assert session.engine.node_name == node and events.of("turn_withdrawn") == []


async def test_keys_pressed_after_a_turn_keep_it(flow):
    session, out, events = make(flow)
    await session.start()
    await session.on_transcript("I want to check on my order", settles_at=time.time() + 5)
    await session.enter_keys("123456")
    assert session.engine.node_name == "confirm_order"
    await session.on_caller_resumed("I want to check on my order")
    assert session.engine.node_name == "confirm_order" and events.of("turn_withdrawn") == []


async def test_a_resume_that_waited_behind_a_keyed_turn_undoes_nothing(flow):
    session, out, events = make(flow)
    await session.start()
    await session.on_transcript("I want to check on my order", settles_at=time.time() + 5)
    async with session._lock:  # the keyed turn holds the lock when the resume comes
        resume = asyncio.create_task(session.on_caller_resumed("I want to check on my order"))
        await asyncio.sleep(0.01)
        session._open_turn = None
        await session.run(session.engine.on_dtmf("123456"))
        session.turns.append(Turn(2, "dtmf", text="123456"))
    await resume
    assert session.engine.node_name == "confirm_order" and events.of("turn_withdrawn") == []


async def test_a_turn_withdrawn_while_it_is_understood_never_acts(flow):
    session, out, events = make(flow, nlu=KeywordNLU(delay=0.2))
    await session.start()
    said = len(out.said)
    turn = asyncio.create_task(session.on_transcript("I want to check on my order", settles_at=time.time() + 5))
    await asyncio.sleep(0.05)
    await asyncio.gather(session.on_caller_resumed("I want to check on my order"), turn)
    assert session.engine.node_name == "main_menu" and out.said[said:] == [] and session.turns == []


async def test_an_early_answer_needs_a_confident_menu_request_that_does_not_stop_mid_phrase(flow):
    session, _, _ = make(flow)
    await session.start()
    assert session.answers_early("I want to check on my", 0.9) is False  # mid-phrase: not even asked
    assert session.answers_early("I want to check on my order", 0) is False  # turned off
    session.understand_early("I want to check on my order")
    assert await session.answers_early("I want to check on my order", 0.9) is True
    assert await session.answers_early("I want to check on my order", 0.95) is False  # the fake says 0.9
    assert await session.answers_early("opening hours", 0.9) is False  # not the words being understood
    session.understand_early("blah blah blah")
    assert await session.answers_early("blah blah blah", 0.05) is False  # out of scope is never early


async def test_no_early_answer_where_a_value_is_collected(flow):
    session, _, _ = make(flow)
    await session.start()
    await session.on_transcript("I want to check on my order")
    assert session.engine.node_name == "ask_order"
    session.understand_early("four one seven")
    assert session.answers_early("four one seven", 0.5) is False


def test_effects_that_cannot_be_taken_back_wait():
    say, bye = Say("hi", "n"), Hangup("bye")
    assert split_at_final([say, bye, say]) == ([say], [bye, say]) and split_at_final([say]) == ([say], [])


async def test_a_goodbye_waits_until_the_turn_settles(flow):
    session, out, _ = make(flow)
    await session.start()
    await session.on_transcript("opening hours")
    said = list(out.said)
    turn = asyncio.create_task(session.on_transcript("no", settles_at=time.time() + 0.3))
    await asyncio.sleep(0.1)
    assert out.said == said and out.hangups == []  # "no, [I think that's everything]": not yet
    await asyncio.gather(session.on_caller_resumed("no"), turn)
    assert out.said == said and out.hangups == [] and session.engine.node_name == "anything_else"


async def test_an_open_turn_settles_when_nobody_withdraws_it():
    t = OpenTurn(Turn(1, "speech", text="x"), time.time() + 0.05)
    assert t.open() and await t.settled() and t.final and not t.open()


@pytest.mark.parametrize("text, finished", [
    ("I want to check on my order", True), ("where is my package?", True), ("agent", True),
    ("I'd like to check on my", False), ("my card and", False), ("I need to talk to", False),
    ("um", False), ("I was wondering,", False), ("so I ordered a...", False), ("", False),
    ("I want", False), ("can you help me with that", True), ("what time do you", False),
    ("no, I think that's", False), ("it still hasn't", False), ("thank you", True), ("yes, that's right.", True),
    ("I need to bring the return in.", True), ("I want to log in", True),
    ("Hi, I'm checking on my order, the number is 339 075.", True), ("my number is 555-0123", True),
])
def test_words_that_stop_mid_phrase(text, finished):
    assert sounds_finished(text) is finished


async def test_a_goodbye_waits_only_for_the_nodes_silence(flow):
    session, out, _ = make(flow)
    await session.start()
    await session.on_transcript("opening hours")
    now = time.time()
    await session.on_transcript("no", settles_at=now + 5, silence_ends_at=now + 0.1)
    assert out.hangups and time.time() - now < 1  # not the whole join window

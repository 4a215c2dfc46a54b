"""The review queue (#23): which turns are worth a human look, read from the call log on SQLite
and PostgreSQL, and similar turns grouped so one action labels many."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from ivr.calllog.review_queue import why
from ivr.calllog.store import open_store
from ivr.nlu.grouping import group_similar
from ivr.review.groups import review_groups
from ivr.tools.review import format_groups

T0 = 1_700_000_000.0


def nlu(text, intent, confidence, *, source="router", ranked=None, escalate=False, trigger=None, node="main_menu"):
    return {"node": node, "text": text, "intent": intent, "confidence": confidence, "source": source,
            "ranked": ranked if ranked is not None else ([[intent, confidence]] if intent else []),
            "decision": {"escalate": escalate, "target": "human" if escalate else None, "trigger": trigger,
                         "reason": None}}


def test_why_a_turn_is_worth_a_look():
    assert why(nlu("opening hours", "hours", 0.95)) == []
    assert why(nlu("the thing with the stuff", "out_of_scope", 0.8)) == ["out_of_scope"]
    assert why(nlu("mumble", None, 0.0)) == ["out_of_scope"]
    assert why(nlu("is it open maybe", "hours", 0.55)) == ["low_confidence"]
    # the small model said no to the router's best guess
    assert why(nlu("my parcel", "out_of_scope", 0.6, source="slm", ranked=[["order", 0.5]])) == [
        "out_of_scope", "disagreed"]
    assert why(nlu("I am furious", "order", 0.9, escalate=True, trigger="frustration")) == ["escalated"]
    # a collect node's answer that its slot parser took is understood, whatever the intent says
    assert why({**nlu("1 2 3 4 5 6", None, 1.0, node="ask_order"), "source": "slot"}) == []
    assert why({**nlu("yes", None, 0.0, node="confirm"), "slots": [{"slot": "ok", "value": True}]}) == []
    assert why({**nlu("blue", None, 0.0, node="ask_order"), "source": "none"}) == ["out_of_scope"]  # a no-match
    assert why({**nlu("order 123456 maybe", "order", 0.6), "slots": [{"slot": "n", "value": "123456"}]}) == [
        "low_confidence"]  # a menu turn with a value in passing is judged by its intent
    # the caller said it again: the line did not answer it as they meant, however sure it was
    assert why({**nlu("where is my order", "hours", 0.95), "signals": {"cues": ["said the same thing again"]}}) == [
        "repeated"]
    # while the language model holds the call, its turns are not the script's to review
    assert why({**nlu("and what about Tuesday", None, 0.0), "source": "llm_handoff"}) == []


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def _call(s, cid, events, *, flow="customer_service", at=0.0, meta=None):
    s.start_call(cid, flow=flow, flow_version="v1", started_at=T0 + at, meta=meta)
    for i, data in enumerate(events):
        s.add_event(cid, "nlu", data, ts=T0 + at + 1 + i)
    s.end_call(cid, "completed", ended_at=T0 + at + 30)


def test_the_queue_holds_the_turns_worth_a_look_and_nothing_sensitive(store):
    _call(store, "CA1", [nlu("opening hours", "hours", 0.97), nlu("where is my parcel", "out_of_scope", 0.7)])
    _call(store, "CA2", [nlu("[redacted]", "out_of_scope", 0.2, node="ask_pin"),
                         nlu("I want my money back", "order", 0.5)], at=10)
    _call(store, "CA3", [nlu("bank stuff", "out_of_scope", 0.9)], flow="bank", at=20)
    _call(store, "BR1", [nlu("testing testing", "out_of_scope", 0.9)], at=30, meta={"channel": "browser"})
    assert store.flush()
    queue = store.review_queue()
    assert [(t["call_id"], t["text"]) for t in queue] == [
        ("CA3", "bank stuff"), ("CA2", "I want my money back"), ("CA1", "where is my parcel")]
    assert queue[1]["reasons"] == ["low_confidence"] and queue[1]["flow_version"] == "v1"
    assert queue[1]["node"] == "main_menu" and queue[1]["intent"] == "order"
    assert [t["call_id"] for t in store.review_queue(flow="customer_service")] == ["CA2", "CA1"]
    assert [t["call_id"] for t in store.review_queue(limit=1)] == ["CA3"]
    assert [t["call_id"] for t in store.review_queue(channel="browser")] == ["BR1"]
    assert [t["call_id"] for t in store.review_queue(since=T0 + 15)] == ["CA3"]


def _bag(texts):
    """A stand-in embedder: hashed bag of words, so shared words mean similar vectors."""
    out = np.zeros((len(texts), 64), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % 64] += 1
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def test_similar_turns_are_grouped_biggest_group_first():
    texts = ["where is my parcel", "Where is my parcel?", "where is my parcel now", "cancel my card",
             "cancel my card please", "what"]
    groups = group_similar(texts, _bag(texts), threshold=0.8)
    assert groups == [[0, 1, 2], [3, 4], [5]]
    assert group_similar([], np.zeros((0, 64))) == []


def test_review_groups_say_why_what_the_line_did_and_where():
    turns = [{"text": t, "intent": i, "confidence": c, "reasons": r, "flow": "cs", "node": "main_menu",
              "flow_version": "v1", "call_id": f"CA{n}", "seq": 4}
             for n, (t, i, c, r) in enumerate([
                 ("where is my parcel", "out_of_scope", 0.8, ["out_of_scope"]),
                 ("where is my parcel now", None, 0.0, ["out_of_scope"]),
                 ("where is my parcel please", "order", 0.6, ["low_confidence"]),
                 ("cancel my card", "out_of_scope", 0.9, ["out_of_scope"])])]
    groups = review_groups(turns, _bag, threshold=0.7)
    assert [g["size"] for g in groups] == [3, 1]
    assert groups[0]["reasons"] == [("out_of_scope", 2), ("low_confidence", 1)]
    assert groups[0]["did"] == [("out_of_scope", 1), ("no match", 1), ("order", 1)]
    assert groups[0]["nodes"] == [("cs:main_menu", 3)]
    text = "\n".join(format_groups(groups, total=4, shown=1, examples=2))
    assert "4 turns to review in 2 groups (the 1 biggest below)" in text
    assert '1. 3 turns like "where is my parcel"' in text and "... and 1 more" in text
    assert "(turn CA0:4)" in text  # call id and event number: where `ivr calls show` finds it


def test_a_queued_turn_keeps_its_vector_and_is_grouped_without_the_embedder(store):
    from ivr.calllog.review_queue import unpack_vector, with_vector

    texts = ["where is my parcel", "where is my parcel now", "opening hours"]
    vectors = _bag(texts)
    records = [with_vector(nlu(texts[0], "out_of_scope", 0.8), vectors[0], "bag:64"),
               with_vector(nlu(texts[1], "order", 0.5), vectors[1], "bag:64"),
               with_vector(nlu(texts[2], "hours", 0.97), vectors[2], "bag:64"),  # understood: nothing kept
               with_vector(nlu("[redacted]", "out_of_scope", 0.2), vectors[0], "bag:64")]
    assert "vec" in records[0] and "vec" in records[1] and "vec" not in records[2] and "vec" not in records[3]
    assert np.allclose(unpack_vector(records[0]["vec"]), vectors[0], atol=1e-3)  # float16 is plenty for grouping
    assert len(records[0]["vec"]) < 400  # 64 dims here; 384 (the shipped embedder) is about 1 KB
    _call(store, "CA1", records)
    assert store.flush()
    queue = store.review_queue()

    def no_embedder(texts):
        raise AssertionError(f"embedded again: {texts}")

    groups = review_groups(queue, no_embedder, threshold=0.7, model="bag:64")
    assert [g["size"] for g in groups] == [2] and "vec" not in groups[0]["turns"][0]
    embedded = []
    another = review_groups(queue, lambda t: embedded.extend(t) or _bag(t), threshold=0.7, model="other:64")
    assert sorted(embedded) == sorted(texts[:2]) and [g["size"] for g in another] == [2]  # another model's: afresh
    assert unpack_vector("not base64!") is None and unpack_vector(None) is None


async def test_the_line_keeps_the_vector_of_a_turn_it_did_not_understand():
    """A real session on the router: the turn that missed keeps its vector, the one it
    understood keeps none (the call log grows only by the queue's turns)."""
    from ivr.calllog.review_queue import unpack_vector
    from ivr.conversation.session import CallSession
    from ivr.dialog.loader import load_flow_text
    from ivr.nlu.intents import IntentClassifier
    from ivr.nlu.service import NLUService
    from tests.fakes import EventList, RecordingOutput
    from tests.unit.test_intents import FakeEmbedder

    embedder = FakeEmbedder()
    embedder.id = "fake:64"
    flow = """flow: shop
start: main
nodes:
  main:
    say: Hours or an order?
    intents:
      hours: {examples: [what are your opening hours, when are you open, store hours], goto: main}
      order: {examples: [where is my order, track my package, order status], goto: main}
"""
    events = EventList()
    session = CallSession("CA1", load_flow_text(flow), RecordingOutput(), nlu=NLUService(IntentClassifier(embedder)),
                          events=events)
    await session.start()
    await session.on_transcript("when are you open")
    await session.on_transcript("my cat sings opera", speech_end=1000.0, speech_start=998.6)
    understood, missed = events.of("nlu")
    assert understood["intent"] == "hours" and "vec" not in understood
    assert missed["intent"] == "out_of_scope" and missed["vec_by"] == "fake:64"
    assert missed["speech"] == [998.6, 1000.0] and "speech" not in understood  # where its words are recorded
    assert np.allclose(unpack_vector(missed["vec"]), embedder.encode(["my cat sings opera"])[0], atol=1e-3)


def test_the_queue_reads_page_after_page_without_losing_turns_of_the_same_moment(store, monkeypatch):
    import ivr.calllog.review_queue as rq

    monkeypatch.setattr(rq, "PAGE", 3)  # pages end in the middle of turns said at the same instant
    events = [nlu(f"turn {i}", "out_of_scope" if i % 2 else "hours", 0.9) for i in range(10)]
    store.start_call("CA1", flow="customer_service", flow_version="v1", started_at=T0)
    for i, data in enumerate(events):
        store.add_event("CA1", "nlu", data, ts=T0 + 1 + i // 4)  # four events share each timestamp
    store.end_call("CA1", "completed", ended_at=T0 + 30)
    assert store.flush()
    queue = store.review_queue()
    assert [t["text"] for t in queue] == [f"turn {i}" for i in (9, 7, 5, 3, 1)]
    assert [t["text"] for t in store.review_queue(limit=2)] == ["turn 9", "turn 7"]
    # turns reviewed already take no room: the limit counts the turns still to review
    assert [t["text"] for t in store.review_queue(limit=2, skip=lambda t: t["text"] in ("turn 9", "turn 5"))] == [
        "turn 7", "turn 3"]


def test_a_group_holds_one_flows_turns():
    turns = [{"text": "where is my parcel", "intent": None, "confidence": 0.0, "reasons": ["out_of_scope"],
              "flow": flow, "node": "main", "flow_version": "v", "call_id": f"CA{n}", "seq": 2}
             for n, flow in enumerate(["shop", "shop", "bank"])]
    groups = review_groups(turns, _bag)
    assert [(g["size"], g["nodes"]) for g in groups] == [(2, [("shop:main", 2)]), (1, [("bank:main", 1)])]


def test_a_second_instance_sees_the_same_queue_and_decisions(store_url):
    """Two servers on one call log (PostgreSQL in production): what one's reviewer decides, the
    other's queue leaves out."""
    from ivr.calllog.review_queue import settled_turns
    from ivr.review.changes import settle
    from ivr.review.groups import reviewed

    one, two = open_store(store_url), open_store(store_url)
    try:
        _call(one, "CA1", [nlu("where is my parcel", "out_of_scope", 0.8), nlu("what's the weather", "out_of_scope", 0.9)])
        assert one.flush()
        assert [t["text"] for t in two.review_queue()] == ["what's the weather", "where is my parcel"]
        weather = next(t for t in two.review_queue() if t["text"] == "what's the weather")
        settle(one, [f"CA1:{weather['seq']}"], "dismissed", by="dana")
        seen = reviewed(set(), settled_turns(two.review_actions(limit=None)))
        assert [t["text"] for t in two.review_queue(skip=seen)] == ["where is my parcel"]
        assert [a["action"] for a in two.review_actions()] == ["dismissed"]
    finally:
        one.close()
        two.close()

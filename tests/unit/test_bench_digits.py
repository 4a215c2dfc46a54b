"""The numbers-read-aloud benchmark's pure parts: how a number is grouped and read, how the
VAD's speech events become a caller's turns, and the prompt a digit node gives whisper."""

import random

from ivr.bench.digits import groups_for, make_cases
from ivr.media.pipeline import recogniser_prompt
from ivr.media.vad_segments import Speech, turns


def test_numbers_are_grouped_the_way_people_read_them():
    assert groups_for(6) == (3, 3) and groups_for(10) == (3, 3, 4) and groups_for(16) == (4, 4, 4, 4)
    cases = make_cases(6, 6, random.Random(0))
    assert {c.style for c in cases} == {"single", "grouped"} and {c.speaker for c in cases} == {"jackson", "nicolas", "theo"}
    assert all(len(c.digits) == 6 and c.digits.isdigit() for c in cases)
    assert all(c.style == "grouped" for c in make_cases(4, 16, random.Random(0)))  # card numbers are read in fours


def test_speech_within_the_end_of_turn_wait_is_the_same_turn():
    # the VAD's stop events come 0.2 s into each pause; the turn waits 1.0 - 0.2 s more
    spans = [Speech(0.5, 1.2), Speech(1.6, 2.3), Speech(3.2, 3.9)]
    assert turns(spans, 1.0, 0.2) == [(0.5, 2.3), (3.2, 3.9)]
    assert turns(spans, 1.5, 0.2) == [(0.5, 3.9)]
    assert turns([], 1.0, 0.2) == []


def test_the_start_of_a_number_holds_the_turn_for_the_longer_wait():
    spans = [Speech(0.5, 1.2), Speech(2.0, 2.7), Speech(5.0, 5.5)]
    incomplete = lambda a, b: b < 2.5  # noqa: E731 - the words up to 1.2 s are the start of the number
    assert turns(spans, 1.0, 0.2, goes_on=incomplete, longer=2.0) == [(0.5, 2.7), (5.0, 5.5)]
    assert turns(spans, 1.0, 0.2) == [(0.5, 1.2), (2.0, 2.7), (5.0, 5.5)]


def test_the_bench_line_recovers_a_number_the_way_the_server_does():
    from ivr.bench.digits import bench_engine
    from ivr.nlu.understanding import Understanding

    engine = bench_engine(6)
    engine.on_text("4 5 7", Understanding())
    assert engine.state.partial == "457" and engine.number_incomplete("2")
    assert bench_engine(10).flow.slots["number"].type == "phone"


def test_digit_nodes_give_whisper_no_prompt_of_their_own():
    assert recogniser_prompt((), "digits") is None and recogniser_prompt((), "phone") is None
    assert recogniser_prompt(("Doctor Patel", "checkup"), "text") == "Doctor Patel, checkup"

"""The bot's audio is sent a fixed lead ahead of the caller's ear (ivr/media/pacing.py)."""

from __future__ import annotations

from ivr.media.pacing import PlayoutClock


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_a_prompt_starts_with_the_lead_sent_at_once_then_keeps_pace():
    now = Clock()
    clock = PlayoutClock(0.3, now)
    waits = [clock.sent(0.04) for _ in range(10)]
    # 0.3 s of audio goes out without waiting (pipecat waited a chunk after every chunk)
    assert waits[:7] == [0.0] * 7
    assert abs(waits[7] - 0.02) < 1e-9 and abs(waits[8] - 0.06) < 1e-9
    # after waiting, the lead is held: each chunk waits its own length
    now.t += waits[9]
    assert abs(clock.sent(0.04) - 0.04) < 1e-9
    assert abs(clock.remaining() - 0.34) < 1e-9


def test_after_a_stall_the_phone_has_played_what_it_had_and_the_lead_refills():
    now = Clock()
    clock = PlayoutClock(0.3, now)
    for _ in range(10):
        clock.sent(0.04)
    now.t += 2.0  # the server stalled (or the prompt paused between sentences)
    assert clock.remaining() == 0.0
    assert clock.sent(0.04) == 0.0  # nothing queued: send at once, no catching up on the past


def test_clear_forgets_what_the_phone_had_queued():
    now = Clock()
    clock = PlayoutClock(0.3, now)
    for _ in range(20):
        clock.sent(0.04)
    assert clock.remaining() > 0.3
    clock.reset()  # barge-in: Twilio dropped its buffer
    assert clock.remaining() == 0.0 and clock.sent(0.04) == 0.0


def test_lead_zero_is_real_time_pacing():
    now = Clock()
    clock = PlayoutClock(0.0, now)
    assert abs(clock.sent(0.04) - 0.04) < 1e-9

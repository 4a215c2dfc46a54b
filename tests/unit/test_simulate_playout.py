"""The simulated phone's playout: what counts as an underrun, and where it fell."""

from __future__ import annotations

from ivr.tools.simulate import JITTER_BUFFER_S, CallerSimulator, SimulationReport


def _phone():
    sim = CallerSimulator("http://127.0.0.1:1")
    return sim, SimulationReport(call_sid="CA1", flow="f")


def test_audio_on_time_plays_without_underruns():
    sim, report = _phone()
    for k in range(50):  # 20 ms frames arriving every 20 ms
        sim._play_out(100.0 + k * 0.02, 0.02, report)
    assert report.underruns == 0


def test_a_late_frame_mid_spurt_is_an_underrun_and_says_if_it_cut_speech():
    sim, report = _phone()
    t = 100.0
    for k in range(10):
        sim._last_loud = True
        sim._play_out(t + k * 0.02, 0.02, report)
    late = t + 10 * 0.02 + JITTER_BUFFER_S + 0.15  # the buffer ran dry 150 ms before this
    sim._play_out(late, 0.02, report)
    assert report.underruns == 1
    at, gap, loud = report.underrun_gaps[0]
    assert at == round(late - t, 2) and 140 <= gap <= 160 and loud is True
    # a gap after the voice's own pause is told apart
    sim._last_loud = False
    sim._play_out(late + JITTER_BUFFER_S + 0.1 + 0.02, 0.02, report)
    assert report.underruns == 1 and report.late_pauses == 1 and report.underrun_gaps[1][2] is False


def test_a_long_silence_starts_a_new_spurt_not_an_underrun():
    sim, report = _phone()
    sim._play_out(100.0, 0.02, report)
    sim._play_out(101.5, 0.02, report)  # the bot finished, then spoke again
    assert report.underruns == 0

import pytest

from ivr.conversation.turn_taking import is_backchannel


@pytest.mark.parametrize("text", ["mhm", "Mm-hmm.", "uh-huh", "okay", "OK, got it", "yeah right", "I see", "thank you"])
def test_acknowledgements_are_backchannels(text):
    assert is_backchannel(text)


@pytest.mark.parametrize("text", ["", "...", "no", "agent", "okay I want to check my order", "yes I lost my card",
                                  "what", "okay okay okay okay okay"])
def test_words_that_ask_or_answer_are_not(text):
    assert not is_backchannel(text)

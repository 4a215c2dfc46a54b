import pytest

from ivr.nlu.signals import detect


@pytest.mark.parametrize("text", [
    "this is ridiculous I've been waiting for an hour",
    "you're useless, you don't understand anything",
    "I'm so frustrated with this stupid system",
    "what the hell is going on with my card",
    "how many times do I have to say it",
    "no no no that's not what I said",
])
def test_frustration(text):
    assert detect(text).frustration >= 0.4, detect(text)


@pytest.mark.parametrize("text", [
    "I'd like to check my balance please",
    "yes that's right",
    "my card hasn't arrived yet",
    "what time do you close on saturday",
    "four five seven two",
])
def test_calm(text):
    s = detect(text)
    assert s.frustration == 0 and not s.wants_person and not s.multiple_requests, s


@pytest.mark.parametrize("text", [
    "can I speak to a real person", "let me talk to a human", "get me a representative",
    "I want to speak with a supervisor", "operator",
])
def test_wants_person(text):
    assert detect(text).wants_person


@pytest.mark.parametrize("text", [
    "I want to check my balance and also report a lost card",
    "I have two questions, one about my bill",
    "pay my electricity bill and I also need to change my address",
])
def test_multiple_requests(text):
    assert detect(text).multiple_requests

"""TwiML documents, built with the twilio package so escaping is never hand-rolled."""

from __future__ import annotations

from twilio.twiml.voice_response import Connect, Dial, VoiceResponse


def connect_stream(stream_url: str, parameters: dict[str, str]) -> str:
    """Answer a call by opening a bidirectional media stream to us."""
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=stream_url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    return str(response)


def busy(message: str = "All our lines are busy right now. Please call again in a few minutes.") -> str:
    response = VoiceResponse()
    response.say(message)
    response.hangup()
    return str(response)


def reject(message: str) -> str:
    response = VoiceResponse()
    response.say(message)
    response.hangup()
    return str(response)


def dial(target: str, *, caller_id: str | None = None, whisper_url: str | None = None) -> str:
    """Transfer: a phone number (+15550100) or a SIP address (sip:agent@pbx.example.com).

    whisper_url: TwiML Twilio plays to the agent on answer, before connecting the caller."""
    response = VoiceResponse()
    dial_verb = Dial(caller_id=caller_id) if caller_id else Dial()
    extra = {"url": whisper_url} if whisper_url else {}
    if target.startswith("sip:"):
        dial_verb.sip(target, **extra)
    else:
        dial_verb.number(target, **extra)
    response.append(dial_verb)
    return str(response)

"""The whisper: what the agent hears before a transferred caller is put through.

Twilio fetches the `url` of the `<Number>`/`<Sip>` it dials when the agent answers and plays
that TwiML to the agent only. The summary travels in that URL with an HMAC over it and the call
SID, so our endpoint says only what this server wrote, for that call, for a limited time: nobody
can make it speak their own text. Stateless, like the stream token, so any instance can answer.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from urllib.parse import urlencode

from twilio.twiml.voice_response import VoiceResponse

PATH = "/twilio/whisper"
TTL_S = 900  # an agent may take minutes to pick up; after that the link is dead


def _mac(secret: str, call_sid: str, summary: str, issued: int) -> str:
    body = f"whisper|{call_sid}|{issued}|{summary}".encode()
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()[:18]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def whisper_url(base: str, secret: str, call_sid: str, summary: str, *, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    query = urlencode({"call": call_sid, "s": summary, "t": f"{issued}.{_mac(secret, call_sid, summary, issued)}"})
    return f"{base.rstrip('/')}{PATH}?{query}"


def check_whisper(secret: str, call_sid: str, summary: str, token: str, *, ttl: int = TTL_S,
                  now: float | None = None) -> str | None:
    """None when the link is ours and fresh, else why not (for the log)."""
    issued_text, _, mac = (token or "").partition(".")
    if not issued_text.isdigit() or not mac:
        return "malformed token"
    issued = int(issued_text)
    if (now if now is not None else time.time()) - issued > ttl:
        return "expired"
    if not hmac.compare_digest(mac, _mac(secret, call_sid, summary, issued)):
        return "bad signature"
    return None


def say_to_agent(summary: str) -> str:
    response = VoiceResponse()
    response.say(summary)
    return str(response)


def public_http_base(public_url: str | None, url: str, headers) -> str:
    """The base URL Twilio reaches us at, as the webhook works it out (proxy headers first)."""
    if public_url:
        return public_url.rstrip("/")
    scheme, _, rest = url.partition("://")
    proto = headers.get("x-forwarded-proto") or {"ws": "http", "wss": "https"}.get(scheme, scheme)
    host = headers.get("x-forwarded-host") or headers.get("host") or rest.split("/", 1)[0]
    return f"{proto}://{host}"

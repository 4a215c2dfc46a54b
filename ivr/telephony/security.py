"""Webhook signatures and per-call stream tokens.

Twilio signs each webhook with the account's auth token (X-Twilio-Signature over the full URL
and the POST parameters). The media websocket carries no such signature, so the webhook hands
Twilio a short-lived HMAC token as a `<Stream>` parameter; the websocket is accepted only with a
valid token for that call. The token is stateless, so any instance behind a proxy can check it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from twilio.request_validator import RequestValidator


def valid_twilio_signature(auth_token: str, url: str, params: dict[str, str], signature: str | None) -> bool:
    if not signature:
        return False
    return RequestValidator(auth_token).validate(url, params, signature)


def twilio_signature(auth_token: str, url: str, params: dict[str, str]) -> str:
    """What Twilio would send: the simulator signs its webhooks with this."""
    return RequestValidator(auth_token).compute_signature(url, params)


def make_stream_token(secret: str, call_sid: str, flow: str, *, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    body = f"{call_sid}|{flow}|{issued}"
    mac = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()[:18]
    return f"{issued}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def check_stream_token(
    secret: str, token: str | None, call_sid: str, flow: str, *, ttl: int = 300, now: float | None = None
) -> str | None:
    """None when valid, else the reason it is not (for the log line)."""
    if not token or "." not in token:
        return "missing or malformed stream token"
    issued_text, _, _ = token.partition(".")
    try:
        issued = int(issued_text)
    except ValueError:
        return "malformed stream token"
    now = now if now is not None else time.time()
    if now - issued > ttl:
        return f"stream token expired ({int(now - issued)}s old)"
    if issued - now > 30:
        return "stream token issued in the future"
    expected = make_stream_token(secret, call_sid, flow, now=issued)
    if not hmac.compare_digest(expected, token):
        return "stream token does not match this call and flow"
    return None

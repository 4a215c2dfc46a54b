"""Twilio REST actions on a live call: transfer (redirect to <Dial>) and hang up.

Transferring updates the live call with new TwiML, which ends the media stream cleanly and
leaves no bot listening to hold music (docs/architecture.md, "Transfers"). The blocking twilio client runs on
a thread; a call that has already ended is not an error worth more than a log line.
"""

from __future__ import annotations

import asyncio
import logging

from .agent_whisper import whisper_url
from .twiml import dial

log = logging.getLogger("ivr.telephony")


class TwilioCalls:
    def __init__(self, account_sid: str, auth_token: str, *, client=None, api_url: str | None = None):
        if client is None:
            from twilio.rest import Client

            client = Client(account_sid, auth_token)
        if api_url:
            # Twilio's own client, another host: a regional edge, or a test's local server.
            client.api.base_url = api_url.rstrip("/")
        self._client = client

    async def transfer(self, call_sid: str, target: str, *, whisper_url: str | None = None) -> bool:
        twiml = dial(target, whisper_url=whisper_url)
        try:
            await asyncio.to_thread(lambda: self._client.calls(call_sid).update(twiml=twiml))
            log.info("call %s: transferred to %s", call_sid, target)
            return True
        except Exception as exc:
            log.error("call %s: transfer to %s failed: %s", call_sid, target, exc)
            return False

    def transfer_for(self, call_sid: str, *, secret: str, public_base: str):
        """One call's `transfer(target, reason, summary)`: the live call is redirected to
        <Dial>, and the agent first hears `summary` from this server's whisper endpoint."""

        async def transfer(target: str, reason: str, summary: str = "") -> bool:
            whisper = whisper_url(public_base, secret, call_sid, summary) if summary else None
            return await self.transfer(call_sid, target, whisper_url=whisper)

        return transfer

    async def hang_up(self, call_sid: str) -> bool:
        try:
            await asyncio.to_thread(lambda: self._client.calls(call_sid).update(status="completed"))
            return True
        except Exception as exc:
            log.warning("call %s: REST hang-up failed (call may already be over): %s", call_sid, exc)
            return False

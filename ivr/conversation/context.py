"""Which call the running task works for.

Set when a call's pipeline starts (ivr.media.pipeline); asyncio copies context into the tasks a
call creates, so every log line the call causes, ours or pipecat's, carries its id
(ivr.serving.logs reads it).
"""

from __future__ import annotations

import contextvars

call_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("ivr_call_id", default=None)

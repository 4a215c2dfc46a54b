"""Logging: plain text for people, JSON lines for log collectors, the call id on every line.

The call id lives in a contextvar set when a call's pipeline starts; asyncio copies context
into the tasks a call creates, so every line a call causes (ours or pipecat's) carries it.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from ivr.conversation.context import call_id_var


class _CallIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.call_id = call_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if getattr(record, "call_id", None):
            out["call_id"] = record.call_id
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        call_id = getattr(record, "call_id", None)
        return f"{text} [call {call_id}]" if call_id and call_id not in record.getMessage() else text


def setup(level: str = "INFO", *, json_lines: bool = False, pipecat_level: str = "WARNING") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_CallIdFilter())
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    try:  # pipecat logs through loguru: send its warnings and errors through the same handler
        from loguru import logger as loguru_logger

        loguru_logger.remove()

        def forward(message) -> None:
            record = message.record  # loguru's level numbers match logging's (WARNING = 30)
            logging.getLogger(f"pipecat.{record['name']}").log(record["level"].no, record["message"])

        loguru_logger.add(forward, level=pipecat_level)
    except ImportError:
        pass

import json
import logging

from ivr.conversation.context import call_id_var
from ivr.serving.logs import JsonFormatter, _CallIdFilter


def test_json_lines_carry_the_call_id():
    record = logging.LogRecord("ivr.media", logging.WARNING, __file__, 1, "dropped %s", ("x",), None)
    token = call_id_var.set("CA123")
    try:
        _CallIdFilter().filter(record)
    finally:
        call_id_var.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["call_id"] == "CA123" and line["msg"] == "dropped x" and line["level"] == "warning"

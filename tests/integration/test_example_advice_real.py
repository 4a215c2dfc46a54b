"""`ivr validate --explain` tells a designer which intents' examples are too few or too alike,
with the real router (MiniLM embeds them; about a second)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

PHARMACY = """
flow: pharmacy
start: menu
nodes:
  menu:
    say: How can I help?
    intents:
      refill:
        examples: [refill my prescription, prescription refill, I need a refill]
        goto: done
      hours:
        examples:
          - what time do you close tonight
          - are you open on sunday
          - I'm trying to figure out if I can still pick something up after work today
          - hi yeah when does the pharmacy counter open in the morning
          - is anybody there over the holiday weekend
          - do you stay open late on thursdays
          - until when can I come by today
          - I was wondering what your hours are
        goto: done
  done: {say: Thank you., hangup: true}
"""


def test_validate_explain_flags_the_intent_callers_would_not_reach(tmp_path, capsys):
    from ivr.tools.cli import main

    (tmp_path / "pharmacy.yaml").write_text(PHARMACY)
    assert main(["validate", "--explain", str(tmp_path / "pharmacy.yaml")]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if "intent refill:" in ln)
    assert "3 examples, write 8 or more" in line and "examples alike" in line and "every menu" in line
    assert "intent hours" not in out  # eight examples worded as different callers would

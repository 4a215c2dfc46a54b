"""Whether what a caller says over the bot is an interruption or a backchannel.

Callers say "mhm", "okay", "right" while a prompt plays to show they are listening; a line
that stops talking at every one of them (pipecat issues 1084, 3036) sounds broken. So the
voice activity detector alone never cuts a prompt off: the caller must keep talking for a
moment (the media layer's `barge_in_after`), or say real words. Pure functions, no I/O.
"""

from __future__ import annotations

import re

# Words that carry no request on their own. Multi-word backchannels ("uh huh", "all right",
# "got it", "I see", "thank you") are covered word by word.
BACKCHANNEL_WORDS = frozenset(
    "mhm mm mmm hmm hm uh huh um erm er ah oh okay ok k yes yeah yea yep yup ya right sure alright all "
    "got it i see cool great good fine thanks thank you so well".split()
)
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("-", " "))


def is_backchannel(text: str) -> bool:
    """True for words that only acknowledge ("mhm", "okay", "uh-huh, right"); False for anything
    with a word that asks or answers something, and for no words at all."""
    ws = words(text)
    return bool(ws) and len(ws) <= 4 and all(w in BACKCHANNEL_WORDS for w in ws)

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
_WORD_OR_NUMBER = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def words(text: str, numbers: bool = False) -> list[str]:
    """The lower-case words of `text` (`numbers`: and the numbers among them)."""
    return (_WORD_OR_NUMBER if numbers else _WORD).findall(text.lower().replace("-", " "))


def is_backchannel(text: str) -> bool:
    """True for words that only acknowledge ("mhm", "okay", "uh-huh, right"); False for anything
    with a word that asks or answers something, and for no words at all."""
    ws = words(text)
    return bool(ws) and len(ws) <= 4 and all(w in BACKCHANNEL_WORDS for w in ws)


# Words a finished request does not end on: the caller has paused in the middle of a phrase
# ("I'd like to check on ... my order", "my card and ..."). Ending on one makes the line wait
# longer for the rest (a wrong guess costs half a second), and never answer at the first pause
# (a wrong guess there cuts the caller off). Endings that finish real requests ("that", "you",
# "know", "order", the particles of "log in", "bring it over", "called before") are left out;
# whether the words are finished is for the NLU's confidence.
HANGING_WORDS = frozenset(
    # joining words
    "and or but so because cause cuz if when while since whether than as then plus also "
    # prepositions
    "to of for from with about on at by into onto without within between "
    "like via per towards toward regarding "
    # determiners and possessives
    "the a an my your our their his her its this these those some any every each another "
    "which what whose "
    # subjects, auxiliaries and modals a clause goes on from
    "i we they he she i'm i'd i'll i've we're we'd it's there's is are was were am be been being "
    "do does did has had can could would should will shall may might must "
    # "that's ...", "it hasn't ...": a clause broken off after its verb
    "that's what's where's who's how's here's he's she's you're they're "
    "hasn't haven't hadn't didn't doesn't isn't aren't wasn't weren't can't couldn't won't wouldn't shouldn't "
    # wanting without the thing wanted
    "want wanted wanna need needed gonna trying try "
    # fillers and hedges
    "um uh er erm uhm hmm ah just actually basically really very um-hmm".split()
)
_UNFINISHED_PUNCTUATION = (",", "...", "…", "-", "—", ";", ":")
# "what time do you ...", "can I ...": a question broken off after its subject. ("thank you"
# and "see you" are finished, so "you" alone is not a hanging word.)
_ASKING = frozenset("do does did can could would will should are were is was have has may might shall".split())
_SUBJECTS = frozenset("you i we they he she it".split())


def sounds_finished(text: str) -> bool:
    """Whether the words could be a whole request: False when they stop on a word a sentence
    goes on from ("...check on my", "...and") or on a comma or a trailing ellipsis (whisper's
    own sign that the speech broke off). True does not mean finished, only not cut mid-phrase."""
    stripped = text.strip()
    if not stripped or stripped.endswith(_UNFINISHED_PUNCTUATION):
        return False
    ws = words(stripped, numbers=True)  # "... the number is 417293" ends on a value
    if not ws or ws[-1] in HANGING_WORDS:
        return False
    return not (len(ws) >= 2 and ws[-1] in _SUBJECTS and ws[-2] in _ASKING)

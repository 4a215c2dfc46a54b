"""`make bench` / `python -m ivr.bench`: the benchmarks, each printing a table.

1. Calls (ivr.bench.calls): scripted calls through a real `ivr serve` at 1, 2, 4 and 8 at
   once, voice to voice and per stage, against the same server driven by LLM tool calls.
2. STT (ivr.bench.stt): whisper's word error rate and latency on phone audio, per setting.
3. NLU (ivr.bench.nlu): Banking77 mapped onto two bank menus; router, router + SLM (what the
   server runs) and the LLM tool-call baseline on the same GGUF, in one process so the ratios
   are honest; accuracy, out-of-scope recall, calibration error, latency.
4. Slots (ivr.bench.slots): generated spoken values, parsed from text and from speech through
   piper, 8 kHz mu-law and whisper.
5. Values said in passing (ivr.bench.sgd): first caller turns of twelve Schema-Guided Dialogue
   services turned into flows; intent, every slot value of the turn, and latency, against an
   LLM tool call per turn on the same GGUF.
6. Numbers read aloud (ivr.bench.digits): real recorded voices reading six-digit numbers through
   the phone path, VAD, whisper and the parser, stage by stage, then the line's own recovery,
   offline and over the Twilio protocol into a real `ivr serve`, against the end-of-turn rule
   before the hold (`no_hold`), with the piper voice as a control; and 16-digit card numbers.
7. Escalation signals (ivr.bench.signals): upset customers (airline tweets, VADER's rated
   sentences, with hand-labelled distress and sarcasm, and turns written as callers speak),
   several requests joined from Banking77, Banking77 disputes, hand-labelled stories with a
   question, against ordinary requests (Banking77, SGD); recall, false alarms, calibration,
   the step's time.
8. Browser calls (ivr.bench.browser): the dashboard's Try a call page in Chromium with a fake
   microphone against the phone simulator on the same server: voice to voice, answer, underruns,
   one at a time and four at once.
9. The review loop (ivr.bench.review): Banking77 batches routed, the review queue's biggest
   groups labelled, the next batch routed by the improved line against the line as it started.
10. The Review page (ivr.bench.review_page): 10,000 queued turns in a call log, loaded through
   the page's API, with the vectors the line keeps and without.
Takes ~85 minutes on 2 cores; each runs alone as
`ivr bench calls|stt|nlu|slots|sgd|digits|signals|browser|review|review-page`.
"""

import sys

from .browser import main as browser_main
from .calls import main as calls_main
from .digits import main as digits_main
from .nlu import main as nlu_main
from .review import main as review_main
from .review_page import main as review_page_main
from .sgd import main as sgd_main
from .signals import main as signals_main
from .slots import main as slots_main
from .stt import main as stt_main


def main() -> int:
    status = calls_main([])
    status |= stt_main([])
    status |= nlu_main([])
    status |= slots_main(["--per-type", "20", "--audio"])
    status |= sgd_main([])
    status |= signals_main([])
    status |= digits_main(["--control", "--live", "--levers", "no_hold"])
    status |= digits_main(["--length", "16", "--cases", "30", "--levers", "no_hold"])
    status |= browser_main([])
    status |= review_main([])
    status |= review_page_main([])
    return status


if __name__ == "__main__":
    sys.exit(main())

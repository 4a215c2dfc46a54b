"""`make bench` / `python -m ivr.bench`: the benchmarks, each printing a table.

1. NLU (ivr.bench.nlu): Banking77 mapped onto two bank menus; router, router + SLM (what the
   server runs) and the LLM tool-call baseline on the same GGUF, in one process so the ratios
   are honest; accuracy, out-of-scope recall, calibration error, latency.
2. Slots (ivr.bench.slots): generated spoken values, parsed from text and from speech through
   piper, 8 kHz mu-law and whisper.
Per-turn voice-to-voice latency through the Twilio protocol is measured with `ivr simulate`
against a running server. Takes ~20 minutes on 2 cores.
"""

import sys

from .nlu import main as nlu_main
from .slots import main as slots_main


def main() -> int:
    status = nlu_main([])
    status |= slots_main(["--per-type", "20", "--audio"])
    return status


if __name__ == "__main__":
    sys.exit(main())

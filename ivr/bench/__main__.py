"""`make bench` / `python -m ivr.bench`: the benchmarks, each printing a table.

Today: the NLU step on Banking77 mapped onto two bank menus (router only, router + SLM, SLM
only), in one process so the ratios between modes are honest. Per-turn voice-to-voice latency
through the Twilio protocol is measured with `ivr simulate` against a running server.
"""

import sys

from .nlu_quick import main as nlu_main


def main() -> int:
    status = 0
    for menu in ("1", "2"):
        print(f"\n== NLU, Banking77 menu {menu} ==", flush=True)
        status |= nlu_main(["--menu", menu])
    return status


if __name__ == "__main__":
    sys.exit(main())

"""`python -m ivr.tools.selfcheck`: prove the installed models load and run on this CPU.

Run by `make install`. An import is not enough: a llama.cpp built for instructions this CPU
lacks imports fine and dies with SIGILL on the first evaluation.
"""

from __future__ import annotations

import sys


def main() -> int:
    import faster_whisper  # noqa: F401
    import piper  # noqa: F401

    from ivr.registry import model_registry, voice_registry

    registry = model_registry()
    for role in ("stt", "embedder", "slm"):
        info = registry.for_role(role)
        print(f"selfcheck: {role}: {info.version}")
    print(f"selfcheck: voice: {voice_registry().for_role('default').version}")
    slm = registry.for_role("slm")
    if slm.path is not None:
        import llama_cpp

        llm = llama_cpp.Llama(str(slm.path), n_ctx=64, n_threads=2, verbose=False)
        llm.eval(llm.tokenize(b"Hello there"))
        print("selfcheck: llama.cpp evaluates on this CPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())

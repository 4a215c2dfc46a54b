"""`ivr bench review-page`: how long the dashboard's Review page takes to load a queue of 10,000
turns (issue #23's target: under a second).

A call log (SQLite, or PostgreSQL with `--db`) is filled with 10,000 turns the review queue
shows: Banking77's requests (train and test, which no flow was written from), said at a bank's
menu and not understood, 5 to a call, each `nlu` event as the line writes it, with the router's
vector (ivr/calllog/review_queue.py `with_vector`). The Review page's API (GET
/dashboard/api/review, ivr/dashboard/review_api.py) is then asked for the queue by an HTTP
client in the same process, several times: the time is from the request to the parsed JSON,
and the server's own split (reading the call log; the rest: grouping, the flows' intents).
For comparison, the same turns without kept vectors, as a call log written before they were
kept reads: the queue is embedded at load (measured on 1,000 turns and scaled).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ivr.bench.nlu_quick import _read, data_dir
from ivr.bench.scoring import percentile


def fill_call_log(store, texts: list[str], vectors, model: str | None, *, per_call: int = 5) -> None:
    from ivr.calllog.review_queue import with_vector

    now = time.time() - 3600
    for start in range(0, len(texts), per_call):
        call = f"CA{start:032d}"
        store.start_call(call, flow="customer_service", flow_version="bench", started_at=now + start * 0.01)
        for i in range(start, min(start + per_call, len(texts))):
            event = {"node": "main_menu", "text": texts[i], "intent": "out_of_scope", "confidence": 0.86,
                     "source": "router", "ranked": [["order", 0.41], ["hours", 0.2]], "latency_ms": 9.0,
                     "decision": {"escalate": False}}
            store.add_event(call, "nlu", with_vector(event, vectors[i], model) if vectors is not None else event,
                            ts=now + i * 0.01)
        store.end_call(call, "caller_hangup", ended_at=now + start * 0.01 + 30)
        if start % 2000 == 0:
            store.flush(60)
    store.flush(60)


def time_page(db: str, embedder, runs: int, limit: int) -> list[dict]:
    from fastapi.testclient import TestClient

    from ivr.calllog.store import open_store
    from ivr.nlu.intents import IntentClassifier
    from ivr.nlu.service import NLUService
    from ivr.serving.app import create_app
    from ivr.serving.config import Settings
    from ivr.serving.flows import FlowRepository
    from ivr.serving.runtime import Runtime

    repo_flows = Path(__file__).resolve().parents[2] / "flows"
    settings = Settings(flows_dir=repo_flows, dashboard_token="bench", database_url=db, warm_up=False)  # no calls here
    flows = FlowRepository(repo_flows)
    flows.reload()
    store = open_store(db)
    runtime = Runtime(settings=settings, stt=None, tts=None, nlu=NLUService(IntentClassifier(embedder)),
                      store=store, flows=flows, models={}, secret="bench")
    out = []
    try:
        with TestClient(create_app(settings, runtime_factory=lambda: runtime)) as client:
            for _ in range(runs):
                started = time.perf_counter()
                response = client.get(f"/dashboard/api/review?limit={limit}", headers={"Authorization": "Bearer bench"})
                body = response.json()
                out.append({"ms": (time.perf_counter() - started) * 1000, "total": body["total"],
                            "groups": body["group_count"], **{f"server_{k}_ms": v for k, v in body["took_ms"].items()}})
    finally:
        store.close()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ivr bench review-page", description=__doc__.split("\n\n")[0])
    ap.add_argument("--turns", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--db", help="a PostgreSQL URL to fill and read instead of a temporary SQLite file (its tables "
                                 "get the bench's calls)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    from ivr.calllog.store import open_store
    from ivr.nlu.embedder import load_embedder

    d = data_dir()
    texts = [t for t, _ in _read(d / "train.csv") + _read(d / "test.csv")]
    random.Random(args.seed).shuffle(texts)
    texts = (texts * (args.turns // len(texts) + 1))[:args.turns]
    embedder = load_embedder(threads=2)
    started = time.perf_counter()
    vectors = embedder.encode(texts)
    embed_s = time.perf_counter() - started
    print(f"ivr bench review-page: {len(texts)} turns embedded in {embed_s:.1f} s (what a load without kept vectors "
          "would cost)", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="ivr-bench-review-page-"))
    rows = []
    try:
        db = args.db or str(folder / "calls.sqlite3")
        store = open_store(db)
        fill_call_log(store, texts, vectors, embedder.id)
        store.close()
        runs = time_page(db, embedder, args.runs, args.turns)
        ms = [r["ms"] for r in runs]
        rows.append({"case": "vectors kept (the line as it writes now)", "turns": runs[0]["total"],
                     "groups": runs[0]["groups"], "runs": len(ms), "p50_ms": round(percentile(ms, 50)),
                     "min_ms": round(min(ms)), "max_ms": round(max(ms)),
                     "server_read_ms": round(percentile([r["server_read_ms"] for r in runs], 50)),
                     "server_total_ms": round(percentile([r["server_total_ms"] for r in runs], 50))})
        if not args.db:
            old = str(folder / "old.sqlite3")
            few = texts[:1000]
            store = open_store(old)
            fill_call_log(store, few, None, None)
            store.close()
            embedder.clear_cache()
            [first] = time_page(old, embedder, 1, len(few))
            rows.append({"case": "no kept vectors, 1000 turns (embedded at load)", "turns": first["total"],
                         "groups": first["groups"], "runs": 1, "p50_ms": round(first["ms"]), "min_ms": round(first["ms"]),
                         "max_ms": round(first["ms"]), "server_read_ms": first["server_read_ms"],
                         "server_total_ms": first["server_total_ms"]})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    cols = ["case", "turns", "groups", "runs", "p50_ms", "min_ms", "max_ms", "server_read_ms", "server_total_ms"]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(f"\ntarget: {args.turns} queued turns load in under 1000 ms: p50 {rows[0]['p50_ms']} ms")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Prometheus metrics, fed by the same events the call log stores.

`ObservedStore` wraps the call store: every event a call writes also updates the counters and
histograms, so /metrics and the call log can never disagree about what happened. A private
registry per app keeps tests (and several apps in one process) independent.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest

from ivr.calllog.reads import event_latencies, is_browser_call

log = logging.getLogger("ivr.serving.metrics")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
#: Stages a turn_end event is observed under (a keypad turn has only the last; see
#: ivr.calllog.reads.event_latencies, which the dashboard summary reads too).
STAGES = ("endpoint", "to_transcript", "stt", "nlu", "to_first_audio", "voice_to_voice", "keypad_to_first_audio")


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.calls_active = Gauge("ivr_calls_active", "Calls in progress", registry=r)
        self.calls_total = Counter("ivr_calls_total", "Calls ended, by flow and outcome", ["flow", "outcome"], registry=r)
        self.turn_latency = Histogram("ivr_turn_latency_seconds", "Per-turn latency by stage", ["stage"],
                                      buckets=LATENCY_BUCKETS, registry=r)
        self.nlu = Counter("ivr_nlu_results_total", "NLU results by source and intent kind", ["source", "kind"], registry=r)
        self.escalations = Counter("ivr_escalations_total", "Handoffs and transfers, by kind and reason", ["kind", "reason"], registry=r)
        self.errors = Counter("ivr_errors_total", "Errors by stage", ["stage"], registry=r)
        self.barge_ins = Counter("ivr_barge_ins_total", "Prompts the caller interrupted", registry=r)
        self.no_inputs = Counter("ivr_no_input_total", "Times a caller said nothing in time", registry=r)
        self.actions = Counter("ivr_backend_calls_total", "Flow HTTP actions by result", ["ok"], registry=r)
        # Floods and hostile input (ivr/telephony/guard.py). The gauges are sampled when /metrics
        # is read; with process_open_fds they show a leak as a level that does not come back.
        self.refused = Counter("ivr_refused_total", "Webhooks and media websockets refused, by endpoint and reason",
                               ["what", "reason"], registry=r)
        self.media_sockets = Gauge("ivr_media_websockets_open", "Media websockets open, started or not", registry=r)
        self.media_sockets_waiting = Gauge("ivr_media_websockets_waiting", "Media websockets that have not sent `start`",
                                           registry=r)
        self.loop_tasks = Gauge("ivr_event_loop_tasks", "asyncio tasks alive in the server's event loop", registry=r)
        ProcessCollector(registry=r)  # process_open_fds, process_resident_memory_bytes, ... (Linux)

    def sample_server(self, *, media_sockets: int, media_sockets_waiting: int, loop_tasks: int) -> None:
        self.media_sockets.set(media_sockets)
        self.media_sockets_waiting.set(media_sockets_waiting)
        self.loop_tasks.set(loop_tasks)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe(self, type_: str, data: dict) -> None:
        if type_ == "turn_end":
            for stage, ms in event_latencies(type_, data).items():
                if stage in STAGES:
                    self.turn_latency.labels(stage).observe(ms / 1000)
        elif type_ == "nlu":
            intent = data.get("intent")
            kind = "none" if intent is None else ("out_of_scope" if intent == "out_of_scope" else "intent")
            self.nlu.labels(str(data.get("source")), kind).inc()
        elif type_ in ("handoff", "transfer"):
            self.escalations.labels(type_, _reason_label(str(data.get("reason", "")))).inc()
        elif type_ == "error":
            self.errors.labels(str(data.get("stage", "unknown"))).inc()
        elif type_ == "barge_in":
            self.barge_ins.inc()
        elif type_ == "no_input":
            self.no_inputs.inc()
        elif type_ == "action":
            self.actions.labels(str(bool(data.get("ok"))).lower()).inc()


def _reason_label(reason: str) -> str:
    """Keep label cardinality bounded: the kind of reason, not its free text."""
    lowered = reason.lower()
    for key in ("no match", "out of scope", "no input", "frustrat", "person", "backend", "handoff unavailable", "flow node"):
        if key in lowered:
            return key.replace(" ", "_")
    return "other"


class ObservedStore:
    """The call store, plus metrics for everything written through it."""

    def __init__(self, store, metrics: Metrics):
        self._store = store
        self.metrics = metrics

    # Browser calls are a designer's tests, not the line's: they stay out of its metrics.
    def start_call(self, call_id, **kwargs):
        if not is_browser_call(call_id):
            self.metrics.calls_active.inc()
        return self._store.start_call(call_id, **kwargs)

    def add_event(self, call_id, type, data=None, ts=None):
        if not is_browser_call(call_id):
            try:
                self.metrics.observe(type, data or {})
            except Exception:  # a metrics bug must not lose the event from the call log
                log.exception("metrics: cannot observe %s event", type)
        return self._store.add_event(call_id, type, data, ts)

    def end_call(self, call_id, outcome, **kwargs):
        flow = kwargs.pop("flow", None)
        if not is_browser_call(call_id):
            self.metrics.calls_active.dec()
            self.metrics.calls_total.labels(flow or "unknown", outcome).inc()
        return self._store.end_call(call_id, outcome, **kwargs)

    def __getattr__(self, name):
        return getattr(self._store, name)

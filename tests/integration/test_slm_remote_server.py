"""The SLM's verify step served by a real OpenAI-compatible server (llama-cpp-python's, with the
bundled GGUF on 127.0.0.1), selected by configuration only: IVR_SLM_MODEL=<url>."""

from __future__ import annotations

import sys

import pytest

from ivr.nlu.intents import Intent, IntentClassifier
from ivr.nlu.slm import load_slm
from ivr.nlu.slm_remote import RemoteSlmError, RemoteSlmScorer
from ivr.registry import model_registry

from .procs import ServerProcess, free_port
from .test_llm_server import _model_path

pytestmark = pytest.mark.slow

INTENTS = [
    Intent("pay_bill", ("I want to pay my bill", "make a payment", "pay what I owe")),
    Intent("opening_hours", ("when are you open", "what are your opening hours", "are you open on sunday")),
    Intent("agent", ("talk to a person", "agent please", "a real human")),
]


@pytest.fixture(scope="module")
def slm_server(tmp_path_factory):
    port = free_port()
    tmp = tmp_path_factory.mktemp("slm-server")
    # llama-cpp-python's server returns log-probabilities only with --logits_all
    server = ServerProcess(
        "slm server",
        [sys.executable, "-m", "llama_cpp.server", "--model", str(_model_path()), "--host", "127.0.0.1",
         "--port", str(port), "--n_ctx", "2048", "--n_threads", "1", "--logits_all", "true"],
        log_path=tmp / "slm.log", ready_url=f"http://127.0.0.1:{port}/v1/models",
    )
    try:
        server.wait_ready(180)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.stop()


def test_slm_role_by_url_answers_yes_and_no(slm_server, monkeypatch):
    monkeypatch.setenv("IVR_SLM_MODEL", slm_server)
    slm = load_slm(model_registry())
    assert isinstance(slm, RemoteSlmScorer)
    slm.client = slm.client.with_options(timeout=60)  # a busy 2-core machine is slow
    slm.prepare("menu", INTENTS)
    yes = slm.verify("menu", "I'd like to pay my bill please", "pay_bill")
    no = slm.verify("menu", "what's the weather like in paris", "pay_bill")
    assert yes > no  # real log-probabilities, not a canned verdict
    assert slm.info.source == "url"


def test_classifier_with_remote_slm_and_a_dead_server(slm_server):
    from ivr.nlu.embedder import load_embedder

    slm = RemoteSlmScorer(slm_server, timeout=60)
    clf = IntentClassifier(load_embedder(model_registry()), slm, accept_band=100.0, reject_band=100.0)
    clf.prepare("menu", INTENTS)
    r = clf.classify("menu", INTENTS, "can I pay what I owe on my account")
    assert r.source == "slm" and r.intent == "pay_bill"
    # the server goes away: the turn is still answered, by the router, within the timeout
    dead = RemoteSlmScorer(f"http://127.0.0.1:{free_port()}/v1", "m", timeout=1.0)
    with pytest.raises(RemoteSlmError):
        dead._ask([{"role": "user", "content": "hi"}])
    clf.slm = dead
    dead._prompts = slm._prompts
    r = clf.classify("menu", INTENTS, "can I pay what I owe on my account")
    assert r.source == "router" and r.detail.get("slm_error") and r.intent == "pay_bill"

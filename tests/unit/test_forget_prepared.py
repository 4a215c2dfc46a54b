"""What the NLU prepared for a flow version is forgotten once nothing uses it (replaced versions,
drafts, review proofs), so a server whose flows are edited all day keeps bounded memory; the
versions the line answers with, or that calls in progress hold, are kept."""

from __future__ import annotations

import threading
import time

from ivr.nlu.intents import IntentClassifier
from ivr.nlu.service import NLUService
from ivr.nlu.slm import SlmScorer
from ivr.nlu.understanding import Intent
from tests.unit.test_intents import FakeEmbedder

MENU = [Intent("hours", ("when are you open", "opening hours")), Intent("order", ("where is my order", "track it"))]


def test_idle_versions_are_forgotten_and_prepared_again_when_needed():
    clf = IntentClassifier(FakeEmbedder())
    for key in ("v1:main", "v1:other", "v2:main", "draft3:main"):
        clf.prepare(key, MENU)
    nlu = NLUService(clf, timeout=None)
    assert nlu.sweep({"v2"}, idle_s=3600) == set()  # used a moment ago: kept
    time.sleep(0.01)
    assert nlu.sweep({"v2"}, idle_s=0.001) == {"v1", "draft3"}
    assert set(clf._prepared) == {"v2:main"}
    assert clf.classify("v1:main", MENU, "when are you open").intent == "hours"  # a late turn of an old call
    assert "v1:main" in clf._prepared


def test_the_small_models_prompts_of_a_forgotten_version_go_with_it():
    slm = SlmScorer.__new__(SlmScorer)  # no model: only the bookkeeping is under test
    slm._lock = threading.Lock()
    slm._prompts = {("v1:main", "verify"): 1, ("v2:main", "verify"): 2, ("extract", "v1:ask:order|n"): 3,
                    ("extract", "v2:ask:order|n"): 4}
    slm._intents = {"v1:main": (), "v2:main": ()}
    slm._loaded = ("v1:main", "verify")
    slm._used = {}
    assert slm.forget(lambda key: key.split(":", 1)[0] == "v1") == 2
    assert set(slm._prompts) == {("v2:main", "verify"), ("extract", "v2:ask:order|n")}
    assert set(slm._intents) == {"v2:main"} and slm._loaded is None


def test_the_server_keeps_the_versions_it_answers_with_and_those_calls_hold(tmp_path):
    from types import SimpleNamespace

    from ivr.serving.flows import FlowRepository
    from ivr.serving.runtime import Runtime
    from tests.unit.test_review_changes import FLOW

    (tmp_path / "shop.yaml").write_text(FLOW)
    flows = FlowRepository(tmp_path)
    flows.reload()
    runtime = Runtime(settings=None, stt=None, tts=None, nlu=None, store=None, flows=flows, models={}, secret="x")
    runtime.active_calls["CA1"] = {"session": SimpleNamespace(flow=SimpleNamespace(version="old1"))}
    assert runtime.versions_in_use() == {flows.get("shop").version, "old1"}


def test_a_version_known_only_by_its_slot_extraction_prompts_is_forgotten_too():
    slm = SlmScorer.__new__(SlmScorer)
    slm._lock = threading.Lock()
    slm._prompts = {("extract", "collectonly:ask:|name"): 1, ("extract", "live:ask:|name"): 2}
    slm._intents, slm._loaded = {}, None
    slm._used = {("extract", "collectonly:ask:|name"): time.monotonic() - 100, ("extract", "live:ask:|name"): time.monotonic()}
    clf = IntentClassifier(FakeEmbedder(), slm)
    assert clf.idle_versions(50) == {"collectonly"}  # no menu; its extraction prompt unused for 100 s
    NLUService(clf, timeout=None).sweep(set(), idle_s=50)
    assert set(slm._prompts) == {("extract", "live:ask:|name")}

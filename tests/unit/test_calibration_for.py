"""Which confidence maps and verify threshold an SLM gets from its registry entry."""

import json
import logging

import pytest

from ivr.nlu.calibration import Calibrator
from ivr.nlu.intents import calibration_for
from ivr.registry import ModelInfo

SHIPPED_FOR = Calibrator.load().provenance["slm"]


def _info(name, **extra):
    return ModelInfo(name, "gguf", name, "path", extra=extra)


def test_the_embedded_model_gets_the_shipped_maps_quietly(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        cal, tuning = calibration_for(_info(SHIPPED_FOR), tmp_path)
    assert cal.provenance["slm"] == SHIPPED_FOR and tuning == {}
    assert not caplog.records


def test_another_model_without_its_own_maps_is_warned_about(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        cal, _ = calibration_for(_info("/models/qwen2.5-3b.gguf"), tmp_path)
    assert cal.provenance["slm"] == SHIPPED_FOR  # still the best maps there are
    assert "ivr.bench.calibrate" in caplog.text and "qwen2.5-3b" in caplog.text


def test_an_entry_names_its_own_maps_and_threshold(tmp_path, caplog):
    (tmp_path / "cal-3b.json").write_text(json.dumps({
        "maps": {"slm_in": {"a": 0.9, "b": 0.1}}, "provenance": {"slm": "qwen-3b"}}))
    with caplog.at_level(logging.WARNING):
        cal, tuning = calibration_for(_info("qwen-3b", calibration="cal-3b.json", verify_threshold=0.5), tmp_path)
    assert cal.maps["slm_in"].a == 0.9 and cal.provenance == {"slm": "qwen-3b"}
    assert tuning == {"verify_threshold": 0.5}
    assert not caplog.records


def test_a_missing_maps_file_or_a_bad_threshold_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="calibration file .*nope.json does not exist"):
        calibration_for(_info("qwen-3b", calibration="nope.json"), tmp_path)
    with pytest.raises(ValueError, match="verify_threshold must be a number"):
        calibration_for(_info("qwen-3b", verify_threshold="high"), tmp_path)

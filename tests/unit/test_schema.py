"""The published JSON Schema matches the code and accepts every shipped flow."""

import json
from pathlib import Path

import jsonschema
import yaml

from ivr.tools.cli import main

REPO = Path(__file__).parent.parent.parent
PUBLISHED = REPO / "flows" / "flow.schema.json"


def test_published_schema_is_up_to_date(capsys):
    main(["schema"])
    generated = json.loads(capsys.readouterr().out)
    assert generated == json.loads(PUBLISHED.read_text()), "regenerate: ivr schema > flows/flow.schema.json"


def test_every_shipped_flow_validates_against_the_schema():
    schema = json.loads(PUBLISHED.read_text())
    flows = sorted((REPO / "flows").glob("*.yaml"))
    assert flows
    for path in flows:
        data = yaml.safe_load(path.read_text())
        for node in data["nodes"].values():  # YAML reads `1: x` keys as ints; the loader accepts them
            if isinstance(node, dict) and node.get("dtmf"):
                node["dtmf"] = {str(k): v for k, v in node["dtmf"].items()}
        jsonschema.validate(data, schema)


def test_schema_rejects_a_misspelt_key():
    schema = json.loads(PUBLISHED.read_text())
    bad = {"flow": "x", "start": "a", "nodes": {"a": {"say": "hi", "hangpu": True}}}
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError as exc:
        assert "hangpu" in str(exc)
    else:
        raise AssertionError("schema accepted an unknown key")

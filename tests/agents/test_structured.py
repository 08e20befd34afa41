"""Structured output (beyond Legion): `result` validated locally; Python types give instances."""

from __future__ import annotations

import pytest
from agents_for_tests import (
    DataclassAgent,
    Point,
    SchemaAgent,
    Sentiment,
    StructAgent,
    TypedDictAgent,
)

import legion
from legion import testing
from legion.testing import eval_and_complete, returns


def test_schema_mismatch_is_fed_back_as_a_retry() -> None:
    steps = [
        returns({"sentiment": "meh", "score": 1}),
        returns({"sentiment": "positive", "score": 1}),
    ]
    with testing.ScriptedModel(steps) as model:
        assert legion.execute(SchemaAgent, "x") == {"sentiment": "positive", "score": 1}
    feedback = model.requests[1].last
    assert feedback.startswith("Code execution failed:")
    assert "does not match the output schema at sentiment" in feedback


def test_default_schema_wants_a_string() -> None:
    from agents_for_tests import NoToolAgent

    with testing.ScriptedModel([returns({"not": "text"}), returns("text")]) as model:
        assert legion.execute(NoToolAgent, "x") == "text"
    assert "result must be a string" in model.requests[1].last


def test_struct_output_gives_an_instance() -> None:
    with testing.ScriptedModel([returns({"sentiment": "positive", "score": 0.9})]) as model:
        value = legion.execute(StructAgent, "x")
    assert value == Sentiment("positive", 0.9)
    result_schema = model.requests[0].schema["properties"]["result"]
    assert "$ref" in result_schema and "Sentiment" in model.requests[0].schema["$defs"]


def test_struct_mismatch_is_a_retry() -> None:
    steps = [returns({"sentiment": "positive"}), returns({"sentiment": "x", "score": 1.0})]
    with testing.ScriptedModel(steps) as model:
        assert legion.execute(StructAgent, "x") == Sentiment("x", 1.0)
    assert "missing required field `score`" in model.requests[1].last


def test_dataclass_and_typeddict_outputs() -> None:
    with testing.ScriptedModel([returns({"x": 1, "y": 2})]):
        assert legion.execute(DataclassAgent, "x") == Point(1, 2)
    with testing.ScriptedModel([returns({"title": "Alien", "year": 1979})]):
        assert legion.execute(TypedDictAgent, "x") == {"title": "Alien", "year": 1979}


def test_eval_and_complete_is_validated_when_a_schema_is_declared() -> None:
    steps = [eval_and_complete("{'x': 'no'}"), eval_and_complete("{'x': 3, 'y': 4}")]
    with testing.ScriptedModel(steps) as model:
        assert legion.execute(DataclassAgent, "x") == Point(3, 4)
    assert "does not match the output schema" in model.requests[1].last


def test_cancel_still_raises_with_a_typed_schema() -> None:
    with (
        testing.FunctionModel(lambda r: returns({"bad": True})),
        pytest.raises(legion.AgentCancelled, match="reached_max_retries"),
    ):
        legion.execute(StructAgent, "x")

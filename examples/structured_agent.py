"""Structured output: `output_schema` as a Python type; the caller gets an instance.

    uv run python examples/structured_agent.py

The model's `result` is validated in the agent (msgspec); a mismatch goes back to the model
as a retry, so the caller only ever sees a valid `Sentiment` (or `AgentCancelled`).
"""

from __future__ import annotations

import msgspec

import legion
from legion.run import offline_options
from legion.testing import returns


class Sentiment(msgspec.Struct):
    sentiment: str
    score: float
    reasons: list[str]


class SentimentAgent(legion.Agent):
    """Classify the sentiment of a customer review."""

    output_schema = Sentiment
    action_types = ("return",)


STEPS = [
    returns({"sentiment": "positive", "score": "high"}),  # invalid: fed back, retried
    returns({"sentiment": "positive", "score": 0.92, "reasons": ["fast delivery", "works"]}),
]

if __name__ == "__main__":
    review = "Arrived a day early and works perfectly."
    result = legion.execute(SentimentAgent, review, **offline_options(STEPS))
    print(type(result).__name__, result)

"""litellm for real against a fake OpenAI-compatible provider on loopback ([devloop] §2).

No network and no keys: a tiny HTTP server in the test answers each request with the next
scripted status (401, 404, 429, 500...) or a completion, and litellm is pointed at it with
`api_base`. Slow: litellm takes seconds to import (in this process, and in the agent's).
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import trio
from agents_for_tests import NoToolAgent

import legion
from legion import llm, testing

pytestmark = pytest.mark.slow


class FakeProvider:
    """An OpenAI-compatible `/v1/chat/completions` that answers from a script, in order:
    an int is an error status (with the provider's JSON error body), a str is the content of
    a successful completion, bytes are a whole 200 body. Every request's JSON body is kept."""

    def __init__(self) -> None:
        self.script: list[int | str | bytes] = []
        self.requests: list[dict[str, Any]] = []
        self.retry_after: str | None = None
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                provider.requests.append(json.loads(body))
                step = provider.script.pop(0) if provider.script else 500
                status, data = (200, step) if isinstance(step, bytes) else _answer(step)
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                if status == 429 and provider.retry_after is not None:
                    self.send_header("retry-after", provider.retry_after)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def _answer(step: int | str) -> tuple[int, bytes]:
    """An error status with the provider's JSON error body, or a completion whose content is
    `step`."""
    if isinstance(step, int):
        error = {"message": f"fake says {step}", "type": "fake", "code": step}
        return step, json.dumps({"error": error}).encode()
    completion = {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": "fake-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": step}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }
    return 200, json.dumps(completion).encode()


@pytest.fixture
def provider() -> Iterator[FakeProvider]:
    fake = FakeProvider()
    try:
        yield fake
    finally:
        fake.close()


def _ask(model: str, **options: Any) -> Any:
    messages = [{"role": "user", "content": "hi"}]

    async def main() -> Any:
        schema = {"type": "object"}
        return await llm.generate_object(model, messages, schema, timeout=10.0, options=options)

    return trio.run(main)


def _action(result: Any) -> str:
    return json.dumps({"action": "return", "code": "", "result": result})


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (401, "check the provider's API key"),
        (403, "asking again cannot help"),
        (404, "check the model string"),
        (400, "asking again cannot help"),
        (422, "asking again cannot help"),
    ],
)
def test_errors_that_cannot_heal_are_provider_errors_naming_the_message(
    provider: FakeProvider, status: int, hint: str
) -> None:
    provider.script = [status]
    with pytest.raises(llm.ProviderError) as info:
        _ask("openai:fake-model", api_base=provider.url, api_key="sk-fake")
    assert f"fake says {status}" in str(info.value)
    assert hint in str(info.value) and "'openai:fake-model'" in str(info.value)
    assert len(provider.requests) == 1  # litellm's client did not retry on its own


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_transient_errors_are_llm_errors_to_retry(provider: FakeProvider, status: int) -> None:
    provider.script = [status]
    provider.retry_after = "3"
    with pytest.raises(llm.LLMError) as info:
        _ask("openai:fake-model", api_base=provider.url, api_key="sk-fake")
    assert info.value.transient
    assert f"fake says {status}" in str(info.value)
    assert info.value.retry_after == (3.0 if status == 429 else None)
    assert len(provider.requests) == 1


def test_an_unknown_provider_is_a_provider_error_before_any_request() -> None:
    with pytest.raises(llm.ProviderError, match="LLM Provider NOT provided") as info:
        _ask("nosuchprovider:some-model")
    assert "check the model string" in str(info.value)


def test_missing_credentials_are_a_provider_error(
    provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(llm.ProviderError, match="Missing credentials") as info:
        _ask("openai:fake-model", api_base=provider.url)
    assert "check the provider's API key" in str(info.value)
    assert provider.requests == []


def test_an_unreachable_provider_is_transient() -> None:
    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(llm.LLMError, match="Connection error") as info:
        _ask("openai:fake-model", api_base=f"http://127.0.0.1:{port}/v1", api_key="sk-fake")
    assert info.value.transient


def test_real_litellm_exception_steps_are_sorted_as_from_the_provider() -> None:
    litellm = llm._import_litellm()
    auth = litellm.AuthenticationError("bad key", llm_provider="openai", model="m")
    limited = litellm.RateLimitError("slow down", llm_provider="openai", model="m")
    unknown = litellm.LiteLLMUnknownProvider(model="nosuch/m", custom_llm_provider="nosuch")
    assert isinstance(llm.classify(auth), llm.ProviderError)
    assert isinstance(llm.classify(unknown), llm.ProviderError)
    assert isinstance(llm.classify(limited), llm.LLMError)


@pytest.mark.parametrize(
    ("content", "error"),
    [
        ("[" * 100_000 + "]" * 100_000, "not valid JSON: nested too deeply"),
        (_action(json.loads("[" * 70 + "]" * 70)), "nested more than 64 levels deep"),
        ('{"action": "return", "result": ' + "7" * 5000 + "}", "Integer value out of range"),
        ('{"action": "return", "result": ' + "7" * 25 + "}", "integers must fit in 64 bits"),
    ],
    ids=["deeper than the decoder", "deeper than the limit", "int-string limit", "past 64 bits"],
)
def test_a_deep_or_huge_reply_is_an_llm_error(
    provider: FakeProvider, content: str, error: str
) -> None:
    provider.script = [content]
    with pytest.raises(llm.LLMError, match=error) as info:
        _ask("openai:fake-model", api_base=provider.url, api_key="sk-fake")
    assert not info.value.transient


def _body(extra: str) -> bytes:
    start = '{"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": ['
    choice = (
        '{"index": 0, "message": {"role": "assistant", "content": "{}"}, "finish_reason": "stop"}'
    )
    return f"{start}{choice}], {extra}}}".encode()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (_body('"x": ' + "[" * 100_000 + "]" * 100_000), "maximum recursion depth exceeded"),
        (_body('"usage": {"prompt_tokens": ' + "9" * 5000 + "}"), "Exceeds the limit"),
    ],
    ids=["deep", "huge int"],
)
def test_a_deep_or_huge_provider_body_is_a_provider_error(
    provider: FakeProvider, body: bytes, error: str
) -> None:
    """litellm decodes the HTTP body itself and fails; that failure, too, is a clear error."""
    provider.script = [body]
    with pytest.raises(llm.ProviderError, match=error):
        _ask("openai:fake-model", api_base=provider.url, api_key="sk-fake")


def test_an_agent_against_the_fake_provider(provider: FakeProvider) -> None:
    """One agent (one litellm import) through the cases, turn by turn."""
    testing.allow_real_models()
    options = {"api_base": provider.url, "api_key": "sk-fake"}
    pid = legion.start_link(
        NoToolAgent, model="openai:fake-model", llm_options=options, llm_backoff=0.01
    )
    try:
        provider.script = [401]
        with pytest.raises(legion.AgentCancelled) as info:
            legion.call(pid, "a bad key")
        assert info.value.reason == "provider_error"
        assert info.value.error is not None and "fake says 401" in info.value.error
        assert len(provider.requests) == 1

        provider.script = [429, 503, _action("recovered")]
        assert legion.call(pid, "busy provider") == "recovered"
        assert len(provider.requests) == 4
        assert provider.requests[-1]["model"] == "fake-model"
        turn = [m["content"] for m in legion.get_messages(pid)[-4:]]
        assert turn[0] == "busy provider" and turn[3] == _action("recovered")
        assert "fake says 429" in turn[1] and "fake says 503" in turn[2]

        provider.script = [500] * 4
        with pytest.raises(legion.AgentCancelled, match="fake says 500") as info:
            legion.call(pid, "a provider down")
        assert info.value.reason == "reached_max_retries"
        assert len(provider.requests) == 8

        provider.script = ["[" * 100_000 + "]" * 100_000, _action("flat")]
        assert legion.call(pid, "a deep reply") == "flat"
        assert "nested too deeply" in legion.get_messages(pid)[-2]["content"]

        provider.script = [404]
        with pytest.raises(legion.AgentCancelled, match="fake says 404") as info:
            legion.call(pid, "an unknown model")
        assert info.value.reason == "provider_error"
        assert "check the model string" in (info.value.error or "")
        assert legion.get_usage(pid)[-1]["prompt_tokens"] == 11
    finally:
        legion.stop(pid)
        testing.block_real_models()

"""Arguments of the wrong type or range are refused at the call, with an error that names the
argument, before anything reaches the node; and a request the node cannot decode (a client that
does not check, a future field) is answered with an error rather than dropped, so its caller
never waits forever. The node and every process live on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import kill_and_wait, probe

import legion
from legion import telemetry
from legion.supervisor import client, wire
from legion.supervisor.endpoint import Endpoint

api: Any = legion  # untyped handles: these calls are wrong on purpose
metrics: Any = telemetry
Server = legion.Server
PORT_RANGE = r"0\.\.65535"

WRONG: list[tuple[str, Callable[[legion.Pid], Any], type[Exception], str]] = [
    ("spawn link=1", lambda p: api.spawn(Server, link=1), TypeError, "link must be"),
    ("spawn link=None", lambda p: api.spawn(Server, link=None), TypeError, "link must be"),
    ("spawn monitor='yes'", lambda p: api.spawn(Server, monitor="yes"), TypeError, "monitor"),
    ("register a str pid", lambda p: api.register("x", "notapid"), TypeError, "legion.Pid"),
    ("call an int", lambda p: api.call(42, "hi"), TypeError, "call: the destination"),
    ("cast a list", lambda p: api.cast([p], "hi"), TypeError, "cast: the destination"),
    ("send None", lambda p: api.send(None, "hi"), TypeError, "send: the destination"),
    ("monitor a tuple", lambda p: api.monitor((p,)), TypeError, "monitor: the destination"),
    ("stop an int", lambda p: api.stop(7), TypeError, "stop: the destination"),
    ("port a str", lambda p: metrics.serve_metrics("9464"), TypeError, "port must be an int"),
    ("port a bool", lambda p: metrics.serve_metrics(True), TypeError, "port must be an int"),
    ("host an int", lambda p: metrics.serve_metrics(0, host=5), TypeError, "host must be"),
    ("port 70000", lambda p: metrics.serve_metrics(70000), ValueError, PORT_RANGE),
    ("port 2**63", lambda p: metrics.serve_metrics(2**63), ValueError, PORT_RANGE),
    ("port -1", lambda p: metrics.serve_metrics(-1), ValueError, PORT_RANGE),
]


@pytest.mark.parametrize(("case", "act", "error", "text"), WRONG, ids=[w[0] for w in WRONG])
def test_a_wrongly_typed_argument_is_refused_at_the_call(
    case: str, act: Callable[[legion.Pid], Any], error: type[Exception], text: str
) -> None:
    bystander = probe()
    with pytest.raises(error, match=text):
        act(bystander)
    assert legion.call(bystander, ("echo", "still here")) == "still here"
    kill_and_wait(bystander)


def _ask_raw(build: Callable[[int], wire.Frame]) -> Any:
    """Send a request frame as a client that checks nothing would; its answer, or a failure
    if the node leaves it unanswered."""
    endpoint: Endpoint = client.get()
    req = endpoint._request(build)
    assert endpoint._wait(endpoint._has(req), _deadline(10)), "the node never answered"
    return endpoint._ack(req)


def _deadline(seconds: float) -> float:
    import time

    return time.monotonic() + seconds


UNDECODABLE: list[tuple[str, Callable[[int], wire.Frame]]] = [
    ("Register", lambda r: wire.Register(r, 5, legion.self())),
    ("Register", lambda r: wire.Register(r, "x", "notapid")),
    ("ServeMetrics", lambda r: wire.ServeMetrics(r, "127.0.0.1", "9464")),
    ("Whereis", lambda r: wire.Whereis(r, ["a", "list"])),
]


@pytest.mark.parametrize(
    ("kind", "build"), UNDECODABLE, ids=[f"{k}-{i}" for i, (k, _) in enumerate(UNDECODABLE)]
)
def test_a_request_the_node_cannot_decode_is_answered_with_an_error(
    kind: str, build: Callable[[int], wire.Frame]
) -> None:
    with pytest.raises(legion.LegionError, match=rf"could not decode a {kind} request"):
        _ask_raw(build)
    assert legion.whereis("no-such-name-here") is None  # the connection still works


@pytest.mark.parametrize("port", [2**63, 70000])
def test_the_node_refuses_a_port_out_of_range_and_lives(port: int) -> None:
    bystander = probe()
    with pytest.raises(legion.LegionError, match=r"cannot serve /metrics: .*0\.\.65535"):
        _ask_raw(lambda r: wire.ServeMetrics(r, "127.0.0.1", port))
    assert legion.call(bystander, ("echo", "still here")) == "still here"
    kill_and_wait(bystander)

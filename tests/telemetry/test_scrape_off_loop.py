"""A scrape renders the registry on a worker thread: while it is in progress, the node's event
loop keeps running its other tasks, and a real node keeps answering calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from legion.metrics import NodeMetrics, serve_metrics

HERE = Path(__file__).resolve().parent


class Held(Collector):
    """A collector that holds the render until the test lets it go: a scrape "in progress" for
    exactly as long as the test wants, with no clock involved."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.thread: int | None = None

    def describe(self) -> list[Metric]:
        return [GaugeMetricFamily("held", "A collector the test holds.")]  # not a render

    def collect(self) -> Iterator[Metric]:
        self.thread = threading.get_ident()
        self.entered.set()
        self.release.wait(10)  # on the loop this would freeze it; the test would see that
        yield GaugeMetricFamily("held", "A collector the test holds.", value=1)


@pytest.mark.anyio
async def test_the_loop_keeps_running_while_a_scrape_renders() -> None:
    metrics = NodeMetrics()
    held = Held()
    metrics.registry.register(held)
    order: list[str] = []
    body: list[bytes] = []

    def get(port: int) -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=60) as response:
            body.append(response.read())

    async with trio.open_nursery() as nursery:
        port = await nursery.start(serve_metrics, metrics.scrape, "127.0.0.1", 0)

        async def scrape() -> None:
            await trio.to_thread.run_sync(get, port)
            order.append("scrape done")

        nursery.start_soon(scrape)
        await trio.to_thread.run_sync(held.entered.wait)  # the render is in progress
        send, receive = trio.open_memory_channel[int](0)
        async with send, receive:  # "calls": a round trip between two tasks of the loop
            for n in range(3):
                nursery.start_soon(send.send, n)
                assert await receive.receive() == n
        metrics.handle(("legion", "supervisor", "restart"), {}, {"supervisor": "Sup"})
        order.append("loop answered")
        held.release.set()
        while "scrape done" not in order:
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert order == ["loop answered", "scrape done"]
    assert held.thread != threading.get_ident()  # rendered on a worker thread
    text = body[0].decode()
    assert "held 1.0" in text and "legion_processes" in text


@pytest.mark.slow
def test_a_node_answers_calls_while_it_renders_a_big_scrape(tmp_path: Path) -> None:
    """120 tool names x 120 error types: with the default cap (100 per label) the registry
    holds 101 x 101 tool/error series per histogram, about 180,000 samples, which take the
    node's render thread a second or more. The application calls a server for as long as
    that scrape is in progress (from the moment its request is sent to the first byte of the
    answer): if the render held the node's loop, no call could be answered until it ended
    (none were, measured with the render put back on the loop); on its thread, hundreds are."""
    env = {k: v for k, v in os.environ.items() if k != "LEGION_NODE"}
    env.pop("LEGION_METRICS_MAX_LABEL_VALUES", None)
    done = subprocess.run(
        [sys.executable, str(HERE / "scrape_app.py"), "--tools", "120", "--kinds", "120"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.splitlines()[-1])
    assert len(report["tools"]) == 101 and "other" in report["tools"]
    assert report["overflow"]["tool"] == 20 * 120  # T100..T119, each with 120 error types
    assert report["overflow"]["error_type"] == 120 * 20  # E100..E119, for every tool
    assert report["series"] > 150_000
    assert report["answered"] >= 10, report["answered"]
    print("calls answered during the scrape:", report["answered"])

"""An application with its own embedded node: fills the node's registry with tool events
(`--tools` names x `--kinds` error types), then scrapes `/metrics` on one thread while it calls
a server on another for as long as the scrape lasts, and prints a JSON report on its last line
(tests/telemetry runs it). Calls count from the moment the request is sent to the first byte of
the answer, while the node renders."""

from __future__ import annotations

import argparse
import json
import socket
import threading
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import legion
from legion import telemetry


class Echo(legion.Server):
    def handle_call(self, request: Any, from_: legion.From) -> Any:
        return request


def fill(tools: int, kinds: int) -> None:
    for t in range(tools):
        for k in range(kinds):
            if kinds == 1:
                telemetry.emit(("legion", "tool", "call", "stop"), {"duration": 0.01},
                               {"tool": f"T{t}"})  # fmt: skip
            else:
                telemetry.emit(("legion", "tool", "call", "exception"), {"duration": 0.01},
                               {"tool": f"T{t}", "kind": f"E{k}"})  # fmt: skip
    legion.whereis("nobody")  # a round trip: the node has read (and counted) every event


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tools", type=int, default=1)
    parser.add_argument("--kinds", type=int, default=1)
    args = parser.parse_args()
    port = telemetry.serve_metrics(0)
    fill(args.tools, args.kinds)
    echo = legion.start_link(Echo)
    scraped: list[str] = []
    sent, answer = threading.Event(), threading.Event()

    def scrape() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: node\r\n\r\n")
            sent.set()
            data = sock.recv(1 << 20)
            answer.set()  # the render is over: the node is sending the text
            while chunk := sock.recv(1 << 20):
                data += chunk
        scraped.append(data.split(b"\r\n\r\n", 1)[1].decode())

    scraper = threading.Thread(target=scrape)
    scraper.start()
    sent.wait()
    answered = 0  # calls answered between the request and the first byte of the answer
    while not answer.is_set():
        assert legion.call(echo, answered) == answered
        answered += not answer.is_set()
    scraper.join()
    families = {f.name: f for f in text_string_to_metric_families(scraped[0])}
    tools = {s.labels["tool"] for s in families["legion_tool_calls"].samples}
    overflow = {
        s.labels["label"]: s.value for s in families["legion_metrics_label_overflow"].samples
    }
    series = sum(len(f.samples) for f in families.values())
    print(json.dumps({"tools": sorted(tools), "overflow": overflow, "series": series,
                      "answered": answered}))  # fmt: skip
    legion.stop(echo)


if __name__ == "__main__":
    main()

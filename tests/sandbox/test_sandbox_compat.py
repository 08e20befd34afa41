"""Ordinary code works under the full stack (seccomp + Landlock + rlimits + guard)."""

from __future__ import annotations

import pytest

from legion.sandbox import evaluate

CASES = [
    (
        "import datetime\ndatetime.datetime.strptime('2024-03-01 10:00', '%Y-%m-%d %H:%M').hour",
        10,
    ),
    ("'bücher.example'.encode('idna')", b"xn--bcher-kva.example"),
    ("'héllo'.encode('utf-16').decode('utf-16')", "héllo"),
    ("import codecs\ncodecs.encode('abc', 'rot13')", "nop"),
    ("'ümlaut'.encode('latin-1').hex()", "fc6d6c617574"),
    (
        "import decimal\nwith decimal.localcontext() as c:\n    c.prec = 5\n"
        "    v = decimal.Decimal(1) / decimal.Decimal(7)\nstr(v)",
        "0.14286",
    ),
    ("import fractions\nstr(fractions.Fraction(3, 4) + fractions.Fraction(1, 4))", "1"),
    (
        "import random\nxs = list(range(300000))\nrandom.shuffle(xs)\n"
        "sorted(xs) == list(range(300000))",
        True,
    ),
    (
        "import json\njson.loads(json.dumps({'k': 'naïve ☃ 日本'}, ensure_ascii=False))",
        {"k": "naïve ☃ 日本"},
    ),
    (
        "import functools\n@functools.lru_cache(None)\ndef fib(n):\n"
        "    return n if n < 2 else fib(n-1) + fib(n-2)\nfib(80)",
        23416728348467685,
    ),
    ("from typing import NamedTuple\nclass P(NamedTuple):\n    x: int\n    y: int\nP(1, 2).y", 2),
    (
        "import dataclasses\n@dataclasses.dataclass\nclass C:\n"
        "    a: int\n    b: str = 'x'\nC(1).b",
        "x",
    ),
    ("import statistics\nstatistics.median([3, 1, 2, 5])", 2.5),
    ("import re\nre.findall(r'\\d+', 'a1b22c333')", ["1", "22", "333"]),
    ("import collections\ncollections.Counter('abracadabra').most_common(1)", [["a", 5]]),
    ("import itertools\nlen(list(itertools.permutations(range(6))))", 720),
    (
        "import heapq, bisect\nh = [5, 1, 3]\nheapq.heapify(h)\n"
        "(heapq.heappop(h), bisect.bisect([1, 2, 4], 3))",
        [1, 2],
    ),
    ("import textwrap\ntextwrap.shorten('hello brave new world', 12)", "hello [...]"),
    ("import copy\na = {'x': [1]}\nb = copy.deepcopy(a)\nb['x'].append(2)\na", {"x": [1]}),
    ("import math\nmath.isqrt(10**40)", str(10**20)),
    ("import enum\nclass Color(enum.Enum):\n    RED = 1\nColor.RED.name", "RED"),
    ("import base64\nbase64.b64encode(b'hi').decode()", "aGk="),
    ("import unicodedata\nunicodedata.name('☃')", "SNOWMAN"),
    (
        "import datetime\n(datetime.date(2024, 1, 31) + datetime.timedelta(days=1)).isoformat()",
        "2024-02-01",
    ),
    ("import calendar\ncalendar.isleap(2024)", True),
    (
        "class E(Exception):\n    pass\ntry:\n    raise E('x')\nexcept E as e:\n    r = str(e)\nr",
        "x",
    ),
    ("s = 0\nfor i in range(10**5):\n    s += i\ns", 4999950000),
    ("{k: k * k for k in range(10**4)}[9999]", 99980001),
    ("x = [i * 0.5 for i in range(1000)]\nmax(x)", 499.5),
    ("import json\nlen(json.dumps(list(range(100000))))", 688890),
    ("len(str(2 ** 10000))", 3011),
]


@pytest.mark.parametrize(("code", "expected"), CASES, ids=[c[0][:40] for c in CASES])
def test_compat_case_runs_under_the_full_stack(code: str, expected: object) -> None:
    ev = evaluate(code, timeout=10)
    assert ev.ok, ev.error
    assert "seccomp" in ev.layers
    assert ev.value == expected


def test_int_to_str_limit_is_plain_python_behaviour() -> None:
    ev = evaluate("str(10 ** 5000)")
    assert ev.error_kind == "exception" and "ValueError" in ev.error

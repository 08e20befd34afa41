"""Bindings: variables, functions and classes persist as an opaque blob the parent never opens."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from legion.sandbox import Bindings, evaluate


def test_variables_persist_across_evaluations() -> None:
    first = evaluate("x = 40\nnames = ['a', 'b']")
    assert first.ok and first.bindings is not None
    second = evaluate("x + len(names)", bindings=first.bindings)
    assert second.value == 42
    assert second.variables == {"x": "40", "names": "['a', 'b']"}


def test_functions_and_classes_survive() -> None:
    code = (
        "import math\n"
        "def area(r):\n    return math.pi * r * r\n"
        "class Point:\n    def __init__(self, x):\n        self.x = x\n"
        "    def double(self):\n        return Point(self.x * 2)\n"
        "p = Point(21)\n"
    )
    first = evaluate(code)
    assert first.ok, first.error
    second = evaluate("(round(area(1), 2), p.double().x, math.sqrt(4))", bindings=first.bindings)
    assert second.ok, second.error
    assert second.value == [3.14, 42, 2.0]


def test_failed_evaluation_keeps_the_previous_bindings() -> None:
    first = evaluate("x = 1")
    failed = evaluate("x = 2\nraise ValueError('no')", bindings=first.bindings)
    assert not failed.ok and failed.bindings is first.bindings
    assert evaluate("x", bindings=failed.bindings).value == 1


def test_unpicklable_values_are_reported_as_dropped_with_the_reason() -> None:
    ev = evaluate("f = lambda: 1\ng = (i for i in range(3))\nkeep = 5")
    assert ev.ok and ev.dropped == ("g",)
    assert "generator" in ev.dropped_reasons["g"]
    assert "g" not in ev.variables and ev.bindings is not None
    assert ev.bindings.names == ("f", "keep")
    assert evaluate("keep + f()", bindings=ev.bindings).value == 6


def test_variables_report_short_reprs() -> None:
    ev = evaluate("big = list(range(1000))\ns = 'x' * 500")
    assert len(ev.variables["big"]) < 80 and len(ev.variables["s"]) < 80


def test_parent_never_unpickles_child_data(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError("the parent unpickled child data")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    first = evaluate("x = {'k': [1, 2]}")
    assert evaluate("x['k'][1]", bindings=first.bindings).value == 2


def test_bindings_round_trip_as_bytes() -> None:
    first = evaluate("total = 7")
    assert first.bindings is not None
    stored = Bindings(bytes(first.bindings.blob))
    assert evaluate("total * 6", bindings=stored).value == 42


def test_a_forged_blob_is_decoded_only_in_the_sandbox(tmp_path: Path) -> None:
    target = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.system, (f"touch {target}",))

    entries = [("x", "value", pickle.dumps(Evil())), ("y", "value", pickle.dumps(2))]
    forged = pickle.dumps({"version": 2, "modules": {}, "entries": entries})
    ev = evaluate("y * 21", bindings=Bindings(forged))
    assert ev.ok and ev.value == 42
    assert "posix.system is not allowed" in ev.dropped_reasons["x"]
    assert not target.exists()


def test_an_unreadable_blob_is_reported_and_the_code_still_runs() -> None:
    ev = evaluate("1 + 1", bindings=Bindings(b"not a pickle"))
    assert ev.ok and ev.value == 2
    assert "could not be read" in ev.dropped_reasons["<all>"]


COMMON_TYPES = [
    pytest.param(
        "import dataclasses\n@dataclasses.dataclass\nclass P:\n    x: int\n    y: int = 2\n"
        "p = P(1)",
        "(p.x, p.y, P(5).y, dataclasses.asdict(p))",
        [1, 2, 2, {"x": 1, "y": 2}],
        id="dataclass",
    ),
    pytest.param(
        "import enum\nclass Color(enum.Enum):\n    RED = 1\n    BLUE = 2\nc = Color.BLUE",
        "(c is Color.BLUE, c.name, Color(1).name)",
        [True, "BLUE", "RED"],
        id="enum",
    ),
    pytest.param(
        "import enum\nPerm = enum.Flag('Perm', 'R W X')\np = Perm.R | Perm.W",
        "(Perm.W in p, Perm.X in p)",
        [True, False],
        id="enum-functional-api",
    ),
    pytest.param(
        "import collections\nPt = collections.namedtuple('Pt', 'x y')\np = Pt(1, 2)",
        "(p.x + p.y, p == Pt(1, 2))",
        [3, True],
        id="namedtuple",
    ),
    pytest.param(
        "from typing import NamedTuple\nclass Pair(NamedTuple):\n    a: int\n    b: str\n"
        "pair = Pair(1, 'x')",
        "(pair.b, Pair._fields)",
        ["x", ["a", "b"]],
        id="typing-namedtuple",
    ),
    pytest.param(
        "import collections\nBase = collections.namedtuple('Base', 'x')\n"
        "class Sub(Base):\n    def double(self):\n        return self.x * 2\ns = Sub(21)",
        "s.double()",
        42,
        id="class-deriving-from-a-namedtuple",
    ),
    pytest.param(
        "from typing import TypedDict\nclass Movie(TypedDict):\n    title: str\n"
        "Song = TypedDict('Song', {'name': str})\nm = Movie(title='x')",
        "(m['title'], list(Song.__annotations__))",
        ["x", ["name"]],
        id="typeddict",
    ),
    pytest.param(
        "import typing\nclass P:\n    pass\nIds = typing.List[int]\nMaybe = typing.Optional[P]\n"
        "Table = dict[str, list[P]]\nT = typing.TypeVar('T')\n"
        "UserId = typing.NewType('UserId', int)",
        "(Ids == typing.List[int], Maybe == typing.Optional[P], typing.get_args(Table)[0] is str, "
        "T.__name__, UserId(5))",
        [True, True, True, "T", 5],
        id="typing-aliases",
    ),
    pytest.param(
        "class Account:\n    rate = 2\n    def __init__(self, n):\n        self._n = n\n"
        "    @property\n    def total(self):\n        return self._n * self.rate\n"
        "    @classmethod\n    def empty(cls):\n        return cls(0)\nacct = Account(21)",
        "(acct.total, Account.empty().total)",
        [42, 0],
        id="class-instance",
    ),
    pytest.param(
        "import functools\n@functools.lru_cache(maxsize=None)\ndef fib(n):\n"
        "    return n if n < 2 else fib(n - 1) + fib(n - 2)\nfirst = fib(30)",
        "(fib(80), first)",
        [23416728348467685, 832040],
        id="lru-cache",
    ),
    pytest.param(
        "import functools\ndef slow(n):\n    return n * 2\nslow = functools.lru_cache(slow)",
        "slow(21)",
        42,
        id="lru-cache-rebinding",
    ),
    pytest.param(
        "k = 3\nsq = lambda x: x * x + k\nby_default = lambda x, y=10: x + y",
        "(sq(3), by_default(1), by_default(1, 2))",
        [12, 11, 3],
        id="lambdas",
    ),
    pytest.param(
        "def make_adder(n):\n    def add(x):\n        return x + n\n    return add\n"
        "add3 = make_adder(3)",
        "(add3(4), make_adder(1)(1))",
        [7, 2],
        id="closure",
    ),
    pytest.param(
        "def outer():\n    def fact(n):\n        return 1 if n < 2 else n * fact(n - 1)\n"
        "    return fact\nfact = outer()",
        "fact(5)",
        120,
        id="recursive-nested-function",
    ),
    pytest.param(
        "def scaler():\n    import math\n    return lambda r: round(math.pi * r * r, 2)\n"
        "area = scaler()\nimport json\ncodecs_of = {'json': json}",
        "(area(1), codecs_of['json'].dumps(1))",
        [3.14, "1"],
        id="closure-over-a-module",
    ),
    pytest.param(
        "def deco(fn):\n    def wrapper(*a):\n        return fn(*a) + 1\n    return wrapper\n"
        "@deco\ndef plus(x):\n    return x",
        "plus(41)",
        42,
        id="decorator-of-the-code",
    ),
    pytest.param(
        "import functools\ndef power(b, e):\n    return b ** e\n"
        "cube = functools.partial(power, e=3)\n"
        "ops = {'neg': lambda v: -v, 'cube': cube}",
        "(ops['neg'](2), ops['cube'](2))",
        [-2, 8],
        id="partial-and-lambdas-in-a-dict",
    ),
]


@pytest.mark.parametrize(("define", "use", "expected"), COMMON_TYPES)
def test_common_types_survive_every_later_step(define: str, use: str, expected: object) -> None:
    ev = evaluate(define)
    assert ev.ok, ev.error
    assert ev.dropped == (), ev.dropped_reasons
    for _step in range(3):  # each step restores, then saves again: the chain must not decay
        ev = evaluate(use, bindings=ev.bindings)
        assert ev.ok, ev.error
        assert ev.value == expected
        assert ev.dropped == (), ev.dropped_reasons


def test_a_value_that_cannot_be_kept_does_not_poison_the_others() -> None:
    code = (
        "import enum, dataclasses\n"
        "class E(enum.Enum):\n    A = 1\n"
        "@dataclasses.dataclass\nclass D:\n    x: int\n"
        "gen = (i for i in range(3))\nd = D(1)\ne = E.A\nsq = lambda v: v * v\n"
    )
    ev = evaluate(code)
    assert ev.ok and ev.dropped == ("gen",)
    assert "gen" not in ev.variables and ev.bindings is not None
    assert "gen" not in ev.bindings.names and "d" in ev.bindings.names
    ev = evaluate("(d.x, e.name, sq(3))", bindings=ev.bindings)
    assert ev.ok and ev.value == [1, "A", 9], ev.error


def test_a_definition_that_fails_to_re_run_is_dropped_alone_with_its_error() -> None:
    first = evaluate("base = 1\nclass K:\n    v = base\nk = K()\ndel base\nkeep = 42")
    assert first.ok, first.error
    ev = evaluate("keep", bindings=first.bindings)
    assert ev.ok and ev.value == 42, ev.error
    assert set(ev.dropped) == {"K", "k"}
    assert "NameError: name 'base' is not defined" in ev.dropped_reasons["K"]
    assert ev.bindings is not None and set(ev.bindings.names) == {"keep"}


def test_a_statement_that_calls_a_tool_is_not_re_run() -> None:
    class Fields:
        calls = 0

        def names(self) -> str:
            Fields.calls += 1
            return "x y"

    code = "import collections\nPt = collections.namedtuple('Pt', Fields.names())\nn = 1"
    ev = evaluate(code, tools=[Fields])
    assert ev.ok and ev.dropped == ("Pt",)
    assert "would call a tool again" in ev.dropped_reasons["Pt"]
    assert evaluate("n", tools=[Fields], bindings=ev.bindings).value == 1
    assert Fields.calls == 1


def test_a_deeply_nested_binding_is_dropped_not_fatal() -> None:
    ev = evaluate("v = []\nfor _ in range(100000):\n    v = [v]\nok = 1")
    assert ev.ok and ev.dropped == ("v",)
    assert "nested too deeply" in ev.dropped_reasons["v"]
    assert evaluate("ok", bindings=ev.bindings).value == 1


def test_a_huge_int_binding_survives() -> None:
    ev = evaluate("big = 10 ** 5000")
    assert ev.ok and ev.dropped == ()
    again = evaluate("big % 7 == (10 ** 5000) % 7", bindings=ev.bindings)
    assert again.ok and again.value is True


def test_traceback_of_a_function_kept_by_value_names_its_origin() -> None:
    first = evaluate("f = lambda x: 1 / x")
    ev = evaluate("y = 2\nf(0)", bindings=first.bindings)
    assert ev.error_kind == "exception" and "ZeroDivisionError" in ev.error
    assert "earlier step" in ev.traceback and "y = 2" not in ev.traceback


def test_using_a_variable_that_was_not_restored_says_why() -> None:
    first = evaluate("base = 1\nclass K:\n    v = base\ndel base")
    ev = evaluate("K.v", bindings=first.bindings)
    assert ev.error_kind == "exception"
    assert ev.error.startswith("line 1: NameError: name 'K' is not defined (it was not restored")
    assert "NameError: name 'base' is not defined" in ev.error


def test_output_of_re_run_definitions_is_not_this_steps_output() -> None:
    first = evaluate("class Loud:\n    print('defining')\nx = Loud()")
    assert first.stdout == "defining\n"
    ev = evaluate("print('step two')\nx.__module__", bindings=first.bindings)
    assert ev.ok and ev.stdout == "step two\n", ev.error


@pytest.mark.parametrize(
    "rebind",
    ["for f in [lambda: 2]:\n    pass", "def reset():\n    global f\n    f = lambda: 2\nreset()"],
    ids=["for", "global"],
)
def test_a_definition_rebound_another_way_is_kept_as_rebound(rebind: str) -> None:
    first = evaluate("def f():\n    return 1")
    second = evaluate(rebind, bindings=first.bindings)
    assert second.ok and second.dropped == (), second.error
    ev = evaluate("f()", bindings=second.bindings)
    assert ev.ok and ev.value == 2, ev.error


@pytest.mark.parametrize(
    "rebind",
    [
        "if True:\n    def f():\n        return 2",
        "def reset():\n    global f\n    def f():\n        return 2\nreset()",
    ],
    ids=["if", "global-def"],
)
def test_a_definition_made_inside_a_block_is_dropped_never_re_run_stale(rebind: str) -> None:
    first = evaluate("def f():\n    return 1")
    second = evaluate(rebind, bindings=first.bindings)
    assert second.ok and second.dropped == ("f",)
    assert "top-level def, class or assignment" in second.dropped_reasons["f"]
    ev = evaluate("f()", bindings=second.bindings)
    assert ev.error_kind == "exception" and "NameError" in ev.error


def test_bound_methods_are_kept_and_bound_again() -> None:
    first = evaluate(
        "class Sorter:\n    def __init__(self, field): self.field = field\n"
        "    def key(self, row): return row[self.field]\n"
        "    @classmethod\n    def make(cls): return cls('age')\n"
        "by_age = Sorter('age').key\nmake = Sorter.make\n"
        "import re\nfind = re.compile('a+').search\nfromkeys = dict.fromkeys"
    )
    assert first.ok and first.dropped_reasons == {}, first.dropped_reasons
    assert {"by_age", "make", "find", "fromkeys"} <= set(first.variables)
    second = evaluate(
        "rows = sorted([{'age': 3}, {'age': 1}], key=by_age)\n"
        "(rows, make().field, find('baaa').group(), fromkeys('ab'))",
        bindings=first.bindings,
    )
    assert second.ok, second.error
    assert second.value == [[{"age": 1}, {"age": 3}], "age", "aaa", {"a": None, "b": None}]


def test_a_value_needing_a_dropped_class_is_dropped_at_save_with_the_reason() -> None:
    class Api:
        def rate(self) -> int:
            return 5

    code = "class Pricer:\n    def __init__(self, r=Api.rate()): self.r = r\np = Pricer()\nps = [p]"
    first = evaluate(code, tools={"Api": Api()})
    assert first.ok and "p" not in first.variables and "ps" not in first.variables
    assert first.dropped_reasons["p"].startswith("a Pricer that needs Pricer, which is not kept")
    assert "would call a tool again" in first.dropped_reasons["p"]
    assert first.bindings is not None and "p" not in first.bindings.names


def test_functions_defined_in_a_loop_are_kept_by_value_in_their_list() -> None:
    first = evaluate("fs = []\nfor i in range(3):\n    def g(i=i): return i * i\n    fs.append(g)")
    assert first.ok and "fs" in first.variables and "g" in first.dropped_reasons
    assert evaluate("[f() for f in fs]", bindings=first.bindings).value == [0, 1, 4]


def test_what_the_restore_would_refuse_is_dropped_at_save() -> None:
    first = evaluate("f = print\nkept = 1")  # the sandbox's print is its own, not restorable
    assert first.ok and set(first.variables) == {"kept"}
    assert "cannot be saved" in first.dropped_reasons["f"]
    assert first.bindings is not None and first.bindings.names == ("kept",)


def test_a_definition_needing_a_dropped_one_is_dropped_at_save_with_the_reason() -> None:
    first = evaluate(
        "if True:\n    class Base:\n        x = 1\n"
        "class Child(Base):\n    pass\nc = Child()\n"
        "for _ in range(1):\n    def deco(f): return f\n"
        "@deco\ndef h(): return 1\n"
        "def later(): return Base\n"  # its body reads Base only when called: kept
        "import math\nclass M:\n    v = math.pi\n"
    )
    assert first.ok
    reasons = first.dropped_reasons
    assert reasons["Child"].startswith("class Child that needs Base, which is not kept (class")
    assert reasons["c"] == "a Child that needs Child, which is not kept (see Child)"
    assert reasons["h"].startswith("a function that needs deco, which is not kept")
    assert {"later", "M", "math"} <= set(first.variables)
    assert not {"Child", "c", "h"} & set(first.variables)
    second = evaluate("(later.__name__, round(M.v, 2))", bindings=first.bindings)
    assert second.ok and second.value == ["later", 3.14] and second.dropped_reasons == {}

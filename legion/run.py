"""`legion run module:Agent "task"`: run an agent from the shell and watch every step.

The agent is named as `package.module:AgentClass` or `path/to/file.py:AgentClass`. Each step is
printed as it happens (action, code, the sandbox's result), then the turn's result.

With no API key for the model's provider in the environment (or with `--offline`), the run uses
the offline demo: a scripted model, clearly labelled, so the command works on a fresh machine.
A model string that names no provider litellm knows (`nonsense`, `opnai:gpt-4o`) is an error
naming it, exit 2, whether a key is set or not: the demo is only for a valid model without a key.
The script is the agent module's `DEMO_STEPS` if it defines one (a list of action dicts, where
`{task}` in code is replaced by the task's repr), otherwise a generic two-step script.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any, TextIO

__all__ = ["main"]

PROVIDER_KEYS = {
    "openai": ["OPENAI_API_KEY"],
    "anthropic": ["ANTHROPIC_API_KEY"],
    "gemini": ["GEMINI_API_KEY", "GOOGLE_API_KEY"],
    "mistral": ["MISTRAL_API_KEY"],
    "groq": ["GROQ_API_KEY"],
    "deepseek": ["DEEPSEEK_API_KEY"],
    "openrouter": ["OPENROUTER_API_KEY"],
    "xai": ["XAI_API_KEY"],
    "cohere": ["COHERE_API_KEY"],
    "together_ai": ["TOGETHERAI_API_KEY", "TOGETHER_API_KEY"],
}
LOCAL_PROVIDERS = {"ollama", "ollama_chat", "lm_studio", "vllm", "hosted_vllm"}

GENERIC_DEMO = [
    {
        "action": "eval_and_continue",
        "code": (
            "task = {task}\nwords = task.split()\nprint('task has', len(words), 'words')\nwords[:5]"
        ),
        "result": "",
    },
    {
        "action": "return",
        "code": "",
        "result": "(offline demo) A scripted model answered instead of an LLM. Set an API key "
        "(e.g. OPENAI_API_KEY) or pass --model to run the agent for real.",
    },
]


def load_agent(spec: str) -> Any:
    """`module:Class` or `file.py:Class` -> the class (a file's folder joins sys.path)."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise SystemExit(
            f"legion run: expected module:AgentClass or file.py:AgentClass, got {spec!r}"
        )
    if target.endswith(".py"):
        path = Path(target).resolve()
        if not path.exists():
            raise SystemExit(f"legion run: no such file {target}")
        sys.path.insert(0, str(path.parent))
        target = path.stem
    else:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(target)
    except Exception as exc:  # the user's module: say where it failed, in one line
        raise SystemExit(f"legion run: cannot import {target}: {_one_line(exc)}") from None
    obj: Any = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise SystemExit(f"legion run: {target} has no {name}")
    return obj


def _one_line(exc: BaseException) -> str:
    """`Type: message (at file:line)`, the line being the deepest frame of the failure."""
    import traceback

    text = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{text} (at {exc.filename}:{exc.lineno})"
    ours = str(Path(__file__).parent)
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(("<", ours)) and "importlib" not in f.filename
    ]  # the user's code, not the import machinery
    if frames:
        return f"{text} (at {frames[-1].filename}:{frames[-1].lineno})"
    return text


def has_key(model: str, options: dict[str, Any] | None = None) -> bool:
    """Is a key for this model's provider in the environment (or in `options`, the agent's
    `llm_options`)? Local providers need none. A model string naming no provider litellm
    knows raises `legion.ConfigError` (`llm.provider_of`)."""
    from .llm import provider_of

    provider = provider_of(model, options)
    if provider in LOCAL_PROVIDERS or (options or {}).get("api_key"):
        return True
    names = PROVIDER_KEYS.get(provider, [f"{provider.upper()}_API_KEY"])
    return any(os.environ.get(n) for n in names)


def offline_options(steps: list[Any], model: str = "openai:gpt-4o-mini") -> dict[str, Any]:
    """For examples: `{}` when a key for `model` is set, else `{"model": ScriptedModel(steps)}`
    after printing a banner that says a scripted model, not an LLM, is answering."""
    if has_key(model):
        return {}
    from legion import testing

    print(f"*** OFFLINE DEMO: no API key for {model!r}; a scripted model (not an LLM) answers ***")
    return {"model": testing.ScriptedModel(steps, name="offline-demo")}


def demo_steps(agent: Any, task: str) -> list[dict[str, Any]]:
    module = sys.modules.get(agent.__module__)
    steps = getattr(module, "DEMO_STEPS", None) or GENERIC_DEMO
    return [
        {**step, "code": step.get("code", "").replace("{task}", repr(task))}
        if isinstance(step, dict)
        else step  # any other `legion.testing` step (an llm_error...) as it is
        for step in steps
    ]


def _print_step(event: dict[str, Any], out: TextIO) -> None:
    kind = event.get("type")
    if kind == "legion.step":
        obj = event["object"]
        action = obj.get("action", "?") if isinstance(obj, dict) else "?"
        out.write(f"\n── step {event['iteration'] + 1} · {action} ──\n")
        code = obj.get("code") if isinstance(obj, dict) else None
        if code:
            out.write(textwrap.indent(code.rstrip(), "  │ ") + "\n")
        if isinstance(obj, dict) and action == "return":
            out.write(f"  result: {obj.get('result')!r}\n")
    elif kind == "legion.eval":
        if event["stdout"]:
            out.write(textwrap.indent(event["stdout"].rstrip(), "  printed: ") + "\n")
        if event["ok"]:
            out.write(f"  → {_short(event['value'])}\n")
        else:
            out.write(f"  ✗ {_short(event['error'])}\n")
    out.flush()


def _short(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text) - limit} more chars)"


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """Run the command; 0 on a result, 1 on a cancelled turn, 2 on bad input (a config error,
    a module that cannot be imported, not an agent), which is reported as one line on stderr."""
    out = out or sys.stdout
    parser = argparse.ArgumentParser(prog="legion run", description=__doc__.split("\n\n")[0])
    parser.add_argument("agent", help="module:AgentClass or path/to/file.py:AgentClass")
    parser.add_argument("task", help="the task for the agent")
    parser.add_argument("--model", help="override the model (e.g. openai:gpt-4o-mini)")
    parser.add_argument("--max-iterations", type=int, help="override max_iterations")
    parser.add_argument("--offline", action="store_true", help="use the scripted offline demo")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    import legion
    from legion import agent as agent_module
    from legion import testing

    cls = load_agent(args.agent)
    if not agent_module.is_agent(cls):
        sys.stderr.write(f"legion run: {args.agent} is not a legion.Agent subclass\n")
        return 2
    options: dict[str, Any] = {}
    if args.model:
        options["model"] = args.model
    if args.max_iterations is not None:
        options["max_iterations"] = args.max_iterations
    try:
        with warnings.catch_warnings():  # unknown keys warn once, when the agent starts
            warnings.simplefilter("ignore")
            resolved = legion.config.resolve(cls.config, options)
    except legion.ConfigError as exc:
        sys.stderr.write(f"legion run: {cls.__qualname__}: {exc}\n")
        return 2
    model = resolved["model"]
    try:  # a wrong model string is named as such, never taken for a missing key
        keyed = not isinstance(model, str) or has_key(model, resolved["llm_options"])
    except legion.ConfigError as exc:
        sys.stderr.write(f"legion run: {exc}\n")
        return 2
    demo = None
    if args.offline or not keyed:
        demo = testing.ScriptedModel(demo_steps(cls, args.task), name="offline-demo")
        why, fix = (
            ("--offline was given", "Leave out --offline")
            if args.offline
            else (f"no API key for {model!r} was found", "Set the provider's API key")
        )
        out.write(
            f"*** OFFLINE DEMO: {why}, so a scripted model (not an LLM) answers. {fix} to run "
            "for real. ***\n"
        )
        options["model"] = demo
    else:
        testing.allow_real_models()
    out.write(f"Running {cls.__qualname__} on: {args.task}\n")
    out.flush()
    pid = agent_module.start_agent(cls, observer=legion.self(), **options)
    try:
        legion.cast(pid, args.task)
        while True:
            event = legion.receive(
                match=lambda m: isinstance(m, dict) and str(m.get("type", "")).startswith("legion.")
            )
            if event["type"] == "legion.turn_done":
                break
            _print_step(event, out)
    finally:
        agent_module._dispose(pid)
        if demo is not None:
            demo.close()
    if event["status"] == "cancel":
        out.write(f"\nCancelled: {event['value']}\n")
        if event.get("error"):
            out.write(f"  last error: {_short(event['error'], 2000)}\n")
        return 1
    out.write(f"\nResult: {event['value']!r}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

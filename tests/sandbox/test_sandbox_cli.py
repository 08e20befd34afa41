"""The CLI prints the outcome and exits 0 on success, 1 on failure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from legion.sandbox.cli import main


def test_cli_prints_stdout_and_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", "print('hi')\n6 * 7"]) == 0
    assert capsys.readouterr().out == "hi\n42\n"


def test_cli_reports_errors_with_their_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", "import os"]) == 1
    err = capsys.readouterr().err
    assert "module 'os' is not available in the sandbox" in err and "[forbidden]" in err


def test_cli_runs_a_file_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "code.py"
    script.write_text("x = [1, 2]\nsum(x)")
    assert main([str(script), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and out["value"] == "3" and out["variables"] == {"x": "[1, 2]"}


def test_cli_info_lists_the_layers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--info"]) == 0
    assert "seccomp" in capsys.readouterr().out


def test_python_m_legion_sandbox_works() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "legion.sandbox", "-c", "1 + 1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0 and proc.stdout == "2\n"


def test_cli_unreadable_files_and_bad_limits_are_one_line_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    latin = tmp_path / "latin.py"
    latin.write_bytes(b"\xff\xfe bad")
    for argv, said in [
        ([str(tmp_path / "missing.py")], "cannot read"),
        ([str(latin)], "is not UTF-8 text"),
        (["-c", "1", "--timeout", "nan"], "timeout must be"),
        (["-c", "1", "--max-memory", "0"], "max_memory must be"),
    ]:
        with pytest.raises(SystemExit) as exited:
            main(argv)
        err = capsys.readouterr().err
        assert exited.value.code == 2 and said in err and "Traceback" not in err


def test_cli_timeout_inf_runs_without_a_limit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", "6 * 7", "--timeout", "inf"]) == 0
    assert capsys.readouterr().out == "42\n"


def test_cli_a_syntax_error_without_a_line_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", "1\x00"]) == 1
    assert "SyntaxError" in capsys.readouterr().err

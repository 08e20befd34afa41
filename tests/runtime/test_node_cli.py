"""`legion node` refuses what it cannot honour with a one-line usage error naming `legion node`
(exit status 2) before it starts anything: an option it does not know (a typo used to be
dropped silently), a port outside 0..65535 (the OS would take it modulo 65536), a socket path
that is a directory, a bad limit in the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from legion import cli


@pytest.mark.parametrize(
    ("extra", "text"),
    [
        (["--metrics-prot", "9464"], "unrecognized arguments: --metrics-prot 9464"),
        (["--metrics-port", "70000"], "argument --metrics-port: a port must be in 0..65535"),
        (["--metrics-port", "-1"], "argument --metrics-port: a port must be in 0..65535"),
        (["--metrics-port", "http"], "argument --metrics-port: not a port number: 'http'"),
        (["--max-frame-bytes", "12"], "max_frame_bytes must be a number of bytes from 1024"),
    ],
    ids=["typo", "port-70000", "port-negative", "port-not-a-number", "frame-too-small"],
)
def test_legion_node_refuses_a_bad_option_with_a_usage_error(
    extra: list[str], text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["node", "--socket", str(tmp_path / "node.sock"), *extra])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"legion node: error: {text}" in err
    assert "Traceback" not in err


def test_a_socket_path_that_is_a_directory_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["node", "--socket", str(tmp_path)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"legion node: error: --socket {tmp_path} is a directory" in err
    assert tmp_path.is_dir()


def test_a_bad_limit_in_the_environment_names_legion_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEGION_MAX_FRAME_BYTES", "lots")
    with pytest.raises(SystemExit) as exited:
        cli.main(["node", "--socket", str(tmp_path / "node.sock")])
    assert exited.value.code == 2
    assert "legion node: error: LEGION_MAX_FRAME_BYTES" in capsys.readouterr().err

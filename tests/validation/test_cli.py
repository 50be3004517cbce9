"""The command line, through `main([...])`: every class of bad input is refused in one line with
exit status 2 before anything is computed; `--dtype` sets and restores JAX's x64 flag."""

import json
import subprocess
import sys

import jax
import pytest

from lmech.validation import cli
from lmech.validation.cli import main
from lmech.validation.report import Report


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    for n in needles:
        assert n in last, (n, err)
    return last


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "deep-linear" in out and "kernel" in out and "discrete-gd" in out


def test_console_script_installed():
    out = subprocess.run(
        [sys.executable, "-m", "lmech.validation.cli", "list"], capture_output=True, text=True, check=True
    )
    assert "deep-linear" in out.stdout


def test_run_writes_the_report_and_the_table(tmp_path, fake_registry, capsys):
    results = tmp_path / "RESULTS.md"
    argv = ["run", "fake", "--quick", "--no-progress", "--out", str(tmp_path / "runs")]
    assert main([*argv, "--seed", "3", "--write-results", str(results)]) == 0
    payload = json.loads((tmp_path / "runs" / "fake" / "metrics.json").read_text())
    assert payload["config"] == {"seed": 3, "a": 1.0, "n": 5, "dtype": "float64"}
    assert payload["metrics"]["traced_dtype"] == "float64"
    text = results.read_text()
    assert "(float64," in text and "| fake | final value | 0.3679 |" in text
    assert "--seed 3" in text
    assert "float64" in capsys.readouterr().out


def test_dtype_float32_is_used_recorded_and_restored(tmp_path, fake_registry):
    assert jax.config.jax_enable_x64  # tests run in float64 (conftest)
    results = tmp_path / "RESULTS.md"
    argv = ["run", "fake", "--no-progress", "--dtype", "float32", "--out", str(tmp_path)]
    assert main([*argv, "--write-results", str(results)]) == 0
    payload = json.loads((tmp_path / "fake" / "metrics.json").read_text())
    assert payload["config"]["dtype"] == "float32"
    assert payload["metrics"]["traced_dtype"] == "float32"  # traced in float32, not just labelled
    assert "(float32," in results.read_text() and "--dtype float32" in results.read_text()
    assert jax.config.jax_enable_x64  # main restores the flag it found
    assert main(["run", "fake", "--no-progress", "--out", str(tmp_path / "b")]) == 0  # float64 again
    assert json.loads((tmp_path / "b" / "fake" / "metrics.json").read_text())["config"]["dtype"] == "float64"


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["run", "nope"], ["unknown experiment 'nope'"]),
        (["run"], ["give one experiment NAME or --all"]),
        (["run", "fake", "--all"], ["give one experiment NAME or --all"]),
        (["run", "fake", "--dtype", "float16"], ["--dtype", "invalid choice"]),
        (["run", "fake", "--seed", "-1"], ["--seed must be a non-negative integer"]),
        (["run", "fake", "--seed", "one"], ["--seed must be a non-negative integer"]),
        (["frobnicate"], ["invalid choice"]),
    ],
)
def test_bad_arguments_exit_2(argv, needles, fake_registry, capsys):
    assert main(argv) == 2
    _one_line_error(capsys, *needles)
    assert fake_registry.calls == []


def test_out_is_checked_before_computing(tmp_path, fake_registry, capsys, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (a_file, "exists and is not a folder"),
        (a_file / "sub", f"cannot be created, {a_file} is not a folder"),
    ]
    for out, needle in cases:
        assert main(["run", "fake", "--no-progress", "--out", str(out)]) == 2
        _one_line_error(capsys, "--out", needle)
    # a file where the report's folder would go
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "fake").write_text("in the way")
    assert main(["run", "fake", "--no-progress", "--out", str(tmp_path / "runs")]) == 2
    _one_line_error(capsys, "exists and is not a folder", "'fake'")
    # a folder (or the nearest existing parent) that is not writable
    monkeypatch.setattr(cli.os, "access", lambda *a, **k: False)
    for out in (tmp_path, tmp_path / "new" / "deeper"):
        assert main(["run", "fake", "--no-progress", "--out", str(out)]) == 2
        _one_line_error(capsys, "not writable")
    assert fake_registry.calls == []
    assert not (tmp_path / "new").exists()


def test_write_results_path_is_checked_before_computing(tmp_path, fake_registry, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    for target, needle in [(tmp_path, "is a folder"), (a_file / "R.md", "is not a folder")]:
        argv = ["run", "fake", "--no-progress", "--out", str(tmp_path / "o"), "--write-results", str(target)]
        assert main(argv) == 2
        _one_line_error(capsys, "--write-results", needle)
    assert main(["results", str(tmp_path), "--write", str(tmp_path)]) == 2
    _one_line_error(capsys, "--write", "is a folder")
    assert fake_registry.calls == []


def test_results_rebuilds_the_table_from_reports(tmp_path, fake_registry, capsys):
    assert main(["run", "fake", "--no-progress", "--dtype", "float32", "--out", str(tmp_path / "r")]) == 0
    out = tmp_path / "RESULTS.md"
    assert main(["results", str(tmp_path / "r"), "--write", str(out), "--quick"]) == 0
    text = out.read_text()
    assert "| fake | final value | 0.3679 |" in text and "(float32," in text
    assert "| fake | wall time |" in text
    assert main(["results", str(tmp_path / "empty"), "--write", str(out)]) == 2
    _one_line_error(capsys, "no metrics.json found")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "metrics.json").write_text("{not json")
    assert main(["results", str(tmp_path / "broken"), "--write", str(out)]) == 2
    _one_line_error(capsys, "is not a report's metrics.json")
    Report("unknown-thing", {}, {"v": 1.0}).write(tmp_path / "u")
    assert main(["results", str(tmp_path / "u"), "--write", str(out)]) == 2
    assert "skipping unknown experiment 'unknown-thing'" in capsys.readouterr().err

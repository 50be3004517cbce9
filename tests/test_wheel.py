"""The wheel contains every lmech module (the namespace-package mapping is easy to break)."""

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _modules():
    mods = []
    for pkg, folder in (
        ("lmech.solvers", "solvers"),
        ("lmech.models", "models"),
        ("lmech.validation", "validation"),
    ):
        for p in sorted((ROOT / folder).rglob("*.py")):
            rel = p.relative_to(ROOT / folder).with_suffix("")
            parts = [x for x in rel.parts if x != "__init__"]
            mods.append(".".join([pkg, *parts]))
    return mods


def test_wheel_contains_every_module(tmp_path):
    pytest.importorskip("setuptools")
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(ROOT),
        ],
        check=True,
        cwd=tmp_path,
    )
    wheels = list(wheel_dir.glob("lmech-*.whl"))
    assert len(wheels) == 1
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheels[0])],
        check=True,
    )
    mods = _modules()
    assert "lmech.validation.experiments.deep_linear" in mods
    code = (
        "import importlib, sys, lmech.solvers\n"
        f"assert lmech.solvers.__file__.startswith({str(target)!r}), lmech.solvers.__file__\n"
        f"for m in {mods!r}: importlib.import_module(m)\n"
        "print('ok')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"},
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")

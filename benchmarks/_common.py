"""Timing helpers and the RESULTS.md writer shared by the benchmark scripts."""

from __future__ import annotations

import datetime
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax

RESULTS = Path(__file__).with_name("RESULTS.md")


def timed(fn, *, repeats: int = 3):
    """(first-call seconds incl. compilation, median seconds of `repeats` warm calls, result)."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fn())
        runs.append(time.perf_counter() - t0)
    return first, statistics.median(runs), out


def timed_interleaved(fns: dict, *, repeats: int = 3) -> dict:
    """Time several callables side by side: one compiling call each, then `repeats`
    rounds that call each once in turn (so drift of the machine hits all alike).
    Returns name -> (first-call seconds, median warm seconds, result)."""
    first, results, runs = {}, {}, {k: [] for k in fns}
    for k, fn in fns.items():
        t0 = time.perf_counter()
        results[k] = jax.block_until_ready(fn())
        first[k] = time.perf_counter() - t0
    for _ in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            results[k] = jax.block_until_ready(fn())
            runs[k].append(time.perf_counter() - t0)
    return {k: (first[k], statistics.median(runs[k]), results[k]) for k in fns}


def machine() -> str:
    dev = jax.devices()[0]
    return (
        f"{platform.machine()}, {os.cpu_count()} CPU cores, JAX {jax.__version__} on "
        f"{dev.platform} ({getattr(dev, 'device_kind', '')}), Python {platform.python_version()}"
    )


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section `## name` of RESULTS.md, atomically."""
    text = (
        RESULTS.read_text()
        if RESULTS.exists()
        else "# Benchmark results\n\nWritten by the scripts in this folder; each owns one section.\n"
    )
    stamp = datetime.date.today().isoformat()
    script = Path(sys.argv[0]).resolve()
    # absolute paths of this machine (a venv, a baseline install) are not part of the record
    args = ["PATH" if os.path.isabs(a) else a for a in sys.argv[1:]]
    cmd = "python " + " ".join([f"{script.parent.name}/{script.name}"] + args)
    section = f"## {name}\n\n`{cmd}` — {stamp} — {machine()}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = (
        pattern.sub(lambda _: section + "\n", text)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + section
    )
    fd, tmp = tempfile.mkstemp(dir=RESULTS.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, RESULTS)


def saxe_problem(width: int, depth: int):
    """The deep-linear benchmark problem: a whitened linear teacher with `width` modes
    (singular values geometric from 3 to 0.05; in = hidden = out = P = width), its `SaxeModes`
    (u₀ = 1e-2) and the full `depth`-layer network from the decoupled init of those modes."""
    import jax.numpy as jnp

    import lmech.models as lm
    from lmech.validation import datasets

    s = jnp.geomspace(3.0, 0.05, width)
    data = datasets.linear_teacher(s, width, width, width, key=jax.random.key(0))
    modes = lm.SaxeModes.from_dataset(data, depth, u0=1e-2)
    net = lm.MLP(
        width, (width,) * (depth - 1), width, activation="linear", parameterization="standard", bias=False
    )
    return modes, lm.Trained(net, data, params=lm.decoupled_init(net, modes, key=jax.random.key(1)))

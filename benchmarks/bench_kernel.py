"""The kernel-regime job, lmech against neural-tangents, side by side; and theory vs training.

The job (`kernel_job_lmech.py`, `kernel_job_nt.py`: the same job in each tool, written as
a user writes it): the analytic depth-10 ReLU NTK (NTK parameterization, σ_w = √2,
σ_b = 0.1) on the first 1536 standardized digits + 256 test points, and the test
predictions of the linearized flow at the 101 times t = 0 … 100, float64.

1. Cold: each job as a fresh process, the two tools alternating (A B A B …); wall time,
   CPU time (user + system) and peak resident memory of each process; medians.
2. Warm: in one process, the same job again on new data of the same shape (neural-tangents
   with its kernel function jitted, as its docs recommend); medians; tools alternating.
3. P = 512 … 8192 on the same inputs for both (digits with 5% jitter, written to an .npz
   that both jobs read), one cold process each, with their kernel / prediction phases; the
   predictions compared with each other and, at the largest P, lmech's Lanczos answer with
   its eigendecomposition answer.
4. Theory vs training the width-4096 network for the same kind of predictions.

neural-tangents runs from its own venv (`--nt-venv DIR` or the `NT_VENV` environment
variable; `../shared/reference/neural-tangents/setup.sh DIR` makes one); without one, parts
1–3 are skipped with a note. Timings need a quiet machine: the 1-minute load average is
recorded at the start and the end.

    python benchmarks/bench_kernel.py [--nt-venv DIR] [--repeats 5] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def run_process(cmd: list[str], workdir: Path) -> dict:
    """Run `cmd` as a fresh process: wall seconds, CPU seconds, peak RSS (MiB), stdout."""
    out, err = (tempfile.NamedTemporaryFile("w+", dir=workdir, delete=False) for _ in range(2))
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=HERE.parent)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    out.seek(0), err.seek(0)
    text, errors = out.read(), err.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{errors[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "rss": usage.ru_maxrss / 1024, "out": text}


def parse(line: str, key: str) -> float:
    """The number after `key` in a job's output line."""
    return float(line.split(key)[1].split()[0])


def rel_diff(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def jobs(nt_python: str | None):
    lm = [sys.executable, str(HERE / "kernel_job_lmech.py")]
    nt = None if nt_python is None else [nt_python, str(HERE / "kernel_job_nt.py")]
    return lm, nt


_IMPORT_JAX = (
    "import time; t = time.perf_counter(); import jax; s = time.perf_counter() - t; "
    "from importlib.metadata import version as v; "
    "print(s, v('jax'), v('ml_dtypes'), v('numpy'))"
)


def import_cost(lm, nt, workdir, repeats=3) -> str:
    """`import jax` alone in each tool's interpreter (fresh processes, alternating): its
    share of the cold job, and the versions that set it."""
    times, versions = {"lmech": [], "neural-tangents": []}, {}
    for _ in range(repeats):
        for name, cmd in (("lmech", lm), ("neural-tangents", nt)):
            out = run_process([cmd[0], "-c", _IMPORT_JAX], workdir)["out"].split()
            times[name].append(float(out[0]))
            versions[name] = f"jax {out[1]}, ml_dtypes {out[2]}, numpy {out[3]}"
    med = {n: statistics.median(t) for n, t in times.items()}
    return (
        f"Of which `import jax` alone (median of {repeats} fresh processes): lmech's environment "
        f"{med['lmech']:.2f} s ({versions['lmech']}), neural-tangents' {med['neural-tangents']:.2f} s "
        f"({versions['neural-tangents']}). lmech's install excludes ml_dtypes 0.7.0, whose extension "
        "takes ~0.4 s to import (0.5.x–0.6.0: a few ms)."
    )


def cold_and_warm(lm, nt, repeats, warm_processes, workdir) -> list[str]:
    runs = {"lmech": [], "neural-tangents": []}
    preds = {}
    for _ in range(repeats):  # alternating whole processes
        for name, cmd in (("lmech", lm), ("neural-tangents", nt)):
            save = workdir / f"{name}-cold.npy"
            runs[name].append(run_process([*cmd, "--save", str(save)], workdir))
            preds[name] = np.load(save)
            print(name, f"cold {runs[name][-1]['wall']:.2f} s", flush=True)
    warm = {"lmech": [], "neural-tangents": []}
    for _ in range(warm_processes):
        for name, cmd in (("lmech", lm), ("neural-tangents", nt)):
            line = run_process([*cmd, "--warm", "3"], workdir)["out"]
            warm[name].append((parse(line, "warm"), parse(line, "cpu")))
            print(name, line.strip(), flush=True)
    med = {n: {k: statistics.median(x[k] for x in runs[n]) for k in ("wall", "cpu", "rss")} for n in runs}
    wmed = {
        n: (statistics.median(w for w, _ in warm[n]), statistics.median(c for _, c in warm[n])) for n in warm
    }
    a, b = med["lmech"], med["neural-tangents"]
    diff = rel_diff(preds["lmech"], preds["neural-tangents"])
    return [
        f"Cold — each job a fresh process, the two alternating, median of {repeats} each (wall and CPU "
        "time of the whole process: interpreter, imports, data, kernels, predictions; peak resident memory):",
        "",
        "| | wall (s) | CPU (s) | peak RSS (MiB) |",
        "|---|---|---|---|",
        f"| lmech | {a['wall']:.2f} | {a['cpu']:.2f} | {a['rss']:.0f} |",
        f"| neural-tangents 0.6.5 | {b['wall']:.2f} | {b['cpu']:.2f} | {b['rss']:.0f} |",
        f"| **lmech / neural-tangents** | **{a['wall'] / b['wall']:.2f}** | **{a['cpu'] / b['cpu']:.2f}** | "
        f"**{a['rss'] / b['rss']:.2f}** |",
        "",
        import_cost(lm, nt, workdir),
        "",
        "Warm — in one process, the same job again on new digits splits of the same shape (neural-tangents' "
        f"kernel function jitted), median of 3 jobs per process, median over {warm_processes} processes per "
        "tool (alternating):",
        "",
        "| | wall (s) | CPU (s) |",
        "|---|---|---|",
        f"| lmech | {wmed['lmech'][0]:.3f} | {wmed['lmech'][1]:.3f} |",
        f"| neural-tangents 0.6.5 | {wmed['neural-tangents'][0]:.3f} | {wmed['neural-tangents'][1]:.3f} |",
        f"| **lmech / neural-tangents** | **{wmed['lmech'][0] / wmed['neural-tangents'][0]:.2f}** | "
        f"**{wmed['lmech'][1] / wmed['neural-tangents'][1]:.2f}** |",
        "",
        f"Predictions (101 times × 256 test points): max |lmech − neural-tangents| / max |neural-tangents| "
        f"= **{diff:.1e}**.",
    ]


def sweep_data(P: int, path: Path) -> None:
    """Digits (standardized as in the jobs) resampled to P training points with 5% jitter,
    and 256 jittered test points: the same inputs for both tools."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    Y = (y % 2 * 2.0 - 1.0)[:, None]
    rng = np.random.default_rng(P)
    perm = rng.permutation(len(X))
    test, pool = perm[:256], perm[256:]
    idx = rng.choice(pool, P, replace=P > len(pool))
    np.savez(
        path,
        x_train=X[idx] + 0.05 * rng.standard_normal((P, 64)),
        y_train=Y[idx],
        x_test=X[test] + 0.05 * rng.standard_normal((256, 64)),
    )


def sweep(lm, nt, sizes, workdir) -> list[str]:
    lines = [
        "Against P (cold processes on the same jittered-digits inputs; kernels = the analytic NTK and, for "
        "lmech, `Linearized`'s set-up; predictions = the 101 test predictions; lmech takes its Lanczos "
        "path above P = 1024):",
        "",
        "| P | lmech (s) | kernels | predictions | neural-tangents (s) | kernels | predictions | "
        "speed-up | predictions: speed-up | lmech vs neural-tangents | peak RSS lmech / n-t (GiB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for P in sizes:
        data = workdir / f"data{P}.npz"
        sweep_data(P, data)
        res, preds = {}, {}
        for name, cmd in (("lmech", lm), ("nt", nt)):
            save = workdir / f"{name}{P}.npy"
            res[name] = run_process([*cmd, "--data", str(data), "--phases", "--save", str(save)], workdir)
            preds[name] = np.load(save)
            print(name, res[name]["out"].strip(), flush=True)
        a, b = res["lmech"], res["nt"]
        ka, pa = parse(a["out"], "(kernels"), parse(a["out"], "predictions")
        kb, pb = parse(b["out"], "(kernels"), parse(b["out"], "predictions")
        lines.append(
            f"| {P} | {a['wall']:.2f} | {ka:.2f} | {pa:.2f} | {b['wall']:.2f} | {kb:.2f} | {pb:.2f} | "
            f"**{b['wall'] / a['wall']:.1f}×** | {pb / pa:.0f}× | {rel_diff(preds['lmech'], preds['nt']):.1e} | "
            f"{a['rss'] / 1024:.2f} / {b['rss'] / 1024:.2f} |"
        )
    # the largest P: lmech's Lanczos answer against its own eigendecomposition answer
    P = sizes[-1]
    save = workdir / f"eigh{P}.npy"
    ref = run_process(
        [*lm, "--data", str(workdir / f"data{P}.npz"), "--spectral", "eigh", "--save", str(save)], workdir
    )
    print("lmech eigh", ref["out"].strip(), flush=True)
    exact = np.load(save)
    lines += [
        "",
        f"At P = {P}: lmech's Lanczos predictions against its eigendecomposition predictions (the exact "
        f"answer; that run took {ref['wall']:.0f} s): max relative difference **{rel_diff(np.load(workdir / f'lmech{P}.npy'), exact):.1e}**; "
        f"neural-tangents' against the same: {rel_diff(np.load(workdir / f'nt{P}.npy'), exact):.1e}.",
    ]
    return lines


def theory_vs_training(quick: bool) -> list[str]:
    import jax

    jax.config.update("jax_enable_x64", True)
    from _common import timed

    import lmech.models as lm
    import lmech.solvers as ls
    from lmech.validation import datasets

    small = datasets.digits(256, 256, key=jax.random.key(1))
    net = lm.MLP(64, (4096,), 1, activation="relu", sigma_w=np.sqrt(2))
    params = net.init(jax.random.key(2))
    real = lm.Trained(net, small, params=params)
    steps = 200 if quick else 1000
    _, t_train, _ = timed(
        lambda: ls.solve(
            real, ls.GradientDescent(), lr=0.5, steps=steps, save_every=steps // 100, progress=False
        ).observables["f_test"],
        repeats=1,
    )

    def theory():
        lin = lm.Linearized.from_network(net, small, kernel="analytic", params=params)
        return ls.solve(
            lin, ls.ClosedForm(discrete=True), lr=0.5, steps=steps, save_every=steps // 100, progress=False
        ).observables["f_test"]

    _, t_theory, _ = timed(theory, repeats=3)
    return [
        f"Theory vs training (2-layer ReLU, width 4096, 256 digits, {steps} GD steps at η = 0.5, 101 saved "
        f"points): training {t_train:.2f} s, analytic linearized GD map {t_theory:.3f} s — "
        f"**{t_train / t_theory:.0f}×** faster (warm, in one process).",
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nt-venv", default=os.environ.get("NT_VENV"), help="neural-tangents venv (or $NT_VENV)")
    ap.add_argument("--repeats", type=int, default=5, help="cold processes per tool")
    ap.add_argument("--quick", action="store_true", help="3 repeats, P up to 2048")
    args = ap.parse_args()
    nt_python = None
    if args.nt_venv:
        nt_python = str(Path(args.nt_venv) / "bin" / "python")
        if not Path(nt_python).exists():
            sys.exit(f"--nt-venv {args.nt_venv}: no bin/python there")
    repeats = 3 if args.quick else args.repeats
    sizes = (512, 1024, 2048) if args.quick else (512, 1024, 2048, 4096, 8192)
    load0 = os.getloadavg()[0]
    lm, nt = jobs(nt_python)
    lines = [
        "The job: analytic depth-10 ReLU NTK (NTK parameterization, σ_w = √2, σ_b = 0.1; ten hidden layers) "
        "on the first 1536 standardized digits + 256 test points, then the linearized-flow test "
        "predictions at the 101 times t = 0 … 100, float64 — `benchmarks/kernel_job_lmech.py` (lmech's "
        "public API as a user writes it) and `benchmarks/kernel_job_nt.py` (the same job in "
        "neural-tangents 0.6.5 on jax 0.4.30, its own venv).",
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if nt is None:
            lines += [
                "*neural-tangents comparison skipped: no venv given (`--nt-venv DIR` or `NT_VENV`; "
                "`../shared/reference/neural-tangents/setup.sh DIR` makes one).*",
                "",
            ]
        else:
            lines += cold_and_warm(lm, nt, repeats, 2 if args.quick else 3, workdir) + [""]
            lines += sweep(lm, nt, sizes, workdir) + [""]
    lines += theory_vs_training(args.quick)
    load1 = os.getloadavg()[0]
    lines += ["", f"Machine load (1-minute average): {load0:.2f} at the start, {load1:.2f} at the end."]
    body = "\n".join(lines)
    print(body)
    from _common import write_section

    write_section("Kernel regime" + (" (quick)" if args.quick else ""), body)


if __name__ == "__main__":
    main()

"""The deep-linear experiment: its claims on tiny configurations, the best-lr search against
known minima and a brute-force scan, float32, and (slow) the --quick run through the CLI."""

import json

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

from lmech.validation.cli import main
from lmech.validation.experiments import EXPERIMENTS, deep_linear, run_experiment
from lmech.validation.experiments._best_lr import minimize_over_log_lr, steps_until_settled
from lmech.validation.experiments._deep_linear_measurements import measure_best_lr_vs_depth
from lmech.validation.report import read_results

TINY_SWEEP = dict(
    sweep_depths=(1, 2),
    sweep_n_lrs=13,
    sweep_zoom_points=9,
    sweep_zoom_rounds=4,
    sweep_max_steps=2000,
)


@pytest.fixture
def float32():
    """Trace in float32 for one test (the suite runs in float64)."""
    jax.config.update("jax_enable_x64", False)
    yield
    jax.config.update("jax_enable_x64", True)


def test_search_locates_a_cliff_finer_than_its_grid():
    """T falls like 1/η up to a cliff at η_c (not a grid point), then is infinite: the best
    η must sit just below η_c, to the final resolution, not at the grid point below it."""
    eta_c = 0.3712345
    T = lambda lrs: np.where(lrs < eta_c, np.ceil(1.0 / np.asarray(lrs)), np.inf)
    out = minimize_over_log_lr(T, 1e-3, 4.0, n_grid=13, n_zoom=9, rounds=4)
    grid = np.geomspace(1e-3, 4.0, 13)
    below = grid[grid < eta_c].max()
    assert out.value == np.ceil(1 / eta_c)  # ceil(2.694) = 3 steps, for 1/3 <= η < η_c
    assert out.interval[1] < eta_c < out.interval[1] * (1 + out.resolution)
    assert out.interval[0] / (1 + out.resolution) < 1 / 3 <= out.interval[0]
    assert out.interval[1] > 1.2 * below  # far above the best grid point
    assert out.resolution < 3e-3 and not out.at_range_edge
    assert np.all(np.diff(out.lrs) > 0) and len(out.lrs) == 13 + 4 * 8
    # a smooth interior minimum
    out = minimize_over_log_lr(lambda x: np.log(x / 0.0123) ** 2, 1e-3, 4.0, n_grid=13, n_zoom=9, rounds=6)
    assert out.best == pytest.approx(0.0123, rel=out.resolution)
    # never learned anywhere: reported as such
    out = minimize_over_log_lr(lambda x: np.full(len(x), np.inf), 1e-3, 1.0, n_grid=5, n_zoom=3, rounds=2)
    assert np.isnan(out.best) and out.value == np.inf
    with pytest.raises(ValueError, match="n_zoom >= 3"):
        minimize_over_log_lr(T, 1e-3, 1.0, n_grid=5, n_zoom=2, rounds=1)
    # a minimum at the end of the range is flagged
    assert minimize_over_log_lr(lambda x: x, 1e-3, 1.0, n_grid=5, n_zoom=3, rounds=2).at_range_edge
    with pytest.raises(ValueError, match="lr_min < lr_max"):
        minimize_over_log_lr(T, 1.0, 1e-3, n_grid=5, n_zoom=3, rounds=1)


def test_steps_until_settled_counts_the_last_entry():
    target = np.array([1.0, 2.0])
    u = np.array([[0.0, 0.0], [1.0, 2.0], [1.5, 2.0], [1.001, 1.999], [1.0, 2.0]])
    assert steps_until_settled(u, target, 0.01) == 3  # in at 1, out at 2, in for good from 3
    assert float(steps_until_settled(jnp.asarray(u), jnp.asarray(target), 0.01, xp=jnp)) == 3
    assert steps_until_settled(u[:3], target, 0.01) == np.inf


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    """A tiny configuration run once, end to end, and written: `(folder, results read back)`."""
    cfg = deep_linear.Config(
        depths=(2,),
        lrs=(0.025, 0.05),
        flow_time=10.0,
        n_points=50,
        random_s=(3.0, 2.0, 1.0, 0.5),
        random_stds=(1e-3,),
        random_seeds=2,
        random_lr=0.05,
        **TINY_SWEEP,
    )
    folder = run_experiment(deep_linear, cfg, progress=False).write(tmp_path_factory.mktemp("runs"))
    plt.close("all")
    return folder, read_results(folder)


def test_deep_linear_tiny_run_meets_the_claims(tiny_report):
    """Compute, figures, summary, headline, written report, and the figures redrawn from the
    written report alone."""
    folder, back = tiny_report
    m = back["metrics"]
    assert back["config"]["dtype"] == "float64" and m["numerics"]["flow_rtol"] == 1e-12
    assert m["decoupled"]["worst_mode_ode_vs_full_flow"] < 1e-8
    assert m["decoupled"]["worst_mode_map_vs_real_gd"] < 1e-9
    assert m["decoupled"]["depths"]["2"]["closed_form_vs_mode_ode"]["mode_strengths"]["max"] < 1e-8
    for order in m["decoupled"]["flow_gd_gap_orders"].values():
        assert abs(order - 1) < 0.2
    assert m["random_init"]["worst"]["orthogonalized"] < 0.05
    for row in m["depth_sweep"]["table"]:
        assert row["real_gd_steps"] == row["learning_steps"]  # the mode map is GD exactly
    names = {"modes_over_time", "errors_over_time", "flow_gd_gap", "random_init", "depth_sweep"}
    names |= {"learning_time_vs_lr"}
    for name in names:
        assert (folder / f"{name}.png").exists()
    assert set(deep_linear.figures(back)) == names  # drawn again from the written curves alone
    h = deep_linear.headline(m)
    assert h["best lr / stability lr by depth (lr grid not tied to the bound)"].startswith("N=1: 0.50")
    assert "| 2 |" in (folder / "summary.md").read_text()
    assert "deep-linear" in EXPERIMENTS
    plt.close("all")


def _sweep(**kw):
    cfg = deep_linear.Config(**(TINY_SWEEP | kw))
    res, curves = measure_best_lr_vs_depth(cfg, jax.random.key(2), deep_linear.numerics())
    return res["table"], curves


def test_best_lr_is_measured_not_implied(tiny_report):
    """Depth 1 has a closed form: GD on whitened linear regression lands within tol of every
    target in one step iff |1 − η| ≤ tol·s_i/(s_i − u0) for all i. Depth 2: the optimum found
    by the search equals a brute-force scan's, and is below the stability bound."""
    _, back = tiny_report
    res, curves = back["metrics"]["depth_sweep"], back["curves"]
    one, two = res["table"]
    assert one["learning_steps"] == 1 and one["real_gd_steps"] == 1
    s, u0, tol = np.array(deep_linear.Config.s), deep_linear.Config.sweep_u0, deep_linear.Config.sweep_tol
    half_width = np.min(tol * s / (s - u0))
    lo, hi = one["best_lr_interval"]
    assert one["resolution"] < 2e-3
    assert 1 - half_width <= lo < (1 - half_width) * (1 + one["resolution"])  # the one-step window,
    assert (1 + half_width) / (1 + one["resolution"]) < hi <= 1 + half_width  # resolved at both ends
    assert one["best_over_stability"] == pytest.approx(0.5, abs=1e-2)

    from lmech.validation.experiments._deep_linear_measurements import _learning_time_of_mode_map

    stable = two["stability_lr"]
    T = _learning_time_of_mode_map(jnp.asarray(s), u0, 2, 2000, tol, 9)
    ratios = np.linspace(0.80, 1.02, 221)  # brute force, 0.1% steps, independent of the search
    brute = T(ratios * stable)
    assert two["learning_steps"] == brute.min()
    at_min = ratios[brute == brute.min()]
    assert at_min.min() - 2e-3 <= two["best_over_stability"] <= at_min.max() + 2e-3
    assert two["best_over_stability"] < 1 and two["real_gd_steps"] == two["learning_steps"]
    assert np.isinf(T(np.array([1.01 * stable]))[0])  # past the bound it never settles
    assert {"depth_sweep.d1.lrs", "depth_sweep.d2.learning_steps", "depth_sweep.best_lr"} <= set(curves)


def test_best_lr_search_in_float32(float32):
    assert deep_linear.numerics()["dtype"] == "float32"
    (row,), _ = _sweep(sweep_depths=(2,))
    assert row["real_gd_steps"] == row["learning_steps"] == 26  # as in float64
    assert 0.9 < row["best_over_stability"] < 1


def test_numerics_follow_the_dtype(float32):
    n32 = deep_linear.numerics()
    assert n32["flow_rtol"] >= 100 * np.finfo(np.float32).eps and n32["flow_atol"] >= np.finfo(np.float32).eps
    jax.config.update("jax_enable_x64", True)
    assert deep_linear.numerics() == {
        "dtype": "float64",
        "eps": float(np.finfo(np.float64).eps),
        "flow_rtol": 1e-12,
        "flow_atol": 1e-14,
    }


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_quick_run_through_cli(tmp_path, dtype):
    argv = ["run", "deep-linear", "--quick", "--no-progress", "--dtype", dtype, "--out", str(tmp_path)]
    assert main([*argv, "--write-results", str(tmp_path / "R.md")]) == 0
    payload = json.loads((tmp_path / "deep-linear" / "metrics.json").read_text())
    m = payload["metrics"]
    assert payload["config"]["dtype"] == dtype == m["numerics"]["dtype"]
    ode, gd = (1e-8, 1e-9) if dtype == "float64" else (1e-3, 1e-4)
    assert m["decoupled"]["worst_mode_ode_vs_full_flow"] < ode
    assert m["decoupled"]["worst_mode_map_vs_real_gd"] < gd
    assert m["random_init"]["worst"]["orthogonalized"] < 0.05
    sweep = m["depth_sweep"]
    for row in sweep["table"]:
        assert row["real_gd_steps"] == row["learning_steps"]
        assert row["resolution"] < 1e-3
    ratios = [row["best_over_stability"] for row in sweep["table"] if row["depth"] >= 2]
    assert all(0.9 < r < 1 for r in ratios)
    # measured, so not identical to the bound's slope
    assert abs(sweep["best_lr_vs_depth_slope"] - sweep["stability_lr_vs_depth_slope"]) > 1e-3
    assert f"({dtype}," in (tmp_path / "R.md").read_text()

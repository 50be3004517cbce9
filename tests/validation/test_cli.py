import json
import subprocess
import sys

import pytest

from lmech.validation.cli import main
from lmech.validation.experiments import EXPERIMENTS, deep_linear


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "deep-linear" in out


def test_run_rejects_unknown_and_missing(capsys):
    assert main(["run", "nope"]) == 2
    assert main(["run"]) == 2


def test_deep_linear_tiny_run_meets_the_claims(tmp_path):
    """A tiny configuration of the experiment, end to end through the CLI's writer."""
    cfg = deep_linear.Config(
        depths=(2, 3),
        lrs=(0.02, 0.05),
        flow_time=10.0,
        n_points=50,
        random_s=(3.0, 2.0, 1.0, 0.5),
        random_stds=(1e-3,),
        random_seeds=2,
        random_lr=0.05,
        sweep_depths=(1, 2, 4),
        sweep_n_lrs=8,
        sweep_max_steps=2000,
    )
    report = deep_linear.run(cfg, progress=False)
    folder = report.write(tmp_path)
    m = json.loads((folder / "metrics.json").read_text())["metrics"]
    assert m["decoupled"]["worst_mode_ode_vs_full_flow"] < 1e-8
    assert m["decoupled"]["worst_mode_map_vs_real_gd"] < 1e-9
    assert m["decoupled"]["depths"]["2"]["closed_form_vs_mode_ode"]["mode_strengths"]["max"] < 1e-8
    for order in m["decoupled"]["flow_gd_gap_orders"].values():
        assert abs(order - 1) < 0.2
    assert m["random_init"]["worst"]["orthogonalized"] < 0.05
    table = m["depth_sweep"]["table"]
    for row in table:
        assert row["real_gd_steps"] == row["learning_steps"]  # the mode map is GD exactly
    for name in ("modes_over_time", "errors_over_time", "flow_gd_gap", "random_init", "depth_sweep"):
        assert (folder / f"{name}.png").exists()
    assert set(deep_linear.headline(m)) >= {"exact mode GD map vs real GD (max rel. err.)"}
    assert "deep-linear" in EXPERIMENTS


def test_console_script_installed():
    out = subprocess.run(
        [sys.executable, "-m", "lmech.validation.cli", "list"], capture_output=True, text=True, check=True
    )
    assert "deep-linear" in out.stdout


@pytest.mark.slow
def test_quick_run_through_cli(tmp_path):
    assert main(["run", "deep-linear", "--quick", "--no-progress", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "deep-linear" / "metrics.json").exists()


def test_kernel_tiny_run_has_the_expected_scalings(tmp_path):
    from lmech.validation.experiments import kernel

    cfg = kernel.Config(
        n_train=48,
        n_test=24,
        steps=100,
        save_every=20,
        seeds=2,
        runs=(("relu", 2, (64, 256, 1024)),),
        large_lr_width=256,
    )
    report = kernel.run(cfg, progress=False)
    folder = report.write(tmp_path)
    m = json.loads((folder / "metrics.json").read_text())["metrics"]
    slopes = m["runs"]["relu_L2"]["slopes"]
    assert slopes["f_test_max"] < -0.3  # linearization error shrinks with width
    assert slopes["ntk_change"] < -0.5  # kernel moves less at larger width
    assert -0.75 < slopes["ntk_init_vs_analytic"] < -0.25  # Monte-Carlo n^(-1/2)
    ll = m["large_lr"]
    assert ll["gd_map_vs_real"] < 0.5 * ll["flow_vs_real"]  # the exact map tracks GD, the flow does not
    for name in ("width_scaling", "outputs_over_time", "large_lr"):
        assert (folder / f"{name}.png").exists()


def test_results_rebuilds_the_table_from_reports(tmp_path):
    from lmech.validation import Report

    metrics = {
        "decoupled": {
            "worst_mode_ode_vs_full_flow": 1e-10,
            "worst_mode_map_vs_real_gd": 1e-15,
            "flow_gd_gap_orders": {"2": 1.0},
            "depths": {},
        },
        "random_init": {"worst": {"projected": 0.2, "orthogonalized": 0.001}},
        "depth_sweep": {"best_lr_vs_depth_slope": -1.3},
        "wall_time_s": 12.0,
    }
    Report("deep-linear", {}, metrics).write(tmp_path / "runs")
    out = tmp_path / "RESULTS.md"
    assert main(["results", str(tmp_path / "runs"), "--write", str(out)]) == 0
    text = out.read_text()
    assert "| deep-linear | random init half-rise error, orthogonalized u₀ | 0.1% |" in text
    assert "| deep-linear | wall time | 12 s |" in text
    assert main(["results", str(tmp_path / "empty"), "--write", str(out)]) == 2

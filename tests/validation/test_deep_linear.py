import json

from lmech.validation.experiments import EXPERIMENTS, deep_linear, run_experiment


def test_deep_linear_tiny_run_meets_the_claims(tmp_path):
    """A tiny configuration of the experiment, end to end through the report writer."""
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
    folder = run_experiment(deep_linear, cfg, progress=False).write(tmp_path)
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

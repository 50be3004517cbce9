"""The dmft experiment end to end. Default: a smoke run at tiny sizes (the pieces and the
report; the kernel limit and the γ₀² law of the NTK change). Slow (~1 min each): the linear
model at widths 256-4096 — real muP networks approach the DMFT as N^(-1/2), the ensemble mean
within 2% at N = 4096, the predicted finite-width variance within 20% of 64 seeds' — and the
quick config with tanh; deep linear networks (depth 3, widths 128-2048) against the grid DMFT
(~3.5 min). The unit claims are also checked by default in
tests/models/test_dmft_*.py."""

import numpy as np
import pytest

from lmech.validation.experiments import EXPERIMENTS, dmft, run_experiment

TINY = dmft.Config(
    dim=8,
    n_train=32,
    n_test=16,
    time=12.0,
    saves=6,
    models=("linear",),
    gamma0s=(0.1, 1.0),
    widths=(256, 1024, 4096),
    seeds=4,
    variance_widths=(256,),
    variance_seeds=64,
    variance_saves=3,
)


SMOKE = dmft.Config(
    dim=4,
    n_train=16,
    n_test=8,
    time=6.0,
    saves=3,
    models=("linear",),
    gamma0s=(1.0,),
    ntk_gamma0s=(0.05, 0.1),
    widths=(32, 128),
    seeds=2,
    variance_widths=(64,),
    variance_seeds=32,
    variance_saves=2,
)


@pytest.fixture(scope="module")
def report():
    return run_experiment(dmft, TINY, progress=False)


@pytest.mark.slow  # 45 s; the models are checked by default in tests/models/test_dmft_two_layer*.py
def test_smoke():
    rep = run_experiment(dmft, SMOKE, progress=False)
    m = rep.metrics["linear"]
    assert m["kernel_limit"] < 1e-6
    assert 1.8 < m["widths"]["ntk_change_slope_small_gamma0"] < 2.2
    assert set(rep.figures) == {"error_vs_width", "loss_curves", "ntk_change", "variance"}
    assert "γ₀ = 0 vs the kernel-regime module" in rep.summary
    assert EXPERIMENTS["dmft"] is dmft


@pytest.mark.slow
def test_real_networks_approach_the_dmft(report):
    by = report.metrics["linear"]["widths"]["by_gamma0"]
    for g in ("0.1", "1.0"):
        assert -0.75 < by[g]["single_slope"] < -0.3
    # γ₀ = 1: the ensemble mean is within 2% at N = 4096 and below a single network
    assert by["1.0"]["mean"][-1] < 0.02
    assert by["1.0"]["mean"][-1] < by["1.0"]["single"][-1]
    # with each network's first-order deviation subtracted the mean shows its O(1/N) bias
    for g in ("0.1", "1.0"):
        assert by[g]["mean_control_variate_slope"] < -0.8
    # the NTK moves with γ₀ (∝ γ₀² at small γ₀) and real networks move with it
    assert 1.8 < report.metrics["linear"]["widths"]["ntk_change_slope_small_gamma0"] < 2.2
    assert np.isfinite(report.curves["linear.1.0.loss.dmft"]).all()
    assert by["1.0"]["ntk_change_real"] == pytest.approx(by["1.0"]["ntk_change_dmft"], rel=0.2)


@pytest.mark.slow
def test_kernel_limit_and_variance(report):
    m = report.metrics["linear"]
    assert m["kernel_limit"] < 1e-6
    assert m["fluctuations"]["256"]["max_rel_deviation"] < 0.2


def test_bad_config():
    with pytest.raises(ValueError, match="models"):
        dmft.Config(models=("relu",))
    with pytest.raises(ValueError, match="widths"):
        dmft.Config(widths=(512, 256))
    with pytest.raises(ValueError, match="variance_seeds"):
        dmft.Config(variance_seeds=8)
    with pytest.raises(ValueError, match="whitening"):
        dmft.Config(n_train=8, dim=16)
    with pytest.raises(ValueError, match="deep_tanh_ensemble_gamma0"):
        dmft.Config(deep_tanh_ensemble_gamma0=2.0)
    with pytest.raises(ValueError, match="deep_tanh_ensemble_samples"):
        dmft.Config(deep_tanh_ensemble_samples=1001)
    with pytest.raises(ValueError, match="same length"):
        dmft.Config(deep_tanh_ensemble_pairs=(64,))


@pytest.mark.slow
def test_quick_config_with_tanh():
    rep = run_experiment(dmft, dmft.Config.quick(), progress=False)
    by = rep.metrics["tanh"]["widths"]["by_gamma0"]
    assert by["1.0"]["single_slope"] < -0.3
    # each network's first-order deviation subtracted (network_deviation): measured -1.1
    assert by["1.0"]["mean_control_variate_slope"] < -0.8
    assert rep.metrics["tanh"]["kernel_limit"] < 1e-6
    assert rep.metrics["tanh"]["fluctuations"]["256"]["max_rel_deviation"] < 0.2


DEEP = dmft.Config(
    dim=8,
    n_train=32,
    n_test=16,
    time=12.0,
    saves=6,
    models=("deep-linear",),
    ntk_gamma0s=(0.025, 0.05, 0.1),
    deep_gamma0s=(0.5, 1.0),
    deep_widths=(128, 512, 2048),
    deep_seeds=4,
)


@pytest.mark.slow  # ~3.5 min
def test_deep_linear_networks_approach_the_dmft():
    rep = run_experiment(dmft, DEEP, progress=False)
    m = rep.metrics["deep-linear"]
    assert m["kernel_limit"] < 1e-6
    assert m["fluctuations"] is None
    assert 1.8 < m["widths"]["ntk_change_slope_small_gamma0"] < 2.2
    for g, row in m["widths"]["by_gamma0"].items():
        assert -0.75 < row["single_slope"] < -0.35, (g, row["single"])
        assert row["mean"][-1] < 0.03, (g, row["mean"])
        assert abs(row["ntk_change_real"] / row["ntk_change_dmft"] - 1) < 0.2, (g, row)
    assert "deep-linear" in rep.summary


@pytest.mark.slow  # ~1.5 min: 1536 small networks and a DMFT on two points
def test_many_network_mean_resolves_the_bias():
    """`measure_ensemble`: at small widths the mean of many deep tanh networks resolves its
    O(1/N) bias against the DMFT (error several standard errors) and stays below a single
    network's error; a single network's error falls as N^(-1/2)."""
    import jax

    cfg = dmft.Config(
        models=("deep-tanh",),
        deep_tanh_train=2,
        deep_tanh_test=2,
        deep_tanh_time=4.0,
        deep_tanh_saves=4,
        deep_tanh_ensemble_widths=(8, 32),
        deep_tanh_ensemble_pairs=(512, 256),
    )
    data = dmft.make_data(cfg, "deep-tanh", jax.random.key(0))
    sched = dmft._schedule(cfg, cfg.saves, "deep-tanh")
    dyn = dmft.dmft_dynamics(cfg, "deep-tanh", data, 1.0, None, samples=4096)
    f_th = np.asarray(dmft.ls.solve(dyn, dmft.theory_method("deep-tanh"), **sched)["f_test"][..., 0])
    ens = dmft.measure_ensemble(cfg, "deep-tanh", data, 1.0, f_th, jax.random.key(1))
    assert ens["networks"] == [1024, 512]
    assert ens["mean"][0] > 3 * ens["mean_se"][0], ens
    assert all(m < s for m, s in zip(ens["mean"], ens["single"])), ens
    assert -0.7 < ens["single_slope"] < -0.3, ens
    # the noise-corrected bias: resolved at width 8, and smaller at width 32
    assert ens["bias_rms"][0] > ens["noise_rms"][0], ens
    assert ens["bias_rms"][1] < ens["bias_rms"][0], ens

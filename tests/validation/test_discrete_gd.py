"""The discrete-gd experiment and its edge-of-stability helpers."""

import json

import numpy as np
import pytest

import lmech.validation as lv
from lmech.validation.experiments import EXPERIMENTS, discrete_gd


def test_edge_of_stability_detection():
    t = np.arange(10.0)
    s = np.array([1, 2, 3, 4.5, 3.5, 4.2, 3.9, 4.1, 4.0, 4.05])
    e = lv.edge_of_stability(t, s, 0.5)  # 2/η = 4
    assert e.crossing_time == 3.0
    assert e.onset_time == 5.0  # from t = 5 on within ±10% of 4
    assert e.max_deviation_after_crossing == pytest.approx(0.125)
    assert e.max_deviation_after_onset == pytest.approx(0.05)
    assert e.fraction_within_band == pytest.approx(5 / 7)
    never = lv.edge_of_stability(t, np.ones(10), 0.5)
    assert not never.crossed and never.onset_time is None
    with pytest.raises(ValueError, match="positive"):
        lv.edge_of_stability(t, s, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        lv.edge_of_stability(t, np.full(10, np.nan), 0.5)


def test_moving_average_is_a_centered_window_mean():
    v = np.random.default_rng(0).normal(size=(50, 2))
    avg = lv.moving_average(v, 5)
    np.testing.assert_allclose(
        avg[2:-2], np.stack([np.convolve(v[:, i], np.ones(5) / 5, "valid") for i in range(2)], 1)
    )
    assert np.all(np.isnan(avg[:2])) and np.all(np.isnan(avg[-2:]))
    with pytest.raises(ValueError):
        lv.moving_average(v, 0)


def test_tiny_run_end_to_end(tmp_path):
    cfg = discrete_gd.Config(
        orders_n_train=16,
        orders_widths=(4,),
        orders_lrs=(0.2, 0.1, 0.05),
        orders_flow_time=1.0,
        eos_n_train=32,
        eos_widths=(8, 8),
        eos_lr=0.4,
        eos_flow_time=36.0,
        eos_k=1,
    )
    report = discrete_gd.run(cfg, progress=False)
    folder = report.write(tmp_path)
    m = json.loads((folder / "metrics.json").read_text())["metrics"]
    orders = list(m["orders"]["orders"].values())
    np.testing.assert_allclose(orders, [1, 2, 3], atol=0.2)
    assert m["eos"]["gd"]["crossing_time"] is not None
    assert m["eos"]["from_init"]["central_flow"]["sharpness_over_threshold_final"] == pytest.approx(
        1.0, abs=1e-3
    )
    assert (folder / "edge_of_stability.png").exists() and (folder / "error_orders.png").exists()
    assert "fitted error orders vs η (flow / modified 1 / modified 2)" in discrete_gd.headline(m)
    assert "discrete-gd" in EXPERIMENTS


@pytest.mark.slow
def test_quick_run_meets_the_claims(tmp_path):
    report = discrete_gd.run(discrete_gd.Config.quick(), progress=False)
    m = report.metrics
    o = m["orders"]["orders"]
    assert abs(o["gradient flow"] - 1) < 0.2
    assert abs(o["modified flow, order 1"] - 2) < 0.3
    assert abs(o["modified flow, order 2"] - 3) < 0.4
    g = m["eos"]["gd"]
    assert g["onset_time"] is not None and g["max_sharpness_deviation_after_onset"] <= 0.1
    on = m["eos"]["from_onset"]
    cf, gf = on["central_flow"], on["gradient_flow"]
    assert on["distance_ratio_final"] <= 1 / 3
    assert cf["loss_rel_error_median"] < 0.1 < gf["loss_rel_error_median"]
    assert cf["loss_within_band_fraction"] > 0.9
    assert m["eos"]["from_init"]["distance_ratio_final"] <= 1 / 3

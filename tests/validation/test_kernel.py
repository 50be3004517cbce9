"""The kernel experiment end to end at tiny sizes: the width scalings, and every row carrying
σ_w and ηλ_max/P measured from the network's kernel."""

import json

import jax
import numpy as np
import pytest

import lmech.models as lm
import lmech.validation as lv
from lmech.validation.experiments import kernel, run_experiment

TINY = kernel.Config(
    n_train=48,
    n_test=24,
    steps=100,
    save_every=20,
    seeds=2,
    runs=(("relu", 2, (64, 256, 1024), 1.0), ("relu", 2, (64, 256), kernel.SQRT2)),
    large_lr_width=256,
)


@pytest.fixture(scope="module")
def report():
    return run_experiment(kernel, TINY, progress=False)


def test_tiny_run_has_the_expected_scalings(report):
    slopes = report.metrics["width_scaling"]["relu_L2_sw1"]["slopes"]
    assert slopes["f_test_max"] < -0.3  # linearization error shrinks with width
    assert slopes["ntk_change"] < -0.5  # kernel moves less at larger width
    assert -0.75 < slopes["ntk_init_vs_analytic"] < -0.25  # Monte-Carlo n^(-1/2)
    ll = report.metrics["large_lr"]
    assert ll["gd_map_vs_real"] < 0.5 * ll["flow_vs_real"]  # the exact map tracks GD, the flow does not


def test_rows_carry_sigma_w_and_the_measured_eta_lambda_max(report, tmp_path):
    ws = report.metrics["width_scaling"]
    assert list(ws) == ["relu_L2_sw1", "relu_L2_sw1.41"]
    data = lv.datasets.digits(48, 24, key=jax.random.split(jax.random.key(0))[0], target="parity")
    for name, sigma_w in (("relu_L2_sw1", 1.0), ("relu_L2_sw1.41", 2**0.5)):
        group = ws[name]
        assert all(r["sigma_w"] == sigma_w for r in group["rows"])
        # ηλ_max/P at infinite width, from an analytic kernel computed here
        theta = lm.analytic_ntk(lm.MLP(64, (64,), 1, activation="relu", sigma_w=sigma_w), data.x_train)
        expected = 0.5 * np.linalg.eigvalsh(np.asarray(theta))[-1] / 48
        assert group["eta_lambda_max_over_P_infinite_width"] == pytest.approx(expected, rel=1e-10)
        # finite widths: the empirical kernel's value, near the infinite-width one
        for r in group["rows"]:
            assert r["eta_lambda_max_over_P"] == pytest.approx(expected, rel=0.5)
    # same init with the weights scaled by √2: a 2-layer ReLU net's NTK (no bias) is homogeneous
    # of degree 4 in σ_w, so ηλ_max/P quadruples at every width
    for a, b in zip(ws["relu_L2_sw1"]["rows"], ws["relu_L2_sw1.41"]["rows"]):
        assert b["eta_lambda_max_over_P"] == pytest.approx(4 * a["eta_lambda_max_over_P"], rel=1e-12)
    rows = kernel.headline(report.metrics)
    key = "relu, 2 layers, σ_w = 1.41: linearized vs real test error by width (ηλ_max/P)"
    assert rows[key].startswith("64: ") and "(ηλ_max/P " in rows[key]
    folder = report.write(tmp_path)
    assert json.loads((folder / "metrics.json").read_text())["metrics"]["large_lr"]["sigma_w"] == 1.0
    assert {p.name for p in folder.glob("*.png")} == {
        "width_scaling.png",
        "outputs_over_time.png",
        "large_lr.png",
    }
    assert not hasattr(kernel, "run")


@pytest.mark.slow  # the --quick run, ~4 min on 2 cores
def test_quick_run_meets_the_claims():
    m = run_experiment(kernel, kernel.Config.quick(), progress=False).metrics
    check_quick_claims(m)


def check_quick_claims(m: dict) -> None:
    ws = m["width_scaling"]
    for r in ws.values():
        s = r["slopes"]
        assert -0.6 < s["ntk_init_vs_analytic"] < -0.4  # kernel fluctuation at init ~ n^(-1/2)
        assert s["ntk_change"] < -0.7  # kernel change over training ~ 1/n
        assert s["f_test_max"] < -0.5  # linearization error bounded by ~ n^(-1/2)
    one, two = ws["relu_L2_sw1"], ws["relu_L2_sw1.41"]
    for a, b in zip(one["rows"], two["rows"]):  # same widths first
        # σ_w² = 2 quadruples the 2-layer ReLU kernel, so ηλ_max/P, and the linearization error grows
        assert b["eta_lambda_max_over_P"] == pytest.approx(4 * a["eta_lambda_max_over_P"], rel=0.05)
        assert b["f_test_max"] > a["f_test_max"]
    ll = m["large_lr"]
    assert ll["eta_lambda_max_over_P"] == pytest.approx(1.8)
    assert ll["gd_map_vs_real"] < ll["flow_vs_real"] / 2

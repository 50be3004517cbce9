"""The kernel experiment end to end at tiny sizes: every row carries σ_w and ηλ_max/P measured
from the network's kernel."""

import json

import numpy as np
import pytest

import lmech.models as lm
import lmech.validation as lv
from lmech.validation.experiments import kernel, run_experiment

TINY = kernel.Config(
    n_train=32,
    n_test=16,
    steps=40,
    save_every=10,
    seeds=1,
    runs=(("relu", 2, (32, 128), 1.0), ("relu", 2, (32, 128), kernel.SQRT2)),
    large_lr_width=64,
)


@pytest.fixture(scope="module")
def report():
    return run_experiment(kernel, TINY, progress=False)


def test_rows_carry_sigma_w_and_the_measured_eta_lambda_max(report, tmp_path):
    import jax

    ws = report.metrics["width_scaling"]
    assert list(ws) == ["relu_L2_sw1", "relu_L2_sw1.41"]
    data = lv.datasets.digits(32, 16, key=jax.random.split(jax.random.key(0))[0], target="parity")
    for name, sigma_w in (("relu_L2_sw1", 1.0), ("relu_L2_sw1.41", 2**0.5)):
        group = ws[name]
        assert all(r["sigma_w"] == sigma_w for r in group["rows"])
        # ηλ_max/P at infinite width, from an independent analytic kernel: the ReLU NTK scales as σ_w²
        theta = lm.analytic_ntk(lm.MLP(64, (32,), 1, activation="relu", sigma_w=sigma_w), data.x_train)
        expected = 0.5 * np.linalg.eigvalsh(np.asarray(theta))[-1] / 32
        assert group["eta_lambda_max_over_P_infinite_width"] == pytest.approx(expected, rel=1e-10)
        # finite widths: the empirical kernel's value, near the infinite-width one
        for r in group["rows"]:
            assert r["eta_lambda_max_over_P"] == pytest.approx(expected, rel=0.5)
    ratio = [
        b["eta_lambda_max_over_P"] / a["eta_lambda_max_over_P"] for a, b in zip(*(ws[n]["rows"] for n in ws))
    ]
    # same init with the weights scaled by √2: a 2-layer ReLU net's NTK is homogeneous of degree 4 in σ_w
    np.testing.assert_allclose(ratio, 4.0, rtol=1e-12)
    rows = kernel.headline(report.metrics)
    key = "relu, 2 layers, σ_w = 1.41: linearized vs real test error by width (ηλ_max/P)"
    assert rows[key].startswith("32: ") and "(ηλ_max/P " in rows[key]
    folder = report.write(tmp_path)
    assert json.loads((folder / "metrics.json").read_text())["metrics"]["large_lr"]["sigma_w"] == 1.0
    assert {p.name for p in folder.glob("*.png")} == {
        "width_scaling.png",
        "outputs_over_time.png",
        "large_lr.png",
    }
    assert not hasattr(kernel, "run")

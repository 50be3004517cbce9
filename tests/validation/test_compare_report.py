import json

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest

import lmech.solvers as ls
from lmech.validation import Report, compare, plot


class Decay(ls.AbstractLossDynamics, ls.AbstractClosedFormFlow):
    """dy/dt = -a y: flow y0 exp(-a t), GD (1 - lr a)^k y0."""

    a: jnp.ndarray

    def init(self, *, key=None):
        return jnp.ones_like(self.a)

    def vector_field(self, t, y, args):
        return -self.a * y

    def loss(self, y):
        return 0.5 * jnp.sum(self.a * y**2)

    def observe(self, y):
        return {"loss": self.loss(y), "y": y}

    def closed_form(self, t, y0):
        return y0 * jnp.exp(-self.a * t)


def test_compare_matches_closed_form_errors():
    d = Decay(jnp.array([1.0, 3.0]))
    lr, steps = 0.01, 200
    gd = ls.solve(d, ls.GradientDescent(), lr=lr, steps=steps, save_every=20)
    cf = ls.solve(d, ls.ClosedForm(), lr=lr, steps=steps, save_every=20)
    cmp = compare(gd, cf)
    k = np.arange(0, steps + 1, 20)
    a = np.array([1.0, 3.0])
    y_gd = (1 - lr * a)[None] ** k[:, None]
    y_cf = np.exp(-a[None] * lr * k[:, None])
    expected = np.linalg.norm(y_gd - y_cf, axis=1) / np.linalg.norm(y_cf, axis=1)
    np.testing.assert_allclose(cmp.errors["y"], expected, rtol=1e-10, atol=1e-16)
    assert float(cmp.max_relative_error["y"]) == pytest.approx(expected.max(), rel=1e-10)
    assert float(cmp.final_relative_error["y"]) == pytest.approx(expected[-1], rel=1e-10)


def test_compare_interpolates_onto_reference_times():
    d = Decay(jnp.array([0.5]))
    dense = ls.solve(d, ls.ClosedForm(), lr=0.001, steps=2000, save_every=1)
    coarse = ls.solve(d, ls.ClosedForm(), lr=0.01, steps=200, save_every=20)
    cmp = compare(dense, coarse)
    assert cmp.times.shape == coarse.times.shape
    # linear interpolation error of exp(-t/2) with spacing 1e-3: h^2/8 * max|f''| ~ 3e-8
    assert float(cmp.max_relative_error["y"]) < 1e-7


def test_compare_rejects_disjoint():
    d = Decay(jnp.array([0.5]))
    a = ls.solve(d, ls.ClosedForm(), lr=0.01, steps=10)
    with pytest.raises(ValueError, match="observables"):
        compare(a, a, observables=())
    with pytest.raises(TypeError):
        compare(a, "nope")


def test_report_writes_atomically_and_refuses_nan(tmp_path):
    fig, _ = plt.subplots()
    rep = Report("demo", {"seed": 0}, {"err": np.float64(1e-9), "arr": jnp.arange(3)}, "hello", {"fig": fig})
    folder = rep.write(tmp_path)
    payload = json.loads((folder / "metrics.json").read_text())
    assert payload["metrics"] == {"err": 1e-9, "arr": [0, 1, 2]}
    assert (folder / "fig.png").stat().st_size > 1000
    assert "hello" in (folder / "summary.md").read_text()
    assert not list(folder.glob("*.tmp"))
    bad = Report("bad", {}, {"err": float("nan")})
    with pytest.raises(ValueError, match="NaN"):
        bad.write(tmp_path)
    plt.close("all")


def test_plots_return_figures():
    d = Decay(jnp.array([1.0, 2.0]))
    gd = ls.solve(d, ls.GradientDescent(), lr=0.1, steps=50, save_every=5)
    cf = ls.solve(d, ls.ClosedForm(), lr=0.1, steps=50, save_every=5)
    cmp = compare(gd, cf)
    f1 = plot.observable(cmp, "y")
    f2 = plot.errors(cmp)
    f3, slope = plot.loglog_fit([1, 2, 4], [1, 4, 16])
    assert slope == pytest.approx(2.0)
    assert len(f1.axes[0].lines) == 4 and len(f2.axes[0].lines) == 2 and f3 is not None
    plt.close("all")

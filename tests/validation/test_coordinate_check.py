"""The coordinate-check experiment at its quick config: muP's feature updates do not scale
with width, the standard parameterization's blow up, the NTK's freeze; the maximum stable
learning rate is width-independent under muP and falls with width under SP."""

import json

import jax
import numpy as np
import pytest

from lmech.validation import datasets
from lmech.validation.experiments import coordinate_check, run_experiment

QUICK = coordinate_check.Config.quick()


def _check_mup(r):
    assert set(r["change_slopes"]) == {"z1", "z2", "z3", "z4"}
    for name, per_step in r["change_slopes_by_step"].items():
        for slope in per_step:
            assert abs(slope) < 0.15, ("muP change slope", name, per_step)
    # the readout starts at O(n^-1/2) under muP (W^{L+1} ~ 1/n), the hidden layers at O(1)
    assert r["init_slopes"]["z4"] < -0.35, r["init_slopes"]
    for name in ("z1", "z2", "z3"):
        assert abs(r["init_slopes"][name]) < 0.15, r["init_slopes"]


def _check_standard(r):
    s = r["change_slopes"]
    assert s["z4"] > 1.0, s  # the readout's update grows with width at the muP learning rate
    assert s["z2"] > 0.5 and s["z3"] > 0.5, s  # and so do the hidden features after a few steps
    # the first step alone: the readout's change grows with width (like n in linear response)
    assert r["change_slopes_by_step"]["z4"][0] > 0.4, r["change_slopes_by_step"]


def _check_ntk(r):
    s = r["change_slopes"]
    for name in ("z1", "z2", "z3"):
        assert s[name] < -0.35, s  # ~ n^-1/2: the features freeze
    assert abs(s["z4"]) < 0.3, s  # the output still moves at O(1)


def _check_max_lr(m):
    for p in ("standard", "ntk", "mup"):
        assert all(row["max_lr"] is not None for row in m[p]["rows"]), (p, m[p]["rows"])
    slopes = {p: m[p]["slope"] for p in m}
    assert abs(slopes["mup"]) < 0.25, slopes
    assert slopes["standard"] < -0.4, slopes
    assert slopes["standard"] < slopes["mup"] - 0.3, slopes
    assert abs(slopes["ntk"]) < 0.4, slopes


def test_quick_config(tmp_path):
    # one test, so that the quick config is computed once even when pytest-xdist splits
    # this file's tests over workers
    report = run_experiment(coordinate_check, QUICK, progress=False)
    coords = report.metrics["coordinates"]
    _check_mup(coords["mup"])
    _check_standard(coords["standard"])
    _check_ntk(coords["ntk"])
    _check_max_lr(report.metrics["max_lr"])
    for p in ("standard", "ntk", "mup"):
        assert coords[p]["forward_check"] < 1e-10, (p, coords[p]["forward_check"])
    assert set(report.figures) == {"coordinate_check", "max_stable_lr"}
    path = report.write(tmp_path)
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["metrics"]["coordinates"]["mup"]["rows"][0]["width"] == QUICK.widths[0]
    assert np.isfinite(report.curves["coord.mup.change.z2"]).all()
    assert report.curves["coord.ntk.change.z1"].shape == (len(QUICK.widths), QUICK.steps)
    rows = coordinate_check.headline(report.metrics)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in rows.items())
    assert "muP" in coordinate_check.summary({"metrics": report.metrics, "curves": report.curves})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"parameterizations": ("mup", "mean_field")}, "unknown parameterization 'mean_field'"),
        ({"parameterizations": ()}, "non-empty tuple"),
        ({"parameterizations": ("mup", "mup")}, "duplicates"),
        ({"widths": (128, 64)}, "strictly increasing"),
        ({"widths": (64, 64)}, "strictly increasing"),
        ({"widths": (64,)}, "at least two widths"),
        ({"widths": (0, 64)}, "positive int"),
        ({"activation": "swish"}, "unknown activation"),
        ({"lr": -0.1}, "`lr` must be finite and > 0"),
        ({"steps": 0}, "`steps` must be an int >= 1"),
        ({"seeds": 1.5}, "`seeds` must be an int"),
        ({"hidden_layers": 0}, "`hidden_layers` must be an int >= 1"),
        ({"lr_bounds": (1.0, 0.1)}, "low < high"),
        ({"lr_bounds": (0.0, 1.0)}, "lr_bounds\\[0\\]"),
    ],
)
def test_config_refuses_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        coordinate_check.Config(**kwargs)


def test_quick_config_is_small():
    q = coordinate_check.Config.quick(seed=3)
    assert q.seed == 3
    assert max(q.widths) < max(coordinate_check.Config().widths)


def test_max_stable_lr_bisection_and_missing_bracket():
    cfg = coordinate_check.Config(widths=(8, 16), bisection_steps=6)
    data = datasets.digits(16, 0, key=jax.random.key(0))
    net = coordinate_check._network(cfg, "mup", 8, data)
    params = net.init(jax.random.key(1))
    lr = coordinate_check.max_stable_lr(net, data, params, cfg)
    assert cfg.lr_bounds[0] < lr < cfg.lr_bounds[1]
    # a bracket whose lower end is already unstable gives no value (not a made-up one)
    high = coordinate_check.Config(widths=(8, 16), lr_bounds=(lr * 10, lr * 100), bisection_steps=2)
    assert coordinate_check.max_stable_lr(net, data, params, high) is None


def test_diverged_runs_are_counted_not_averaged():
    # the standard parameterization far above its edge of stability diverges within the window
    cfg = coordinate_check.Config(
        parameterizations=("standard",), widths=(16, 512), seeds=1, lr=4.0, steps=4, stability_steps=4
    )
    data = datasets.digits(16, 0, key=jax.random.key(0))
    metrics, curves = coordinate_check.measure_coordinates(cfg, data, jax.random.key(1), progress=False)
    m = metrics["standard"]
    assert m["rows"][-1]["diverged_seeds"][-1] == 1
    assert m["rows"][-1]["change"]["z4"][-1] is None  # reported as missing, never as NaN
    assert m["change_slopes"]["z4"] is None  # one clean width left: no slope
    assert curves["coord.standard.diverged_seeds"].shape == (2, cfg.steps)

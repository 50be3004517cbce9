"""The notebooks: paired (.py and .ipynb), and executed top to bottom at small sizes with their
measured numbers checked. Each notebook prints its numbers as one JSON line in its last cell.

`kernel_regime` runs in the default suite (~15 s); `finite_width` (~40 s), `feature_learning`
(~1 min) and `discrete_gd` (~2 min: modified-flow orders, a central flow and its η-derivative)
run with `-m slow` — their claims are checked by default in tests/validation/ and
tests/models/ (test_finite_width, test_dmft_two_layer, test_central_vs_gd)."""

import json
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(ROOT.glob("*.py"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_paired(path):
    jupytext = pytest.importorskip("jupytext")
    assert path.with_suffix(".ipynb").exists(), "pair it: jupytext --to ipynb " + path.name
    paired = jupytext.read(path.with_suffix(".ipynb"))
    assert [c.source for c in paired.cells] == [c.source for c in jupytext.read(path).cells], (
        "re-sync: jupytext --sync " + path.name
    )


def execute(name: str, tmp_path, monkeypatch) -> dict:
    """Run notebooks/NAME.py in a fresh kernel (working dir `tmp_path`) and return the JSON
    line its last code cell prints."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    nb = jupytext.read(ROOT / f"{name}.py")
    monkeypatch.setenv("LMECH_NOTEBOOK_SIZE", "32")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    text = "".join(o.get("text", "") for o in last.get("outputs", []) if o.get("output_type") == "stream")
    return json.loads(text.strip().splitlines()[-1])


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.mark.slow  # 16 s; its claims are checked by default in tests/validation/test_kernel.py
def test_kernel_regime_notebook(tmp_path, monkeypatch):
    r = execute("kernel_regime", tmp_path, monkeypatch)
    # measured at SIZE = 32: slope -0.54, errors 0.73%, 1.1% vs 59%, derivative to 3e-11
    assert -0.8 < r["ntk_init_vs_analytic_slope"] < -0.3  # theory: -1/2
    assert r["linearized_vs_real_f_test_max"] < 0.03
    assert r["large_lr_exact_GD_map_vs_real"] < 0.05
    assert r["large_lr_exact_GD_map_vs_real"] < r["large_lr_gradient_flow_vs_real"] / 10
    d = r["dloss_dlr"]
    assert rel(d["gradient"], d["finite_differences"]) < 1e-7


@pytest.mark.slow  # 37 s; tests/validation/test_finite_width.py checks the same claims by default
def test_finite_width_notebook(tmp_path, monkeypatch):
    r = execute("finite_width", tmp_path, monkeypatch)
    # measured at SIZE = 32: tanh/relu at L/n <= 0.1 within 2 s.e.; slopes -1.21 / -2.58 / -2.64
    for f in r["fluctuations"].values():
        assert f["aspect"]  # the small-L/n points are there
        for m, se, p in zip(f["measured"], f["measured_se"], f["predicted"]):
            assert abs(m - p) < 4 * se + 0.05 * p
    e, s = r["errors"], r["slopes"]
    for name in ("O4-frozen", "Taylor, order 3"):
        assert all(a < b / 3 for a, b in zip(e[name], e["linearized"]))
        assert s[name] < s["linearized"] - 0.5
    # analytic ensemble mean at SIZE = 32 (widths 16 / 32, 2048 pairs): kernel 0.13 / 0.064,
    # f∞ + c/n 0.040 / 0.014 (standard error 0.010 / 0.0052)
    a = r["analytic_mean"]
    assert all(ana < kern / 3 for ana, kern in zip(a["analytic"], a["kernel"]))


@pytest.mark.slow
def test_discrete_gd_notebook(tmp_path, monkeypatch):
    r = execute("discrete_gd", tmp_path, monkeypatch)
    # measured at SIZE = 32: orders 1.13 / 2.07 / 3.03; averaged-loss error 0.7% vs 32%
    np.testing.assert_allclose(list(r["error_orders"].values()), [1, 2, 3], atol=0.2)
    assert r["lanczos_vs_dense"] < 1e-10
    cf, gf = r["central_vs_gradient_flow"]["central flow"], r["central_vs_gradient_flow"]["gradient flow"]
    assert cf["median_error"] < 0.05 and cf["median_error"] < gf["median_error"] / 4
    assert cf["distance"] < gf["distance"] / 2
    d = r["dloss_dlr"]
    assert rel(d["gradient"], d["finite_differences"]) < 1e-5


@pytest.mark.slow  # ~1 min; tests/models/test_dmft_two_layer.py checks the same claims by default
def test_feature_learning_notebook(tmp_path, monkeypatch):
    r = execute("feature_learning", tmp_path, monkeypatch)
    assert r["single_network_slope"] < -0.3  # theory: -1/2
    assert r["gamma0_zero_vs_kernel"] < 1e-6
    assert 1.8 < r["ntk_change_slope"] < 2.2  # theory: 2
    d = r["dloss_dgamma0"]
    assert rel(d["gradient"], d["finite_differences"]) < 1e-6
    assert max(abs(x - 1) for x in r["variance_ratio"]) < 0.25
    assert -0.75 < r["deep_single_slope"] < -0.3  # theory: -1/2
    assert r["deep_tanh_single_slope"] < -0.2  # theory: -1/2 (a 4096-site DMFT, 4 networks per width)
    d = r["deep_dloss_dgamma0"]
    assert rel(d["gradient"], d["finite_differences"]) < 1e-6

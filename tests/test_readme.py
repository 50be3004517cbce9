"""The README's main example runs and does what its comments say."""

import pathlib
import re

import jax
import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _block(after: str) -> str:
    text = README.read_text()
    start = text.index(after)
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_main_example(capsys):
    ns: dict = {}
    exec(compile(_block("## Example"), "README example", "exec"), ns)
    mode_map_err = float(ns["cmp"].max_relative_error["end_to_end"])
    flow_err = float(ns["lv"].compare(ns["traj_flow"], ns["traj_real"]).max_relative_error["end_to_end"])
    assert mode_map_err < 1e-13  # "~1e-15: the mode map *is* GD here"
    # "O(η) flow–GD gap": halving η halves it
    ls, lv, theory, real = ns["ls"], ns["lv"], ns["theory"], ns["real"]
    half = lv.compare(
        ls.solve(theory, ls.GradientFlow(), lr=0.025, steps=800, save_every=8),
        ls.solve(real, ls.GradientDescent(), lr=0.025, steps=800, save_every=8),
    ).max_relative_error["end_to_end"]
    assert 1.8 < flow_err / float(half) < 2.2
    # the printed gradient is the derivative of the final loss: check it by central differences
    f, h = ns["final_loss"], 1e-6
    fd = (f(0.05 + h) - f(0.05 - h)) / (2 * h)
    np.testing.assert_allclose(float(jax.grad(f)(0.05)), float(fd), rtol=1e-6)
    printed = capsys.readouterr().out.split()
    assert float(printed[0]) == mode_map_err


@pytest.mark.slow  # 16 s
def test_finite_width_example(capsys):
    ns: dict = {}
    setup = "import jax\nimport numpy as np\nimport lmech.models as lm\nimport lmech.solvers as ls\nimport lmech.validation as lv\n"
    exec(compile(setup + _block("### Finite width"), "README finite-width example", "exec"), ns)
    theory, measured = ns["theory"], ns["measured"]
    predicted = float(theory.ntk_variance[0] / theory.ntk_mean[0] ** 2)
    got, se = float(measured.ntk_relative_variance[0]), float(measured.ntk_relative_variance_se[0])
    assert abs(predicted - got) < 3 * se + 0.05 * predicted  # first order within Monte-Carlo error
    lin, o4, cubic = (float(v) for v in capsys.readouterr().out.split()[-3:])
    assert o4 < lin / 3 and cubic < lin / 3  # both corrections beat the linearized model
    np.testing.assert_allclose([lin, o4, cubic], [0.022, 0.0039, 0.0010], rtol=0.05)  # the printed numbers


@pytest.mark.slow  # 35 s (compiles three solves)
def test_feature_learning_example(capsys):
    ns: dict = {}
    setup = "import jax\nimport numpy as np\nimport lmech.models as lm\nimport lmech.solvers as ls\n"
    exec(compile(setup + _block("### Feature learning"), "README feature-learning example", "exec"), ns)
    out = [float(v) for v in capsys.readouterr().out.split()]
    (w1, e1), (w2, e2) = (out[0], out[1]), (out[2], out[3])
    assert (w1, w2) == (512, 4096) and e2 < e1  # closer to the DMFT with width
    np.testing.assert_allclose([e1, e2, out[4]], [0.032, 0.012, 1.14], rtol=0.05)  # the printed numbers
    assert out[5] < 1e-8  # γ₀ = 0 is the kernel regime
    assert out[6] < out[7] / 3  # feature learning lowers the loss


@pytest.mark.slow  # ~30 s (one width-2048 depth-3 network)
def test_deep_linear_dmft_example(capsys):
    ns: dict = {}
    setup = "import jax\nimport numpy as np\nimport lmech.models as lm\nimport lmech.solvers as ls\n"
    exec(
        compile(setup + _block("Deep linear networks: the DMFT"), "README deep-linear DMFT example", "exec"),
        ns,
    )
    err, grad = (float(v) for v in capsys.readouterr().out.split())
    f, h = ns["loss_at_4"], 1e-5
    fd = (f(1.0 + h) - f(1.0 - h)) / (2 * h)
    assert abs(grad - float(fd)) < 1e-7 * abs(float(fd))  # "central differences agree to 3e-9"
    np.testing.assert_allclose([err, grad], [0.016, -0.00024], rtol=0.05)  # the printed numbers


@pytest.mark.slow  # ~1.5 min: a depth-3 tanh DMFT with 8192 sites per layer and a width-4096 network
def test_deep_dmft_example(capsys):
    ns: dict = {}
    setup = "import jax\nimport numpy as np\nimport lmech.models as lm\nimport lmech.solvers as ls\n"
    exec(
        compile(setup + _block("Deep nonlinear networks: `DeepDMFT`"), "README deep DMFT example", "exec"), ns
    )
    (err,) = (float(v) for v in capsys.readouterr().out.split())
    np.testing.assert_allclose(err, 0.032, rtol=0.05)  # the printed number

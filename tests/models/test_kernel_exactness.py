r"""The analytic NNGP/NTK against an independent reference written here from the recursion
of THEORY.md §2 — plain Python, no helper of the library.

- relu, erf: the closed forms in 40-digit decimal arithmetic (`decimal`), where the
  textbook θ = arccos ρ is accurate to ~1e-20 even at ρ = 1 − 1e-16; on the diagonal
  (x = x') the exact formulas θ = 0, E[φ²] = k/2, E[φ'²] = 1/2.
- tanh, gelu: the same 2-D trapezoid rule as the definition (80 equally spaced points on
  [−8, 8] per axis, weights h·φ(z); u = s₁z₁, v = s₂(ρz₁ + √(1−ρ²) z₂)), in float64
  numpy, with φ' written by hand.

Inputs (d = 64) include an exact duplicate, near-duplicates 1e-7 and 1e-12 away, parallel
points of other norms (×2, ×0.5, ×(1 + 1e-9)), an antipodal and a nearly antipodal pair —
the cases where θ = arccos ρ is ill-conditioned. The old arccos form missed this reference
by up to 6e-8 (ReLU, depth 10; 4e-9 already at depth 2, on the diagonal).
"""

from __future__ import annotations

import decimal
import math

import numpy as np
import pytest
import scipy.special

import lmech.models as lm

D_IN = 64  # with d = 5 the Gram diagonal and the row norms happen to round alike
WIDTH = 7  # the fan-in of hidden layers: enters the standard-parameterization NTK
DEPTHS = (1, 2, 3, 5, 10)
SIGMA_W, SIGMA_B = 1.4, 0.3
TOL = 1e-13


def _inputs():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, D_IN))
    x[:3] = np.abs(x[:3])  # positive, like pixels: cosines near 1
    special = [
        x[0],  # an exact duplicate of x0 (off the diagonal)
        x[0] + 1e-7 * rng.standard_normal(D_IN),  # a near-duplicate
        x[3] + 1e-12 * rng.standard_normal(D_IN),  # a nearer one
        2.0 * x[1],  # exactly parallel to x1, twice the norm
        0.5 * x[0],
        (1 + 1e-9) * x[2],  # parallel up to rounding, almost the same norm
        -x[2],  # antipodal to x2
        -x[4] + 1e-6,  # nearly antipodal to x4
    ]
    return np.concatenate([x, np.stack(special)])


X = _inputs()


# ------------------------------------------------------------ 40-digit closed forms
_CTX = decimal.Context(prec=40)
Dec = decimal.Decimal


def _atan(t: Dec) -> Dec:
    """arctan by halving the angle until |t| < 0.01, then its Taylor series."""
    with decimal.localcontext(_CTX):
        halvings = 0
        while abs(t) > Dec("0.01"):
            t = t / (1 + (1 + t * t).sqrt())
            halvings += 1
        term, total, n, t2 = t, t, 1, t * t
        while True:
            term = -term * t2
            n += 2
            add = term / n
            if abs(add) < Dec(10) ** -45:
                break
            total += add
        return total * (2**halvings)


with decimal.localcontext(_CTX):
    PI = 16 * _atan(Dec(1) / 5) - 4 * _atan(Dec(1) / 239)


def _atan2(y: Dec, x: Dec) -> Dec:
    """The angle of (x, y) for y >= 0, in [0, π]."""
    with decimal.localcontext(_CTX):
        if x > 0:
            return _atan(y / x)
        if x < 0:
            return PI + _atan(y / x)
        return PI / 2


def _relu_moments(k11, k22, k12, same):
    """E[φ(u)φ(v)], E[φ'(u)φ'(v)] for ReLU (THEORY.md §2)."""
    with decimal.localcontext(_CTX):
        if same:  # x = x': θ = 0
            return k12 / 2, Dec(1) / 2
        s = (k11 * k22).sqrt()
        rho = min(max(k12 / s, Dec(-1)), Dec(1))
        theta = _atan2((1 - rho * rho).sqrt(), rho)  # arccos ρ
        sin, cos = (1 - rho * rho).sqrt(), rho
        return s * (sin + (PI - theta) * cos) / (2 * PI), (PI - theta) / (2 * PI)


def _erf_moments(k11, k22, k12, same):
    with decimal.localcontext(_CTX):
        a, b = 1 + 2 * k11, 1 + 2 * k22
        r = 2 * k12 / (a * b).sqrt()
        arcsin = _atan2(r, (1 - r * r).sqrt()) if r >= 0 else -_atan2(-r, (1 - r * r).sqrt())
        return 2 / PI * arcsin, 4 / PI / (a * b - 4 * k12 * k12).sqrt()


def _decimal_kernels(x1, x2, moments, depth, bias, param):
    """K and Θ after 1..depth layers, entry by entry, in 40-digit decimals."""
    sw2 = Dec(SIGMA_W) ** 2
    sb2 = Dec(SIGMA_B) ** 2 if bias else Dec(0)
    out = [(np.zeros((len(x1), len(x2))), np.zeros((len(x1), len(x2)))) for _ in range(depth)]
    with decimal.localcontext(_CTX):
        for i, xa in enumerate(x1):
            for j, xb in enumerate(x2):
                a, b = [Dec(float(v)) for v in xa], [Dec(float(v)) for v in xb]
                same = bool(np.all(xa == xb))
                dot = lambda p, q: sum(pi * qi for pi, qi in zip(p, q))  # noqa: E731
                k11 = sw2 * dot(a, a) / len(a) + sb2
                k22 = sw2 * dot(b, b) / len(b) + sb2
                k12 = sw2 * dot(a, b) / len(a) + sb2
                if param == "ntk":
                    theta = k12
                else:  # gradients not scaled by σ_w/√n, σ_b
                    theta = dot(a, b) + (1 if bias else 0)
                out[0][0][i, j], out[0][1][i, j] = float(k12), float(theta)
                for layer in range(1, depth):
                    e12, de12 = moments(k11, k22, k12, same)
                    e11, _ = moments(k11, k11, k11, True)
                    e22, _ = moments(k22, k22, k22, True)
                    if param == "ntk":
                        theta = sw2 * e12 + sb2 + sw2 * de12 * theta
                    else:
                        theta = WIDTH * e12 + (1 if bias else 0) + sw2 * de12 * theta
                    k11, k22, k12 = sw2 * e11 + sb2, sw2 * e22 + sb2, sw2 * e12 + sb2
                    out[layer][0][i, j], out[layer][1][i, j] = float(k12), float(theta)
    return out


# ------------------------------------------------ trapezoid rule, float64, same rule
_QUAD = {
    "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "gelu": (
        lambda z: z * 0.5 * (1 + scipy.special.erf(z / math.sqrt(2))),
        lambda z: (
            0.5 * (1 + scipy.special.erf(z / math.sqrt(2))) + z * np.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)
        ),
    ),
}


def _quadrature_kernels(x1, x2, act, depth, bias, param, nodes=80, half_width=8.0):
    phi, dphi = _QUAD[act]
    z = np.linspace(-half_width, half_width, nodes)
    w = (z[1] - z[0]) * np.exp(-(z**2) / 2) / math.sqrt(2 * math.pi)
    z1, z2, ww = z[:, None], z[None, :], w[:, None] * w[None, :]
    sw2, sb2 = SIGMA_W**2, (SIGMA_B**2 if bias else 0.0)
    same = np.all(x1[:, None, :] == x2[None, :, :], axis=-1)
    k11 = np.broadcast_to((sw2 * np.sum(x1 * x1, 1) / x1.shape[1] + sb2)[:, None], same.shape)
    k22 = np.broadcast_to((sw2 * np.sum(x2 * x2, 1) / x2.shape[1] + sb2)[None, :], same.shape)
    k12 = sw2 * (x1 @ x2.T) / x1.shape[1] + sb2
    theta = k12 if param == "ntk" else x1 @ x2.T + (1.0 if bias else 0.0)
    out = [(k12, theta)]

    def gauss(f, g, s1, s2, rho):
        """Σ_ij w_i w_j f(u_ij) g(v_ij), elementwise over the pairs."""
        c = np.sqrt(np.clip(1.0 - rho * rho, 0.0, None))
        s1, s2, rho, c = (np.asarray(a, dtype=float)[..., None, None] for a in (s1, s2, rho, c))
        return np.sum(ww * f(s1 * z1 + 0 * z2) * g(s2 * (rho * z1 + c * z2)), axis=(-2, -1))

    for _ in range(1, depth):
        s1, s2 = np.sqrt(k11), np.sqrt(k22)
        rho = np.where(same, 1.0, np.clip(k12 / (s1 * s2), -1.0, 1.0))
        e12, de12 = gauss(phi, phi, s1, s2, rho), gauss(dphi, dphi, s1, s2, rho)
        e11, e22 = gauss(phi, phi, s1, s1, 1.0), gauss(phi, phi, s2, s2, 1.0)
        if param == "ntk":
            theta = sw2 * e12 + sb2 + sw2 * de12 * theta
        else:
            theta = WIDTH * e12 + (1.0 if bias else 0.0) + sw2 * de12 * theta
        k11, k22, k12 = sw2 * e11 + sb2, sw2 * e22 + sb2, sw2 * e12 + sb2
        out.append((k12, theta))
    return out


def reference(x1, x2, act, depth, bias, param):
    """[(K, Θ) after layer 1, ..., after layer `depth`] for inputs x1, x2."""
    if act in _QUAD:
        return _quadrature_kernels(x1, x2, act, depth, bias, param)
    moments = {"relu": _relu_moments, "erf": _erf_moments}[act]
    return _decimal_kernels(x1, x2, moments, depth, bias, param)


# ------------------------------------------------------------------------ the tests
def relative_errors(a, r):
    """|a − r| / |r| entry by entry, with |r| floored at 1% of its Cauchy–Schwarz bound
    √(r(x,x) r(x',x')): entries that vanish (antipodal ReLU inputs) or nearly vanish
    (orthogonal inputs, whose x·x' is itself only known to eps·|x||x'|) are held to an
    absolute 1e-15 of that scale."""
    scale = np.sqrt(np.outer(np.diag(r), np.diag(r)))
    return np.abs(np.asarray(a) - r) / np.maximum(np.abs(r), 1e-2 * scale)


_ALL = [
    (a, b, p) for a in ("relu", "erf", "tanh", "gelu") for b in (False, True) for p in ("ntk", "standard")
]
_DEFAULT = {(False, "ntk"), (True, "standard")}  # the default run covers each value of each axis


@pytest.mark.parametrize(
    "act,bias,param",
    [pytest.param(*c, marks=() if c[1:] in _DEFAULT else pytest.mark.slow) for c in _ALL],
)
def test_analytic_kernels_match_the_independent_reference(act, bias, param):
    ref = reference(X, X, act, max(DEPTHS), bias, param)
    x2 = np.array(X)  # the same points as a separate array: no shortcut for x2 = x1
    worst, lines = 0.0, []
    for depth in DEPTHS:
        net = lm.MLP(
            D_IN,
            (WIDTH,) * (depth - 1),
            1,
            activation=act,
            sigma_w=SIGMA_W,
            sigma_b=SIGMA_B if bias else 0.0,
            parameterization=param,
        )
        # without x2 the kernel is built from its upper triangle (entry (i, j) computed with
        # x_min(i, j) first): the reference mirrored the same way (only quadrature notices)
        for got, mirror in ((lm.analytic_kernels(net, X), True), (lm.analytic_kernels(net, X, x2), False)):
            for name, r in zip(("nngp", "ntk"), ref[depth - 1]):
                r = np.triu(r) + np.triu(r, 1).T if mirror else r
                err = relative_errors(got[name], r)
                diag, off = np.diag(err).max(), err[~np.eye(len(X), dtype=bool)].max()
                worst = max(worst, diag, off)
                lines.append(f"depth {depth} {name}: diagonal {diag:.1e}, off-diagonal {off:.1e}")
    assert worst <= TOL, "\n".join(lines)


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_float32_inputs_give_float32_kernels(act):
    # the kernels follow the inputs' dtype (closed forms and quadrature alike)
    net = lm.MLP(D_IN, (WIDTH, WIDTH), 1, activation=act, sigma_w=SIGMA_W, sigma_b=SIGMA_B)
    k32 = lm.analytic_kernels(net, X.astype(np.float32))
    k64 = lm.analytic_kernels(net, X)
    for name in ("nngp", "ntk"):
        assert k32[name].dtype == np.float32
        assert relative_errors(k32[name], np.asarray(k64[name])).max() < 1e-5

"""Fixtures of the validation tests: a tiny fake experiment module that follows the protocol."""

import sys
import types
from dataclasses import dataclass

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import pytest


def make_fake(name="fake", *, fail_in_figures=False):
    """A complete experiment module: y = exp(-a t) sampled on a grid."""

    @dataclass(frozen=True)
    class Config:
        seed: int = 0
        a: float = 1.0
        n: int = 11

        @classmethod
        def quick(cls, seed=0):
            return cls(seed=seed, n=5)

    def compute(config, *, progress=True):
        t = jnp.linspace(0.0, 1.0, config.n)
        y = jnp.exp(-config.a * t)
        return {
            "metrics": {
                "final": float(y[-1]),
                "seed": config.seed,
                "never": "not reached",
                "traced_dtype": str(y.dtype),
            },
            "curves": {"t": np.asarray(t), "y": np.asarray(y), "t_never": np.array([np.inf])},
        }

    def figures(results):
        if fail_in_figures:
            raise RuntimeError("figure failed")
        fig, ax = plt.subplots()
        ax.plot(results["curves"]["t"], results["curves"]["y"])
        return {"decay": fig}

    def summary(results):
        return f"final value {results['metrics']['final']:.4f}"

    def headline(metrics):
        return {"final value": f"{metrics['final']:.4f}"}

    mod = types.ModuleType(f"fake_experiment_{name}")
    mod.NAME, mod.DESCRIPTION, mod.Config = name, "a fake experiment for tests", Config
    mod.compute, mod.figures, mod.summary, mod.headline = compute, figures, summary, headline
    return mod


@pytest.fixture
def fake_experiment():
    """The factory `make_fake(name="fake", *, fail_in_figures=False)` of fake experiment modules."""
    return make_fake


@pytest.fixture
def fake_registry(monkeypatch):
    """The fake experiment put into the CLI's registry as "fake" (restored afterwards)."""
    from lmech.validation import experiments

    mod = make_fake("fake")
    mod.calls = []  # configs compute was called with: bad input must be refused before any
    compute = mod.compute

    def counted(config, *, progress=True):
        mod.calls.append(config)
        return compute(config, progress=progress)

    mod.compute = counted
    monkeypatch.setitem(experiments.EXPERIMENTS, "fake", mod)
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return mod

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lmech.models as lm
from lmech.validation import datasets


def test_linear_teacher_is_whitened_with_given_singular_values():
    s = [3.0, 2.0, 1.0, 0.5]
    data = datasets.linear_teacher(s, 6, 5, 40, 10, key=jax.random.key(0))
    assert data.x_train.shape == (40, 6) and data.y_train.shape == (40, 5)
    assert data.x_test.shape == (10, 6)
    np.testing.assert_allclose(data.input_covariance(), np.eye(6), atol=1e-13)
    sv = np.linalg.svd(np.asarray(data.input_output_covariance()), compute_uv=False)
    np.testing.assert_allclose(sv[:4], s, rtol=1e-12)
    assert sv[4] < 1e-12


def test_linear_teacher_bad_input():
    with pytest.raises(ValueError, match="n_train"):
        datasets.linear_teacher([1.0], 8, 8, 4, key=jax.random.key(0))
    with pytest.raises(ValueError, match="singular_values"):
        datasets.linear_teacher([1.0] * 5, 4, 8, 10, key=jax.random.key(0))
    with pytest.raises(ValueError, match=">= 0"):
        datasets.linear_teacher([-1.0], 4, 4, 10, key=jax.random.key(0))


def test_digits_standardized_split_and_targets():
    d = datasets.digits(100, 50, key=jax.random.key(1))
    assert d.x_train.shape == (100, 64) and d.y_train.shape == (100, 1)
    assert d.x_train.dtype == jnp.float64
    x = np.asarray(d.x_train)
    np.testing.assert_allclose(x.mean(0), 0, atol=1e-12)
    sd = x.std(0)
    assert np.all((np.abs(sd - 1) < 1e-12) | (sd < 1e-12))
    assert set(np.unique(np.asarray(d.y_train))) <= {-1.0, 1.0}
    oh = datasets.digits(30, 10, key=jax.random.key(1), target="one_hot")
    np.testing.assert_allclose(np.asarray(oh.y_train).sum(1), 1.0)
    # same key, same split; different key, different split
    d2 = datasets.digits(100, 50, key=jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(d.x_train), np.asarray(d2.x_train))
    d3 = datasets.digits(100, 50, key=jax.random.key(2))
    assert not np.array_equal(np.asarray(d.x_train), np.asarray(d3.x_train))


def test_digits_bad_input():
    with pytest.raises(ValueError, match="target"):
        datasets.digits(10, 10, key=jax.random.key(0), target="bogus")
    with pytest.raises(ValueError, match="exceeds"):
        datasets.digits(2000, 10, key=jax.random.key(0))


def test_teacher_student_labels_are_the_teacher():
    teacher = lm.MLP(5, (16,), 2, activation="tanh")
    d = datasets.teacher_student(teacher, 20, 7, key=jax.random.key(3))
    k_p, _, _ = jax.random.split(jax.random.key(3), 3)
    params = teacher.init(k_p)
    np.testing.assert_allclose(d.y_train, teacher.apply(params, d.x_train), atol=1e-14)
    np.testing.assert_allclose(d.y_test, teacher.apply(params, d.x_test), atol=1e-14)

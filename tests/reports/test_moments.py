import numpy as np
import pytest

from simab.reports.moments import Moments


def test_moments_add_across_shards():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=100), rng.poisson(3, 100).astype(float)
    whole = Moments.from_columns({"x": x, "y": y})
    parts = Moments.from_columns({"x": x[:30], "y": y[:30]}) + Moments.from_columns(
        {"x": x[30:], "y": y[30:]}
    )
    assert parts.n == whole.n
    np.testing.assert_allclose(parts.cov_matrix(), whole.cov_matrix(), rtol=1e-12)
    assert whole.cov("x", "y") == pytest.approx(np.cov(x, y)[0, 1], rel=1e-12)
    assert whole.var("y") == pytest.approx(y.var(ddof=1), rel=1e-12)


def test_adding_different_columns_is_a_bug():
    with pytest.raises(ValueError):
        Moments.empty(("a",)) + Moments.empty(("b",))

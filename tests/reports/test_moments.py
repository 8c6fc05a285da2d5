import numpy as np
import pyarrow as pa
import pytest

from simab.reports.aggregation import moments_by, user_totals
from simab.reports.moments import Moments

# rel 1e-12: merging reorders the floating-point additions, so results agree to rounding
# (about n * 1e-16 relative for these n), not bit for bit
REL = 1e-12


def _columns(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "x": rng.normal(size=n),
        "y": rng.poisson(3, n).astype(float),
        "dwell": rng.gamma(2.0, 30.0, n) + 1e4,
        "z": rng.exponential(size=n),
    }


def _assert_same(a: Moments, b: Moments) -> None:
    assert a.columns == b.columns and a.n == b.n
    assert a.means() == pytest.approx(b.means(), rel=REL)
    np.testing.assert_allclose(a.cov_matrix(), b.cov_matrix(), rtol=REL, atol=0)


def test_moments_add_across_shards():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=100), rng.poisson(3, 100).astype(float)
    whole = Moments.from_columns({"x": x, "y": y})
    parts = Moments.from_columns({"x": x[:30], "y": y[:30]}) + Moments.from_columns(
        {"x": x[30:], "y": y[30:]}
    )
    _assert_same(parts, whole)
    assert whole.cov("x", "y") == pytest.approx(np.cov(x, y)[0, 1], rel=REL)
    assert whole.var("y") == pytest.approx(y.var(ddof=1), rel=REL)


@pytest.mark.parametrize("shards", [2, 3, 7, 50])
def test_shard_wise_merge_equals_one_pass(shards):
    rng = np.random.default_rng(shards)
    cols = _columns(rng, 5000)
    whole = Moments.from_columns(cols)
    cuts = np.sort(rng.choice(np.arange(1, 5000), shards - 1, replace=False))
    merged = Moments.empty(tuple(cols))
    for idx in np.split(np.arange(5000), cuts):
        merged = merged + Moments.from_columns({k: v[idx] for k, v in cols.items()})
    _assert_same(merged, whole)
    # the order in which shards are merged does not matter either
    pieces = [Moments.from_columns({k: v[idx] for k, v in cols.items()})
              for idx in np.split(np.arange(5000), cuts)]
    backwards = Moments.empty(tuple(cols))
    for p in reversed(pieces):
        backwards = p + backwards
    _assert_same(backwards, whole)


def test_result_does_not_depend_on_the_column_set():
    rng = np.random.default_rng(3)
    cols = _columns(rng, 3000)
    two = Moments.from_columns({"x": cols["x"], "dwell": cols["dwell"]})
    four = Moments.from_columns(cols)
    for a in ("x", "dwell"):
        assert four.mean(a) == pytest.approx(two.mean(a), rel=REL)
        for b in ("x", "dwell"):
            assert four.cov(a, b) == pytest.approx(two.cov(a, b), rel=REL)


def test_grouped_moments_equal_per_group_one_pass():
    """moments_by (the report's path) against from_columns on each group's own rows."""
    rng = np.random.default_rng(4)
    cols = _columns(rng, 4000)
    arm = rng.choice(["a", "b", "c"], 4000)
    table = pa.table({"arm": arm, **cols})
    found = moments_by(table, ["arm"], tuple(cols))
    for g in ("a", "b", "c"):
        rows = arm == g
        _assert_same(found[(g,)], Moments.from_columns({k: v[rows] for k, v in cols.items()}))


def test_variance_stays_accurate_with_a_large_offset():
    """Raw sums lose every digit here: Σx² ≈ 1e24 against a variance of ~1 (eps·1e18 ≫ 1)."""
    rng = np.random.default_rng(5)
    x = 1e9 + rng.normal(size=20_000)
    y = 2e9 + 0.5 * (x - 1e9) + rng.normal(size=20_000)
    whole = Moments.from_columns({"x": x, "y": y})
    halves = Moments.from_columns({"x": x[:7000], "y": y[:7000]}) + Moments.from_columns(
        {"x": x[7000:], "y": y[7000:]}
    )
    # reference: numpy's two-pass variance; rel 1e-9 because the data themselves carry only
    # ~7 significant digits below the 1e9 offset (eps·1e9 ≈ 2e-7 absolute per value)
    for m in (whole, halves):
        assert m.var("x") == pytest.approx(np.var(x, ddof=1), rel=1e-9)
        assert m.cov("x", "y") == pytest.approx(np.cov(x, y)[0, 1], rel=1e-9)
        assert m.mean("y") == pytest.approx(np.mean(y), rel=1e-15)


def test_user_totals_are_in_key_order_whatever_the_input_order():
    """Row order feeds the float sums, so it must not depend on Arrow's threads or shards."""
    rng = np.random.default_rng(6)
    n = 3000
    cells = pa.table({
        "arm": rng.choice(["control", "treatment"], n),
        "user": rng.integers(0, 400, n),
        "day": rng.integers(0, 3, n),
        "scenario": rng.choice(["home_feed", "shop_page"], n),
        "exposures": rng.integers(1, 5, n),
        "clicks": rng.integers(0, 2, n),
        "conversions": rng.integers(0, 2, n),
        "dwell_s": rng.gamma(2.0, 30.0, n),
    })
    a = user_totals(cells)
    b = user_totals(cells.take(rng.permutation(n)))
    assert a.select(["arm", "user"]).equals(b.select(["arm", "user"]))
    keys = list(zip(a["arm"].to_pylist(), a["user"].to_pylist(), strict=True))
    assert keys == sorted(keys)
    # dwell sums per user are added in a different order after the shuffle: rounding only
    assert b["dwell_s"].to_numpy() == pytest.approx(a["dwell_s"].to_numpy(), rel=REL)


def test_adding_different_columns_is_a_bug():
    with pytest.raises(ValueError):
        Moments.empty(("a",)) + Moments.empty(("b",))

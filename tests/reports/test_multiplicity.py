import pytest

from simab.reports.multiplicity import adjust_p_values

P = [0.005, 0.06, 0.007, 0.04, 0.01, 0.03]


def test_bh_tea_tasting_reference():
    # tea-tasting multiplicity docs / tests: Benjamini-Hochberg reference.
    assert adjust_p_values(P, "bh") == pytest.approx([0.02, 0.06, 0.02, 0.048, 0.02, 0.045])


def test_holm_by_hand():
    # Holm (1979): sorted p_(i) * (m - i + 1), running max, capped at 1.
    order = sorted(range(len(P)), key=P.__getitem__)
    expected, running = [0.0] * len(P), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, P[i] * (len(P) - rank)))
        expected[i] = running
    assert adjust_p_values(P, "holm") == pytest.approx(expected)


def test_undefined_p_values_stay_out_of_the_family():
    out = adjust_p_values([0.01, float("nan"), 0.02], "bonferroni")
    assert out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.04)
    assert out[1] != out[1]

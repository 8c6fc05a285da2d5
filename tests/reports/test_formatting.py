"""The one set of number formatters: an undefined number is ``n/a`` everywhere."""

import math

import pytest

from simab.reports.formatting import fmt_ci, fmt_covered, fmt_number, fmt_p, fmt_pct, fmt_value


@pytest.mark.parametrize("undefined", [None, math.nan])
def test_an_undefined_number_is_na_in_every_formatter(undefined):
    assert fmt_number(undefined) == fmt_value(undefined) == fmt_pct(undefined) == fmt_p(undefined) == "n/a"
    assert fmt_ci((undefined, 0.1)) == fmt_ci((0.1, undefined)) == "n/a"


def test_percentages_are_signed_for_lifts_and_plain_for_rates():
    assert fmt_pct(0.0123) == "+1.23%" and fmt_pct(-0.0123) == "-1.23%"
    assert fmt_pct(0.05, "") == "5.00%" and fmt_pct(0.05, "", 1) == "5.0%"
    assert fmt_pct(0.0125, digits=3) == "+1.250%"
    assert fmt_ci((-0.01, 0.02)) == "[-1.00%, +2.00%]" and fmt_ci((0.03, 0.07), "") == "[3.00%, 7.00%]"


def test_values_p_values_and_coverage():
    assert fmt_value(0.123456) == "0.1235" and fmt_value(123456.7) == "123,457"
    assert fmt_p(0.04321) == "0.0432" and fmt_p(1e-6) == "<1e-4"
    assert fmt_number(2.0 / 3.0, ".3g") == "0.667"
    assert (fmt_covered(True), fmt_covered(False), fmt_covered(None)) == ("yes", "NO", "-")

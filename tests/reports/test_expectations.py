import pytest

from simab.errors import SimabError
from simab.reports.expectations import check_run, evaluate, parse_expectation

REPORT = {
    "alpha": 0.05,
    "metrics": {
        "ctcvr": {
            "arms": {"control": {"value": 0.01, "true_value": None}},
            "comparisons": {
                "b_vs_a": {
                    "rel_lift": 0.05,
                    "rel_ci": [0.01, 0.09],
                    "p_value": 0.01,
                    "sequential": {"p_value": 0.2, "rel_ci": [-0.02, 0.12]},
                },
                "c_vs_a": {"rel_lift": None, "rel_ci": [None, None], "p_value": None},
            },
        }
    },
}


def test_parse_forms():
    e = parse_expectation("ctcvr.rel_ci[0] > 0")
    assert (e.metric, e.comparison, e.field, e.index, e.op, e.number) == (
        "ctcvr",
        None,
        "rel_ci",
        0,
        ">",
        0.0,
    )
    e = parse_expectation(" ctr.t_vs_c.rel_lift>=1.5e-2 ")
    assert (e.comparison, e.number) == ("t_vs_c", 0.015)
    assert parse_expectation("ctr.rel_lift > 2%").number == pytest.approx(0.02)
    assert parse_expectation("ctr.arms.control.value < 1").arm == "control"
    assert parse_expectation("ctr.sequential.rel_ci[1] != -0.5").field == "sequential.rel_ci"


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('x') > 0",
        "ctr.rel_ci > 0",
        "ctr.rel_lift[0] > 0",
        "ctr.rel_lift => 0",
        "ctr.bogus > 0",
        "ctr.rel_lift > abc",
        "ctr.rel_ci[2] > 0",
        "ctr.arms.control.rel_lift > 0",
        "",
    ],
)
def test_bad_text_is_one_line_error(text):
    with pytest.raises(SimabError) as info:
        parse_expectation(text)
    message = info.value.one_line()
    assert (
        "\n" not in message
        and "allowed:" in message
        and message.startswith("error: --expect")
    )


def test_evaluate_picks_first_comparison_and_fails_on_null():
    results = evaluate(
        REPORT,
        [
            "ctcvr.rel_ci[0] > 0",
            "ctcvr.c_vs_a.rel_lift > 0",
            "ctcvr.sequential.rel_ci[0] > 0",
            "ctcvr.arms.control.value == 0.01",
        ],
    )
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[0].line() == "PASS ctcvr.rel_ci[0] > 0: ctcvr.b_vs_a.rel_ci[0] = 0.01"
    assert "undefined" in results[1].line()
    with pytest.raises(SimabError, match="unknown metric 'ctr'"):
        evaluate(REPORT, ["ctr.rel_lift > 0"])
    with pytest.raises(SimabError, match="unknown comparison"):
        evaluate(REPORT, ["ctcvr.x_vs_a.rel_lift > 0"])


def test_check_run_on_a_run_folder(synthetic_run):
    ok, lines = check_run(synthetic_run, ["ctr.rel_ci[0] > 0", "ctr.p_value < 0.05"])
    assert ok and len(lines) == 2
    ok, lines = check_run(synthetic_run, ["ctr.rel_lift > 0.5"])
    assert not ok and lines[0].startswith(
        "FAIL ctr.rel_lift > 0.5: ctr.treatment_vs_control.rel_lift = 0.2"
    )

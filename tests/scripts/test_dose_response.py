"""scripts/dose_response.py on a tiny world: the dial sweep, the edges, the campaign with its
``simab power`` sizing, and the page (the render of its JSON followed by kept notes)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import dose_response as dose  # noqa: E402
import experiment_kit as kit  # noqa: E402

#: The sizes of tests/scripts/test_experiment_kit.py's TINY world (without preset and users).
TINY_BASE = {"pre_period_days": 0.5, "n_shop_items": 600, "n_content_items": 400, "n_shops": 40}


def test_edge_verdict_is_beyond_the_spread_only_past_two_sd():
    assert dose.edge_verdict([0.010, 0.012, 0.011])[2] == "yes"  # mean 0.011, sd 0.001
    assert dose.edge_verdict([0.010, -0.002, 0.004])[2] == "no"  # mean 0.004, sd 0.006
    assert dose.edge_verdict([0.5])[2] == "no"  # one seed has no spread to compare with
    m, s, _ = dose.edge_verdict([1.0, 3.0])
    assert (m, s) == (2.0, pytest.approx(2 ** 0.5))  # sample sd (ddof 1) of 1 and 3


def test_every_seed_entry_names_known_models_and_a_dial_with_four_values():
    for name, cfg in dose.SEEDS.items():
        labels = [m.label for m in cfg["models"]]
        assert set(cfg["baselines"]) <= set(labels), name
        assert len(cfg["values"]) >= 4 and cfg["values"][0] == 0.0, name  # the issue: >= 4 values including 0
        if "campaign" in cfg:
            control, treatment, _ = cfg["campaign"]
            assert {control, treatment} <= set(labels), name


def test_a_tiny_sweep_writes_the_page_json_figure_and_campaign(tmp_path, monkeypatch):
    cfg = {"preset": "default", "focus": "home_feed", "dial": ("intent", "strength"), "values": [0.0, 2.0], "base": TINY_BASE,
           "baselines": ["DNN"], "models": [kit.Model("DNN", "dnn"), kit.Model("DIN", "din")],
           "campaign": ("DNN", "DIN", ["ctr", "ctcvr"])}
    monkeypatch.setitem(dose.SEEDS, "amen", cfg)
    out = tmp_path / "out"
    argv = ["amen", "--users", "240", "--seeds", "2", "--max-steps", "2", "--batch-size", "256",
            "--campaign-days", "0.25", "--campaign-users", "300", "--cache", str(tmp_path / "cache"), "--out", str(out)]
    assert dose.main(argv) == 0
    summary = json.loads((out / "dose_amen.json").read_text())
    assert [r["value"] for r in summary["results"]] == [0.0, 2.0] and "reduced" not in summary
    for r in summary["results"]:
        assert sorted(r["edges"]) == ["DIN - DNN"]
        edge = [a["auc"] - b["auc"] for a, b in zip(r["rows"]["DIN"], r["rows"]["DNN"], strict=True)]
        assert r["edges"]["DIN - DNN"] == pytest.approx(edge)  # the same subtraction, serialised through JSON
        gauc = [a["gauc"] - b["gauc"] for a, b in zip(r["rows"]["DIN"], r["rows"]["DNN"], strict=True)]
        assert r["gauc_edges"]["DIN - DNN"] == pytest.approx(gauc)
    c = summary["campaign"]
    assert c["value"] == 2.0 and c["control"] == "DNN" and c["treatment"] == "DIN"
    assert sum(c["users"].values()) > 0 and set(c["metrics"]) == {"ctr", "ctcvr"}
    assert c["metrics"]["ctr"]["unit_sd"] > 0
    # --campaign-users: the campaign's own world (its arms trained on that world's pre-period)
    assert c["world_users"] == 300 and sum(c["users"].values()) > 240 * 0.5
    assert "On a world of 300 users" in dose.render(summary)
    assert (out / "dose_amen.png").stat().st_size > 0
    page = (out / "dose_amen.md").read_text()
    text = dose.render(summary)
    assert page.startswith(text) and page[len(text):].lstrip("\n").startswith(kit.NOTES_START)
    # a second run keeps what was written between the notes markers
    notes = page.replace("(no notes yet)", "a kept note")
    (out / "dose_amen.md").write_text(notes)
    assert dose.main(argv) == 0
    assert "a kept note" in (out / "dose_amen.md").read_text()


@pytest.mark.parametrize("stem", sorted(str(p.relative_to(ROOT / "docs" / "results").with_suffix(""))
                                         for p in (ROOT / "docs" / "results").rglob("dose_*.json")))
def test_recorded_page_is_the_render_of_its_json(stem):
    """Every dose page, in docs/results and its subfolders (preset/: the preset-size runs)."""
    summary = json.loads((ROOT / "docs" / "results" / f"{stem}.json").read_text())
    page = (ROOT / "docs" / "results" / f"{stem}.md").read_text()
    text = dose.render(summary)
    assert page.startswith(text)
    assert page[len(text):].lstrip("\n").startswith(kit.NOTES_START)  # only the kept notes follow


def test_the_issue_pages_are_recorded():
    """The three seeds' pages exist (docs/results/README.md and README.md link them)."""
    for seed in ("amen", "lcn", "ssim"):
        assert (ROOT / "docs" / "results" / f"dose_{seed}.md").exists(), seed


@pytest.mark.parametrize("seed, headline", [("amen", "AMEN - DIN"), ("lcn", "LCN - SIM"),
                                            ("ssim", "SSIM - random sharing")])
def test_the_issue_pages_carry_the_summary_in_its_fixed_form(seed, headline):
    """Issue #30 item 6: each seed's page JSON has a `summary` of exactly the fixed form, and a
    page below the asked size (5,000 users, >= 3 model seeds) says so, with a reason, beside it."""
    page = json.loads((ROOT / "docs" / "results" / f"dose_{seed}.json").read_text())
    assert dose.check_summary(page.get("summary")) == []
    assert page["summary"]["headline_edge"] == headline
    values = page["summary"]["values"]
    short = len(values) < dose.PAGE_VALUES or 0.0 not in values
    if page["users"] < dose.PAGE_USERS or len(page["seeds"]) < dose.PAGE_SEEDS or short:
        r = page["reduced"]
        assert (r["users"], r["seeds"]) == (page["users"], len(page["seeds"]))
        assert r["why"] not in ("", "not given")


def test_gate_measures_base_ctr_and_oracle_information_without_training(tmp_path, monkeypatch):
    calls = []

    def oracle(data):
        calls.append(data.table)
        return {"auc_base": 0.6, "auc_full": 0.61, "gain": 0.01 * len(calls)}

    cfg = {"preset": "default", "focus": "home_feed", "dial": ("intent", "strength"), "values": [0.0, 2.0],
           "base": TINY_BASE, "baselines": ["DNN"], "models": [kit.Model("DNN", "dnn")], "oracle": oracle}
    monkeypatch.setitem(dose.SEEDS, "amen", cfg)
    out = tmp_path / "out"
    assert dose.main(["amen", "--gate-only", "--users", "240", "--cache", str(tmp_path / "cache"), "--out", str(out)]) == 0
    report = json.loads((out / "gate_amen.json").read_text())
    assert [r["value"] for r in report["rows"]] == [0.0, 2.0] and len(calls) == 2
    assert [r["oracle"]["gain"] for r in report["rows"]] == [0.01, 0.02] and report["oracle_gain_rises"]
    for r in report["rows"]:
        assert 0 < r["base_ctr"] < 1
    ctrs = [r["base_ctr"] for r in report["rows"]]
    assert report["base_ctr_within_band"] == all(abs(c / ctrs[0] - 1) <= 0.2 for c in ctrs)
    assert not (tmp_path / "cache" / "models").exists() or not any((tmp_path / "cache" / "models").iterdir())
    assert (out / "gate_amen.png").stat().st_size > 0 and "oracle gain" in (out / "gate_amen.md").read_text()


def test_a_dial_inside_a_table_the_base_sets_keeps_both():
    """amen-tsp's dial (``response.user_click_bias_sd``) sits in the table its base also sets
    (``response``: the correlation with activity, the centring): the world gets all three."""
    table = dose.world_table(dose.SEEDS["amen-tsp"], 1000, 0.67)
    assert table["response"] == {"user_click_bias_activity_corr": 0.8, "user_click_bias_centered": True,
                                 "user_click_bias_sd": 0.67}
    assert table["n_users"] == 1000 and table["preset"] == "moveline"


def test_base_ctr_band_is_twenty_percent_of_dial_zero():
    assert dose.ctr_within_band([0.010, 0.0119, 0.0081])
    assert not dose.ctr_within_band([0.010, 0.0121])
    assert not dose.ctr_within_band([0.0, 0.0])  # no clicks at dial 0: nothing to hold fixed


def _summary(**change):
    s = {"dial": "intent.scene_first", "values": [0.0, 0.3, 0.6, 0.9], "headline_edge": "AMEN - DIN",
         "edges": {"AMEN - DIN": {"mean": [0.0, 0.002, 0.004, 0.006], "sd": [0.001] * 4}},
         "oracle_gain": [0.0, 0.01, 0.02, 0.03], "base_ctr": [0.02] * 4, "steps": [900.0] * 4, "converged": True}
    s.update(change)
    return s


def test_check_summary_accepts_exactly_the_issue_form_and_names_what_is_wrong():
    assert dose.check_summary(_summary()) == []
    assert dose.check_summary({**_summary(), "extra": 1})  # exactly these keys
    assert "headline_edge" in dose.check_summary(_summary(headline_edge="AMEN - DNN"))[0]
    assert "values" in dose.check_summary(_summary(values=[0.3, 0.6, 0.9, 1.0]))[0]  # must include 0
    assert "edges" in dose.check_summary(_summary(edges={"AMEN - DIN": {"mean": [0.0] * 3, "sd": [0.0] * 4}}))[0]
    assert "base_ctr" in dose.check_summary(_summary(base_ctr=[0.02, None, 0.02, 0.02]))[0]
    assert "converged" in dose.check_summary(_summary(converged="yes"))[0]


def test_a_tiny_sweep_writes_a_summary_of_the_issue_form(tmp_path, monkeypatch):
    cfg = {"preset": "default", "focus": "home_feed", "dial": ("intent", "strength"),
           "values": [0.0, 1.0, 2.0, 3.0], "base": TINY_BASE, "baselines": ["DIN"], "headline": ("AMEN", "DIN"),
           "models": [kit.Model("DIN", "din"), kit.Model("AMEN", "dnn")],
           "oracle": lambda data: {"gain": 0.0}}
    monkeypatch.setitem(dose.SEEDS, "amen", cfg)
    out = tmp_path / "out"
    assert dose.main(["amen", "--users", "240", "--seeds", "2", "--epochs", "3", "--batch-size", "256",
                      "--cache", str(tmp_path / "cache"), "--out", str(out), "--reduced", "a tiny test world"]) == 0
    page = json.loads((out / "dose_amen.json").read_text())
    s = page["summary"]
    assert dose.check_summary(s) == []  # the reduction is recorded beside the summary, not in it
    assert page["reduced"] == {"users": 240, "seeds": 2, "asked": {"users": 5000, "seeds": 3}, "why": "a tiny test world"}
    assert "**Reduced:** 240 users and 2 model seed(s)" in (out / "dose_amen.md").read_text()
    edge = [a["auc"] - b["auc"] for a, b in zip(page["results"][1]["rows"]["AMEN"], page["results"][1]["rows"]["DIN"],
                                              strict=True)]
    assert s["edges"]["AMEN - DIN"]["mean"][1] == pytest.approx(sum(edge) / 2)  # mean over the two seeds
    rows = [row for r in page["results"] for rr in r["rows"].values() for row in rr]
    assert all(row["stopped_by"] in ("patience", "epochs") for row in rows)
    assert s["converged"] == all(row["stopped_by"] == "patience" for row in rows)
    assert "Headline edge: AMEN - DIN" in (out / "dose_amen.md").read_text()
    # a short dial (here two values without 0; cached trainings) is reduced too, and says so
    assert dose.main(["amen", "--users", "240", "--seeds", "2", "--epochs", "3", "--batch-size", "256", "--values", "2,3",
                      "--cache", str(tmp_path / "cache"), "--out", str(out), "--reduced", "the top values only"]) == 0
    short = json.loads((out / "dose_amen.json").read_text())
    assert short["reduced"]["values"] == [2.0, 3.0] and short["reduced"]["asked"]["values"] == 4
    assert dose.check_summary(short["summary"]) != []  # not a page of the issue's form
    assert "dial values 2, 3, where issue #30 asks for" in (out / "dose_amen.md").read_text()


def test_the_starved_sharing_world_differs_from_the_preset_only_in_s3s_traffic():
    # issue #30, item 4: s3 at 1-4% of the traffic; the preset's world has 4%, the starved one 1%
    from simab.simulators.spec import world_spec

    shares = {}
    for name in ("ssim", "ssim-starved"):
        spec = world_spec(dose.world_table(dose.SEEDS[name], 1000, 0.8))
        total = sum(s.traffic for s in spec.scenarios.values())
        shares[name] = {k: s.traffic / total for k, s in spec.scenarios.items()}
    assert shares["ssim"]["s3"] == pytest.approx(0.04)
    assert shares["ssim-starved"]["s3"] == pytest.approx(0.01)
    starved = {k: v for k, v in dose.SEEDS["ssim-starved"].items() if k != "base"}
    assert starved == {k: v for k, v in dose.SEEDS["ssim"].items() if k != "base"}
    assert dose.SEEDS["ssim-backbones"]["base"] == dose.SEEDS["ssim-starved"]["base"]


def test_a_reduced_page_without_a_reason_is_refused_before_any_training(tmp_path, monkeypatch, capsys):
    """A page below item 6's size must say why (``--reduced``): without it the script exits 2
    with one line naming the flag and the asked size, before a world is built or a model trained."""
    def no_world(*a, **k):
        raise AssertionError("a world was built")

    monkeypatch.setattr(kit, "load_world", no_world)
    out = tmp_path / "out"
    rc = dose.main(["lcn", "--users", "240", "--seeds", "3", "--cache", str(tmp_path / "cache"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "--reduced" in err[0] and "240 users" in err[0] and "5,000 users" in err[0]
    assert not out.exists()


def test_base_extra_screens_a_world_variant_in_the_gate_only(tmp_path, monkeypatch, capsys):
    """``--base-extra`` merges world keys into the seed's base for the gate (a variant screened
    before any training); with a page, or as anything but a JSON object, it exits 2."""
    tables = []

    def record(table, seed, cache):
        tables.append(table)
        raise RuntimeError("stop after the world table")

    monkeypatch.setattr(kit, "load_world", record)
    common = ["lcn", "--users", "240", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    with pytest.raises(RuntimeError):
        dose.main([*common, "--gate-only", "--base-extra", '{"topic_spread": 2.0, "interest": {"dormant_weight": 0.7}}'])
    base = dose.SEEDS["lcn"]["base"]
    assert tables[0]["topic_spread"] == 2.0 and tables[0]["interest"] == {**base["interest"], "dormant_weight": 0.7}
    assert base["topic_spread"] != 2.0  # the seed's own base is untouched
    for bad in (["--base-extra", '{"topic_spread": 2.0}'], ["--gate-only", "--base-extra", "[1]"],
                ["--gate-only", "--base-extra", "{topic"]):
        assert dose.main([*common, *bad]) == 2
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert len(tables) == 1

"""Campaigns with interference: the spec (off by default, validated designs), shards that hold
whole markets, the global truth and the report beside it, market randomisation's independence
of the other markets, and the same bytes whatever the number of workers under every design."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from simab.errors import SimabError
from simab.eventlog import read_table
from simab.run.design import markets_of
from simab.run.plan import campaign_shard_of, campaign_users
from simab.run.runner import run_campaign
from simab.spec import load_campaign

from ..conftest import tiny

MARKET = {"enabled": True, "n_markets": 4, "capacity": 25.0, "refresh_s": 3600}
ARMS = {"control": {"policy": "oracle", "share": 0.5},
        "treatment": {"policy": "oracle", "share": 0.5, "params": {"blend": 0.5}}}


def spec_of(tmp_path, design: dict | None = None, **over):
    return load_campaign(overrides={"arms": ARMS, **tiny(tmp_path, duration_days=0.3, **over)},
                         set_values={"world": {"calibration": "dense", "market": MARKET},
                                     **({"design": design} if design else {})})


def test_the_default_campaign_has_no_market_and_no_design_in_its_dump():
    spec = load_campaign()
    dumped = json.loads(spec.model_dump_json())
    assert "design" not in dumped and "market" not in dumped["world"]
    assert spec.design.kind == "user" and not spec.world.market.enabled


@pytest.mark.parametrize("set_values,key,text", [
    ({"design": {"kind": "budget_split"}}, "design.kind", "world.market.enabled = true"),
    ({"design": {"kind": "market"}, "world": {"market": {"enabled": True}}}, "design.kind", "n_markets >= 2"),
    ({"design": {"kind": "switchback", "block_hours": 2.0, "washout_hours": 2.0}}, "design.washout_hours",
     "shorter than block_hours"),
    ({"design": {"kind": "item"}, "arms": {"control": {"share": 0.4}}}, "arms", "must sum to 1"),
    ({"design": {"kind": "two_sided"}, "ramps": [{"at_day": 0.1, "shares": {"control": 0.5}}]}, "ramps",
     "does not take ramps"),
    ({"world": {"market": {"enabled": True}}, "unit": "session"}, "unit", "unit = \"user\""),
    ({"design": {"kind": "teleport"}}, "design.kind", "user"),
])
def test_bad_designs_are_one_line_errors_naming_the_key(set_values, key, text):
    with pytest.raises(SimabError) as e:
        load_campaign(overrides={"arms": ARMS}, set_values=set_values)
    assert e.value.key == key and text in e.value.message


def test_an_item_side_design_refuses_a_policy_that_draws_random_slates():
    arms = {"control": ARMS["control"], "treatment": {"policy": "random", "share": 0.5}}
    with pytest.raises(SimabError) as e:
        load_campaign(overrides={"arms": arms}, set_values={"design": {"kind": "two_sided"}})
    assert e.value.key == "arms.treatment.policy" and "cannot be mixed" in e.value.message


def test_shards_hold_whole_markets(tmp_path):
    spec = spec_of(tmp_path, shards=3)
    users = campaign_users(spec)
    shard, market = campaign_shard_of(spec, users), markets_of(spec, users)
    for m in np.unique(market):
        assert len(np.unique(shard[market == m])) == 1


def _expected(run_dir, sub: str, arm: str) -> dict[str, float]:
    t = read_table(run_dir / sub, "exposures", ["p_click", "p_convert"]) if sub else None
    p = t["p_click"].to_numpy()
    return {"ctr": p.mean(), "ctcvr": (p * t["p_convert"].to_numpy()).mean()}


def test_the_report_puts_the_design_beside_the_global_truth(tmp_path):
    spec = spec_of(tmp_path, design={"kind": "switchback", "block_hours": 2.0, "washout_hours": 0.5})
    run = run_campaign(spec, out=tmp_path / "run", workers=1)
    rep = json.loads((run.run_dir / "report.json").read_text())
    inter = rep["interference"]
    assert inter["design"] == "switchback" and inter["truth"]["kind"] == "global"
    truth = pq.read_table(run.run_dir / "truth.parquet").to_pylist()
    glob = {(r["arm"], r["metric"]): r["value"] for r in truth if r["source"] == "global"}
    for metric in ("ctr", "ctcvr"):  # the GTE: the global worlds' expected values
        vals = {a: _expected(run.run_dir, f"global/{a}", a)[metric] for a in ("control", "treatment")}
        assert glob[("treatment", metric)] == pytest.approx(vals["treatment"], rel=1e-9)
        gte = vals["treatment"] / vals["control"] - 1
        assert inter["metrics"][metric]["gte_rel_lift"] == pytest.approx(gte, rel=1e-9)
        comp = rep["metrics"][metric]["comparisons"]["treatment_vs_control"]
        assert comp["true_rel_lift"] == pytest.approx(gte, rel=1e-9)  # judged against the GTE
        assert comp["rel_lift"] == pytest.approx(inter["metrics"][metric]["rel_lift"])  # the design's estimate
    assert set(rep["metrics"]) == {"ctr", "ctcvr", "cvr"}  # per-user metrics are not the switchback's
    assert "## Interference" in (run.run_dir / "report.md").read_text()
    assert inter["market"]["spent"] > 0
    from simab.run.verify import run_problems

    assert run_problems(run.run_dir) == []
    # the global worlds are children of the run's record, verified like its own parts
    part = run.run_dir / "global" / "treatment" / "exposures" / "shard-00000.parquet"
    part.write_bytes(part.read_bytes()[:-1] + bytes([part.read_bytes()[-1] ^ 1]))
    assert run_problems(run.run_dir) == ["global/treatment/exposures/shard-00000.parquet does not match its digest "
                                         "in manifest.json"]
    (run.run_dir / "global" / "treatment" / "exposures" / "copy.parquet").write_bytes(b"x")
    assert any("copy.parquet is not listed" in p for p in run_problems(run.run_dir))


def test_market_randomisation_gives_each_market_its_global_world(tmp_path):
    """Markets do not interact: a market in arm A lives exactly as in the world where every
    market is in A (the study's market design rests on it)."""
    spec = spec_of(tmp_path, design={"kind": "market"}, world={"n_users": 320})
    run = run_campaign(spec, out=tmp_path / "run", workers=1, report=False)
    cols = ["user", "request", "position", "item", "clicked", "p_click", "ts"]
    exp = read_table(run.run_dir, "exposures", cols + ["arm"])
    arm = exp["arm"].combine_chunks().cast(pa.string())
    seen = 0
    for a in ("control", "treatment"):
        mine = exp.filter(pc.equal(arm, a)).select(cols).sort_by([("request", "ascending"), ("position", "ascending")])
        users = pa.array(np.unique(mine["user"].to_numpy()))
        glob = read_table(run.run_dir / "global" / a, "exposures", cols)
        glob = glob.filter(pc.is_in(glob["user"], value_set=users)).sort_by([("request", "ascending"),
                                                                             ("position", "ascending")])
        assert mine.equals(glob)
        seen += mine.num_rows
    assert seen > 1000 and len(np.unique(markets_of(spec, exp["user"].to_numpy()))) == 4


DESIGNS = {"user": {"kind": "user"}, "budget_split": {"kind": "budget_split"},
           "item": {"kind": "item", "cluster": "category", "merge": "rank"}, "two_sided": {"kind": "two_sided"},
           "switchback": {"kind": "switchback", "block_hours": 2.0}, "market": {"kind": "market"}}


def _run_digests(run_dir) -> dict:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    out = {f"{s}/{t}": p["sha256"] for s, e in manifest["shards"].items() for t, p in e["parts"].items()}
    for arm in ("control", "treatment"):
        m = json.loads((run_dir / "global" / arm / "manifest.json").read_text())
        out |= {f"global/{arm}/{s}/{t}": p["sha256"] for s, e in m["shards"].items() for t, p in e["parts"].items()}
    files = manifest["files"]  # the whole-run tables, as the run's record lists them
    return out | {n: files[n]["sha256"] for n in ("truth.parquet", "covariates.parquet", "items.parquet",
                                                  "markets.parquet") if n in files}


def _same_bytes_for_one_and_two_workers(tmp_path, kind: str) -> None:
    spec = spec_of(tmp_path, design=DESIGNS[kind], shards=3)
    one = run_campaign(spec, out=tmp_path / "one", workers=1, report=False)
    two = run_campaign(spec, out=tmp_path / "two", workers=2, report=False)
    a, b = _run_digests(one.run_dir), _run_digests(two.run_dir)
    assert "0/market" in a and "items.parquet" in a and "truth.parquet" in a
    assert a == b


def test_the_same_bytes_for_one_and_two_workers_two_sided(tmp_path):
    _same_bytes_for_one_and_two_workers(tmp_path, "two_sided")


@pytest.mark.slow
@pytest.mark.parametrize("kind", [k for k in DESIGNS if k != "two_sided"])
def test_the_same_bytes_for_one_and_two_workers_under_every_design(tmp_path, kind):
    _same_bytes_for_one_and_two_workers(tmp_path, kind)


def test_resume_redoes_a_damaged_global_world_and_gives_the_same_bytes(tmp_path):
    """The global worlds are children of the run's record: a part deleted there is redone by
    --resume (and only it), and the resumed run equals the clean one byte for byte."""
    from simab.run.verify import run_problems

    spec = spec_of(tmp_path, design={"kind": "budget_split"})
    clean = run_campaign(spec, out=tmp_path / "clean", workers=1)
    broken = run_campaign(spec, out=tmp_path / "broken", workers=1)
    (broken.run_dir / "global" / "control" / "exposures" / "shard-00001.parquet").unlink()
    assert run_problems(broken.run_dir) != []
    again = run_campaign(spec, out=tmp_path / "broken", workers=1, resume=True)
    assert run_problems(again.run_dir) == []
    assert _run_digests(again.run_dir) == _run_digests(clean.run_dir)


def test_a_fresh_run_replaces_the_global_worlds_and_refuses_foreign_files_there(tmp_path):
    """Ownership by record reaches into global/<arm>: a fresh run into a finished one removes
    only what the records list; a foreign file inside a global world makes it refuse."""
    spec = spec_of(tmp_path, design={"kind": "budget_split"})
    run = run_campaign(spec, out=tmp_path / "run", workers=1, report=False)
    (run.run_dir / "global" / "treatment" / "notes.txt").write_text("mine")
    with pytest.raises(SimabError) as e:
        run_campaign(spec, out=tmp_path / "run", workers=1, report=False)
    assert "notes.txt" in str(e.value.source)
    assert (run.run_dir / "global" / "treatment" / "notes.txt").read_text() == "mine"
    (run.run_dir / "global" / "treatment" / "notes.txt").unlink()
    run_campaign(spec, out=tmp_path / "run", workers=1, report=False)
    assert (run.run_dir / "global" / "control" / "manifest.json").exists()


def test_a_sweep_keeps_only_the_summary_of_a_run_with_global_worlds(tmp_path):
    """keep_summary (a sweep without --keep-events) removes the global worlds with the other
    parts, and leaves nothing in the folder its record does not list."""
    from simab.eventlog import Manifest
    from simab.run.folder import keep_summary, scan

    spec = spec_of(tmp_path, design={"kind": "budget_split"})
    run = run_campaign(spec, out=tmp_path / "run", workers=1, report=False)
    record = Manifest(run.run_dir)
    keep_summary(record)
    assert not (run.run_dir / "global").exists() and not (run.run_dir / "exposures").exists()
    assert scan(run.run_dir, Manifest(run.run_dir)).foreign == []
    assert (run.run_dir / "truth.parquet").exists() and (run.run_dir / "items.parquet").exists()

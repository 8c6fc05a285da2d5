"""``simab world``: world.json with signals, figures, an HTML page; one-line errors."""

from __future__ import annotations

import json

from simab.cli.world import world_main
from simab.simulators.realism import TARGETS


def test_world_command_writes_json_figures_and_page(tmp_path, capsys):
    out = tmp_path / "w"
    rc = world_main(["default", "--users", "5000", "--sample", "80", "--days", "0.5", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "world.json").read_text())
    assert set(s["signals"]) >= {"moveline_ratio", "lifelong_ratio", "scenario_label_correlation"}
    assert s["n_users"] == 5000 and s["sampled_users"] == 80
    assert set(s["scenarios"]) == {"home_feed", "search_results", "shop_page", "marketing_channel"}
    names = [t.name for t in TARGETS]
    assert [r["name"] for r in s["realism"]] == names and s["calibration"] == "realistic"
    assert all(set(r) >= {"measured", "lo", "hi", "met", "source"} for r in s["realism"])
    for png in ("realism.png", "signals.png", "ctr_by_position.png", "ctr_by_scenario.png", "sessions.png", "histories.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{png}"' in (out / "index.html").read_text()
    printed = capsys.readouterr().out
    assert "moveline_ratio" in printed and "realism targets:" in printed and all(n in printed for n in names)


def test_world_command_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert world_main(["nowhere", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: <cli>: world.preset: unknown preset 'nowhere'") and "\n" not in err
    assert world_main(["default", "--sample", "0", "--out", str(tmp_path / "y")]) == 2
    assert "--sample" in capsys.readouterr().err


def test_world_command_on_a_toml_with_the_dense_calibration(tmp_path, capsys):
    toml = tmp_path / "dense.toml"
    toml.write_text('[world]\npreset = "default"\ncalibration = "dense"\n')
    assert world_main([str(toml), "--sample", "60", "--days", "0.5", "--out", str(tmp_path / "d")]) == 0
    s = json.loads((tmp_path / "d" / "world.json").read_text())
    assert s["calibration"] == "dense" and all(r["met"] is None for r in s["realism"])
    assert "dense calibration: no targets" in capsys.readouterr().out
    bad = tmp_path / "bad.toml"
    bad.write_text('[world]\npreset = "default"\ncalibration = "thin"\n')
    assert world_main([str(bad), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert "world.calibration" in err and "realistic, dense" in err and "\n" not in err

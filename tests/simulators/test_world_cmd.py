"""``simab world``: world.json with signals, figures, an HTML page; one-line errors."""

from __future__ import annotations

import json

from simab.world_cmd import world_main


def test_world_command_writes_json_figures_and_page(tmp_path, capsys):
    out = tmp_path / "w"
    rc = world_main(["default", "--users", "5000", "--sample", "80", "--days", "0.5", "--out", str(out)])
    assert rc == 0
    s = json.loads((out / "world.json").read_text())
    assert set(s["signals"]) >= {"moveline_ratio", "lifelong_ratio", "scenario_label_correlation"}
    assert s["n_users"] == 5000 and s["sampled_users"] == 80
    assert set(s["scenarios"]) == {"home_feed", "search_results", "shop_page", "marketing_channel"}
    for png in ("signals.png", "ctr_by_position.png", "ctr_by_scenario.png", "sessions.png", "histories.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f'src="{png}"' in (out / "index.html").read_text()
    assert "moveline_ratio" in capsys.readouterr().out


def test_world_command_bad_input_is_one_line_exit_2(tmp_path, capsys):
    assert world_main(["nowhere", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: <cli>: world.preset: unknown preset 'nowhere'") and "\n" not in err
    assert world_main(["default", "--sample", "0", "--out", str(tmp_path / "y")]) == 2
    assert "--sample" in capsys.readouterr().err

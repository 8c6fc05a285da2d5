"""scripts/ssim_st.py (SSIM's evidence, issue #30 item 7): the ST-Backbone is trained and
scored on the focus scenario's rows only, under the page's rule, beside the page's MT row."""

from __future__ import annotations

import numpy as np
import pytest
import ssim_st


def test_the_st_backbone_sees_only_the_focus_scenarios_rows(tmp_path, monkeypatch):
    # neural binds trainer.fit at its import: import it first, so the spy below is only what
    # ssim_st calls and monkeypatch's undo leaves no module holding it
    from simab.policies import neural, trainer  # noqa: F401

    seen = []
    real_fit = trainer.fit

    def spy(policy, train, val, config):
        for source in (train, val):
            seen.append(np.unique(source.source.scenario[source.rows]))
        seen.append(config)
        return real_fit(policy, train, val, config)

    monkeypatch.setattr(trainer, "fit", spy)
    page = {"seed_model": "ssim-starved", "focus": "s3", "users": 300, "seeds": [7], "epochs": 1, "max_steps": 2,
            "batch_size": 256, "monitor": "logloss", "patience": 2,  # no lr / embedding_dim: an older page
            "results": [{"value": 0.8, "rows": {"MT-Backbone": [{"seed": 7, "auc_s3": 0.75}]}}]}
    rows = ssim_st.probe(page, tmp_path, threads=1)
    assert len(rows) == 1
    (r,) = rows
    s3 = ["s1", "s2", "s3"].index("s3")
    assert [list(x) for x in seen[:2]] == [[s3], [s3]]  # training and validation rows: s3's only
    config = seen[2]
    assert (config.max_steps, config.batch_size, config.lr) == (2, 256, ssim_st.dose.study_defaults()["lr"])
    assert r["focus_train_rows"] > 0 and 0.0 <= r["st_auc"] <= 1.0
    assert r["mt_auc"] == 0.75 and r["mt_minus_st"] == pytest.approx(0.75 - r["st_auc"])


@pytest.mark.parametrize("text", ["{not json", '{"seed_model": "lcn", "focus": "channel_feed"}'])
def test_a_page_that_is_not_an_ssim_page_is_one_line_and_status_2(tmp_path, capsys, text):
    page = tmp_path / "page.json"
    page.write_text(text)
    assert ssim_st.main([str(page)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {page}: ") and err.count("\n") == 1

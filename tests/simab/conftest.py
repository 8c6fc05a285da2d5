import pytest


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.setenv("SIMAB_QUIET", "1")


def tiny(tmp_path, **over):
    """Overrides for a campaign small enough for a unit test (a few seconds)."""
    base = {
        "duration_days": 0.5,
        "shards": 2,
        "world": {"n_users": 240, "pre_period_days": 0.5, "n_shop_items": 600, "n_content_items": 400, "n_shops": 40},
        "training": {"cache_dir": str(tmp_path / "cache")},
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return base

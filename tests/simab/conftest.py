import pytest


def campaign_toml(*, duration_days: float = 0.5, shards: int | None = None, n_users: int | None = None,
                  treatment: str = "oracle", params: str | None = None) -> str:
    """The text of a small valid A/B campaign spec (popularity vs ``treatment``), for tests that
    edit it into bad input; every line stands on its own, so a test can replace one."""
    head = f"name = \"t\"\nseed = 1\nduration_days = {duration_days}\n"
    if shards is not None:
        head += f"shards = {shards}\n"
    world = "[world]\npreset = \"default\"\n" + (f"n_users = {n_users}\n" if n_users is not None else "")
    arms = ("[arms.control]\npolicy = \"popularity\"\nshare = 0.5\n\n"
            f"[arms.treatment]\npolicy = \"{treatment}\"\nshare = 0.5\n")
    if params is not None:
        arms += f"params = {{ {params} }}\n"
    return "\n" + head + "\n" + world + "\n" + arms


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


#: S of issue #28: a valid small campaign (the default's arms, 300 users, 0.2 days, 2 shards)
SMALL_SPEC = """
name = "s"
seed = 1
duration_days = 0.2
shards = 2

[world]
preset = "default"
n_users = 300
pre_period_days = 0.2

[arms.control]
policy = "popularity"
share = 0.5

[arms.treatment]
policy = "oracle"
share = 0.5
"""


def run_once(root, text: str, name: str = "s"):
    """Write ``text`` (with its cache in ``root``) as ``root/<name>.toml`` and run it into
    ``root/run`` through the command line; (spec file, run folder)."""
    from simab.cli.main import main

    spec = root / f"{name}.toml"
    spec.write_text(text + f'\n[training]\ncache_dir = "{root / "cache"}"\n')
    mp = pytest.MonkeyPatch()
    mp.setenv("SIMAB_QUIET", "1")
    try:
        assert main(["run", str(spec), "--out", str(root / "run")]) == 0
    finally:
        mp.undo()
    return spec, root / "run"


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """One finished run of :data:`SMALL_SPEC` per test session (a few seconds): (spec file,
    run folder, cache folder).  Tests copy the run folder before changing anything."""
    root = tmp_path_factory.mktemp("finished")
    spec, run = run_once(root, SMALL_SPEC)
    return spec, run, root / "cache"

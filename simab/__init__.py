"""simab: simulation-driven A/B testing for ranking policies.

Python API::

    spec = simab.load_campaign("campaign.toml")       # or None: the embedded default
    result = simab.run_campaign(spec)                  # -> RunResult(run_dir, report, ...)
    simab.reports.ratio_comparison(...)                # statistics on your own data
"""

from simab.version import __version__


def load_campaign(path=None, *, overrides=None):
    from simab.spec import load_campaign as _load

    return _load(path, overrides=overrides)


def run_campaign(spec, **kwargs):
    from simab.run.runner import run_campaign as _run

    return _run(spec, **kwargs)


__all__ = ["__version__", "load_campaign", "run_campaign"]

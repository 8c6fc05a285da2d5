"""simab: simulation-driven A/B testing for ranking policies.

Python API::

    spec = simab.load_campaign("campaign.toml")       # or None: the embedded default
    result = simab.run_campaign(spec)                  # -> RunResult(run_dir, report, ...)
    simab.reports.ratio_comparison(...)                # statistics on your own data
    report = simab.analyze(table, arm="group", control="control",
                           metrics={"converted": "converted"})   # a real experiment
"""

from simab.version import __version__


def load_campaign(path=None, *, overrides=None):
    from simab.spec import load_campaign as _load

    return _load(path, overrides=overrides)


def run_campaign(spec, **kwargs):
    from simab.run.runner import run_campaign as _run

    return _run(spec, **kwargs)


def analyze(data, *, arm, control, metrics, out=None, **options):
    """Analyse a real experiment: ``data`` is a pyarrow Table, a pandas DataFrame or a Parquet /
    CSV path, one row per unit (or per event with ``unit=``); ``metrics`` maps a name to
    ``"NUM"`` or ``"NUM/DEN"`` (or is a list of ``"NAME=NUM[/DEN]"``).  Options: ``unit``,
    ``events``, ``covariates`` ({metric: column}), ``time``, ``shares`` ({arm: share}),
    ``alpha``, ``correction``, ``drop_invalid``, ``name``.  Returns the report (the campaign
    report's contract, with ``data_checks``); ``out`` also writes report.json/.md/.html there.
    """
    from simab.reports.experiment import analyze_table
    from simab.reports.render_experiment import write_experiment_report

    report = analyze_table(data, arm=arm, control=control, metrics=metrics, **options)
    if out is not None:
        write_experiment_report(report, out)
    return report


def analyze_summary(data, *, control, out=None, **options):
    """Compare arms from per-arm count / mean / variance rows (one row per arm, metric and
    look; ``simab.reports.experiment.analyze_summary`` lists the options); ``out`` also
    writes report.json/.md/.html there."""
    from simab.reports.experiment import analyze_summary as _summary
    from simab.reports.render_experiment import write_experiment_report

    report = _summary(data, control=control, **options)
    if out is not None:
        write_experiment_report(report, out)
    return report


__all__ = ["__version__", "analyze", "analyze_summary", "load_campaign", "run_campaign"]

"""The command-line contract, fuzzed (issue 28): whatever the spec, the flags or the state of
a run folder, a command either exits 0 with complete, verified outputs (1 for a failed
``check`` expectation or a missed calibration target), or exits 2 with exactly one line on
stderr and no traceback; and no file outside the folder it was pointed at is created,
changed or removed.

Three generators: tampered copies of one finished run (read by report, check, power and
resume), flags of all nine commands (and ``analyze``), and mutated campaign specs.  The default budget is
small (``make test``); ``make test-slow`` runs a larger one, in which small valid specs and
flags also run their campaigns for real.  Examples are derandomised: a run of the suite is
the same on every machine, and a failure names its example.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from simab.cli.main import main

from .conftest import SMALL_SPEC

COMMON = {"deadline": None, "derandomize": True, "database": None,
          "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                    HealthCheck.data_too_large]}
FAST = settings(max_examples=80, **COMMON)  # validation only: milliseconds an example
FAST_TAMPER = settings(max_examples=12, **COMMON)  # up to a report each (a second or two)
SLOW = settings(max_examples=150, **COMMON)


class Reached(Exception):
    """Raised in place of the expensive work once a command has validated its input."""


# --------------------------------------------------------------------------- the contract
def _snapshot(root: Path, skip: list[Path]) -> dict[str, tuple]:
    out = {}
    for p in sorted(root.rglob("*")):
        if any(p == s or s in p.parents for s in skip):
            continue
        st_ = p.lstat()
        out[p.relative_to(root).as_posix()] = (st_.st_mode, p.read_bytes() if p.is_file() and not p.is_symlink()
                                               else str(p.readlink()) if p.is_symlink() else b"")
    return out


def _call(argv: list[str], capsys, *, root: Path, target: Path | None, cache: Path) -> tuple[int | None, str]:
    """Run ``simab argv``; check the one-line contract and that nothing outside ``target``
    (and the cache) changed.  Returns (exit code or None when the work was reached, stdout)."""
    skip = [cache] + ([target] if target is not None else [])
    before = _snapshot(root, skip)
    capsys.readouterr()
    try:
        code: int | None = main(argv)
    except Reached:
        code = None
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out, (argv, captured.err[-2000:])
    if code == 2:
        lines = captured.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, lines)
        assert len(lines[0]) < 600, lines[0]
    else:
        assert code in (None, 0, 1), (argv, code, captured.err[-2000:])
    assert _snapshot(root, skip) == before, argv
    event(f"{argv[0]}: exit {code}" if code is not None else f"{argv[0]}: input valid, work reached")
    return code, captured.out


def _verified(run: Path) -> None:
    """The run folder verifies in full, and so does its report."""
    from simab.run.verify import verified_report

    verified_report(run)


# --------------------------------------------------------------------------- tampered run folders
def _files(run: Path) -> list[str]:
    return sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())


def _json_paths(doc, prefix=()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _json_paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            out += _json_paths(v, (*prefix, i))
    return out


JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 10**8, 2**63]),
    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from([1e-300, 1e308, 0.5, -0.0]),
    st.text(max_size=12), st.sampled_from(["treatment", "control", "complete", "running", "../x"]),
    st.just([]), st.just({}), st.just(["control", "treatment"]),
)

TAMPERS = st.sampled_from(["flip", "truncate", "delete", "add", "link", "json", "dir", "rename"])
ADDED_NAMES = ["shard-00002.parquet", "copy.parquet", "notes.txt", ".shard-00000.parquet.x.tmp", "x.json",
               "manifest.json", "folder.lock"]


@st.composite
def tampering(draw, run: Path):
    """A list of (kind, details) edits of a run folder, drawn against its actual files."""
    files = _files(run)
    folders = [""] + sorted({str(Path(f).parent) for f in files if "/" in f})
    edits = []
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(TAMPERS)
        f = draw(st.sampled_from(files))
        if kind == "flip":
            edits.append((kind, f, draw(st.integers(0, 10**9)), draw(st.integers(1, 255))))
        elif kind == "truncate":
            edits.append((kind, f, draw(st.floats(0, 0.999))))
        elif kind in ("delete", "link", "rename"):
            edits.append((kind, f))
        elif kind == "add":
            edits.append((kind, draw(st.sampled_from(folders)), draw(st.sampled_from(ADDED_NAMES)),
                          draw(st.sampled_from(files + [None]))))
        elif kind == "dir":
            edits.append((kind, draw(st.sampled_from(folders)), draw(st.sampled_from(["x", "shard-00009.parquet"]))))
        else:
            name = draw(st.sampled_from(["run.json", "spec.json", "report.json", "manifest.json"]))
            doc = json.loads((run / name).read_text())
            path = draw(st.sampled_from(_json_paths(doc)))
            edits.append((kind, name, path, draw(JSON_VALUES), draw(st.booleans())))
    return edits


def _apply(run: Path, outside: Path, edits: list) -> None:
    from simab.record import checksum, sha256

    for i, edit in enumerate(edits):
        kind = edit[0]
        p = run / edit[1]
        if kind in ("flip", "truncate", "delete", "link", "rename") and (p.is_symlink() or not p.is_file()):
            continue  # an earlier edit removed or linked it
        if kind == "flip":
            p = run / edit[1]
            data = bytearray(p.read_bytes())
            if data:
                data[edit[2] % len(data)] ^= edit[3]
                p.write_bytes(bytes(data))
        elif kind == "truncate":
            p = run / edit[1]
            p.write_bytes(p.read_bytes()[: int(p.stat().st_size * edit[2])])
        elif kind == "delete":
            (run / edit[1]).unlink()
        elif kind == "rename":
            p = run / edit[1]
            p.rename(p.with_name("shard-00007.parquet" if p.suffix == ".parquet" else p.name + ".old"))
        elif kind == "link":
            p = run / edit[1]
            copy = outside / f"{i}-{p.name}"
            shutil.copy(p, copy)
            p.unlink()
            p.symlink_to(copy)
        elif kind == "add":
            folder = run / edit[1]
            if folder.is_dir():
                dst = folder / edit[2]
                src = run / edit[3] if edit[3] else None
                if dst.is_dir():
                    continue
                dst.write_bytes(src.read_bytes() if src is not None and src.is_file() else b"user data\n")
        elif kind == "dir":
            if (run / edit[1]).is_dir():
                (run / edit[1] / edit[2]).mkdir(exist_ok=True)
        else:
            _, name, path, value, reseal = edit
            p = run / name
            if not p.is_file():
                continue
            try:
                doc = json.loads(p.read_text())
            except ValueError:
                continue
            node = doc
            try:
                for k in path[:-1]:
                    node = node[k]
                node[path[-1]] = value
            except (KeyError, IndexError, TypeError):
                continue
            p.write_text(json.dumps(doc))
            if reseal and name != "manifest.json":  # as if simab had listed the edited file
                rec = json.loads((run / "manifest.json").read_text())
                if isinstance(rec, dict) and isinstance(rec.get("files"), dict) and name in rec["files"]:
                    rec["files"][name] = {"sha256": sha256(p), "bytes": p.stat().st_size}
                    rec["checksum"] = checksum(rec)
                    (run / "manifest.json").write_text(json.dumps(rec))
            elif reseal:
                rec = json.loads(p.read_text())
                if isinstance(rec, dict):
                    rec["checksum"] = checksum(rec)
                    p.write_text(json.dumps(rec))


READERS = [
    ["report", "{run}"],
    ["report", "{run}", "--allow-incomplete"],
    ["check", "{run}", "--expect", "ctr.rel_lift > -100"],
    ["power", "--from-run", "{run}", "--rel-mde", "0.05"],
]


def _tamper_case(data, finished_run, tmp_path_factory, capsys, *, resume: bool) -> None:
    spec, base, cache = finished_run
    root = tmp_path_factory.mktemp("tamper")
    run, outside = root / "run", root / "outside"
    outside.mkdir()
    shutil.copytree(base, run, symlinks=True)
    _apply(run, outside, data.draw(tampering(run), label="edits"))
    commands = READERS + ([["run", "{spec}", "--out", "{run}", "--resume"]] if resume else [])
    argv = [a.format(run=run, spec=spec) for a in data.draw(st.sampled_from(commands), label="command")]
    code, out = _call(argv, capsys, root=root, target=run, cache=cache)
    if code == 0 and argv[0] in ("report", "run") and "--allow-incomplete" not in argv:
        _verified(run)
    if code == 0 and "--allow-incomplete" in argv:
        rep = json.loads((run / "report.json").read_text())
        from simab.run.verify import REPORT_FILES, run_problems

        assert rep["integrity"]["complete"] == (not run_problems(run, skip=REPORT_FILES))


@FAST_TAMPER
@given(data=st.data())
def test_tampered_run_folders(data, finished_run, tmp_path_factory, capsys):
    _tamper_case(data, finished_run, tmp_path_factory, capsys, resume=False)


@pytest.mark.slow
@SLOW
@given(data=st.data())
def test_tampered_run_folders_more(data, finished_run, tmp_path_factory, capsys):
    _tamper_case(data, finished_run, tmp_path_factory, capsys, resume=True)


# --------------------------------------------------------------------------- flags
INTS = st.sampled_from(["0", "1", "2", "-1", "3", "1000", "99999999999999999999", "1e29", "2.5", "", "x",
                        "4294967296", "100000000"])
FLOATS = st.sampled_from(["0", "-1", "1e-300", "1e308", "nan", "inf", "-inf", "0.5", "1e-6", "0.05", "abc", "",
                          "1e999", "2", "0.9999", "100"])
SETS = st.sampled_from(["seed=2", "duration_days=0.1", "shards=3000", "serving.tick_s=1e-9", "metrics=[]",
                        "alpha=1e-300", "arms.treatment.share=1e-300", "arms.treatment.share=0.9",
                        "world.n_users=1", "x.y.z=1", "." * 20 + "=1", "seed=[" + "[" * 200, "arms.t/x.policy=1",
                        "name=../x", "name=ok", "world.n_users=250", "training.lr=1e308", "colour=1"])
EXPECTS = st.sampled_from(["ctr.rel_lift > 0", "ctr.rel_lift > 1e999999999", "ctr.rel_ci[0] > -10",
                           "ctr.rel_lift >>> 0", "x" * 300, "ctr.arms.control.value > 0", "ctcvr.p_value < 2"])


@st.composite
def flag_lines(draw, places: dict[str, str]) -> tuple[list[str], str | None]:
    """A command line of one of the nine commands with drawn flags; the folder it writes."""
    target = st.sampled_from(["{out}", "{run}", "{file}", "{missing}", "{userdir}"])
    command = draw(st.sampled_from(["run", "report", "check", "world", "train", "calibrate", "sweep", "power",
                                    "ope", "analyze"]))
    argv = [command]
    out = None
    if command in ("run", "sweep", "ope"):
        argv.append(draw(st.sampled_from(["{spec}", "{missing}", "{file}", "/dev/zero", "{run}"])))
    if command in ("report", "check"):
        out = draw(target)
        argv.append(out)
    if command == "world":
        argv.append(draw(st.sampled_from(["default", "mars", "{spec}", "{missing}"])))
    if command == "analyze":
        argv += [draw(st.sampled_from(["{data}", "{data}", "{file}", "{missing}", "{spec}"])), "--arm", "arm",
                 "--control", draw(st.sampled_from(["c", "c", "t", "z"])), "--metric", "y=y"]
    options = {
        "run": {"--out": target, "--seed": INTS, "--workers": INTS, "--set": SETS, "--resume": None,
                "--overwrite": None, "--backend": st.sampled_from(["local", "spark"])},
        "report": {"--correction": st.sampled_from(["holm", "bh", "sidak"]), "--allow-incomplete": None},
        "check": {"--expect": EXPECTS, "--out": target},
        "world": {"--users": INTS, "--seed": INTS, "--out": target, "--sample": INTS, "--days": FLOATS},
        "train": {"--world": st.sampled_from(["default", "mars"]), "--policy": st.sampled_from(["dnn", "popularity",
                                                                                              "magic"]),
                  "--set": SETS, "--epochs": INTS, "--batch-size": INTS, "--lr": FLOATS, "--max-steps": INTS,
                  "--seed": INTS, "--users": INTS, "--out": target},
        "calibrate": {"--battery": st.sampled_from(["aa", "all", "ab"]), "--runs": INTS, "--workers": INTS,
                      "--seed": INTS, "--users": INTS, "--out": target},
        "sweep": {"--grid": st.sampled_from(["seed=1,2", "shards=0", "world.n_users=200,400", "x=", "seed"]),
                  "--replicates": INTS, "--workers": INTS, "--set": SETS, "--out": target, "--keep-events": None},
        "power": {"--baseline": FLOATS, "--sd": FLOATS, "--from-run": target, "--rel-mde": FLOATS, "--users": INTS,
                  "--ratio": FLOATS, "--alpha": FLOATS, "--power": FLOATS, "--metric": st.sampled_from(["ctr", "x"])},
        "ope": {"--out": target, "--logging": st.sampled_from(["uniform", "plackett_luce", "bad"]),
                "--temperature": FLOATS, "--seed": INTS, "--workers": INTS, "--set": SETS, "--online": None},
        "analyze": {"--metric": st.sampled_from(["y=y", "y=y/uid", "x=nope", "=", "y"]), "--unit": st.just("uid"),
                    "--alpha": FLOATS, "--out": target, "--events": None, "--share": st.sampled_from(["c=0.5", "c=x"]),
                    "--correction": st.sampled_from(["holm", "none", "x"])},
    }[command]
    for flag in draw(st.lists(st.sampled_from(sorted(options)), max_size=4, unique=True)):
        argv.append(flag)
        if options[flag] is not None:
            value = draw(options[flag])
            argv.append(value)
            if flag == "--out" or flag == "--from-run":
                out = value
    if command == "train" and "--out" not in argv:
        argv += ["--out", "{out}"]
        out = "{out}"
    if command in ("run", "world", "ope", "sweep", "calibrate", "analyze") and "--out" not in argv:
        argv += ["--out", "{out}"]
        out = "{out}"
    return [a.format(**places) for a in argv], (out.format(**places) if out else None)


@pytest.fixture
def no_expensive_work(monkeypatch, request):
    """Replace each command's expensive work by :class:`Reached` (validation, the folder's
    claim and its verification still run); ``small`` lets small campaigns run for real."""
    import simab.batteries.calibrate
    import simab.batteries.sweep
    import simab.cli.world
    import simab.run.arm_policies
    import simab.run.preperiod
    import simab.run.runner

    real_run_in = simab.run.runner._run_in  # noqa: SLF001

    def run_in(spec, *args, **kwargs):
        small = getattr(request, "param", False)
        arms_fixed = all(a.policy in ("popularity", "random", "oracle") for a in spec.arms.values())
        if small and arms_fixed and spec.simulated_users <= 400 and spec.duration_days <= 0.3 \
                and spec.world.pre_period_days <= 0.3 and spec.shards <= 4:
            return real_run_in(spec, *args, **kwargs)
        raise Reached

    def reached(*args, **kwargs):
        raise Reached

    monkeypatch.setattr(simab.run.runner, "_run_in", run_in)
    monkeypatch.setattr(simab.run.preperiod, "pre_period", reached)
    monkeypatch.setattr(simab.cli.world, "sample_pre_period", reached)
    monkeypatch.setattr(simab.batteries.sweep, "execute", reached)
    monkeypatch.setattr(simab.batteries.calibrate, "run_battery", reached)
    monkeypatch.setattr(simab.run.arm_policies, "prepare_policies", reached)


def _places(root: Path, spec: Path, run: Path) -> dict[str, str]:
    (root / "file.txt").write_text("a user's file\n")
    (root / "userdir").mkdir()
    (root / "userdir" / "notes.md").write_text("mine\n")
    (root / "exp.csv").write_text("arm,uid,y\n" + "".join(f"{'c' if i % 2 else 't'},{i},{i % 5}\n" for i in range(60)))
    return {"spec": str(spec), "run": str(run), "out": str(root / "out"), "file": str(root / "file.txt"),
            "missing": str(root / "missing"), "userdir": str(root / "userdir"), "data": str(root / "exp.csv")}


def _flags_case(data, finished_run, tmp_path_factory, capsys) -> None:
    spec, base, cache = finished_run
    root = tmp_path_factory.mktemp("flags")
    run = root / "run"
    shutil.copytree(base, run, symlinks=True)
    places = _places(root, spec, run)
    argv, out = data.draw(flag_lines(places), label="argv")
    target = Path(out) if out and out not in (places["file"], places["missing"]) else None
    code, _ = _call(argv, capsys, root=root, target=target, cache=cache)
    if code == 0 and argv[0] in ("run", "report", "analyze") and target is not None \
            and "--allow-incomplete" not in argv:
        _verified(target)


# --------------------------------------------------------------------------- specs
NAN, INF = math.nan, math.inf
#: spec key -> values to try: valid ones (a run, or the work reached) and invalid ones
SPEC_VALUES = {
    "name": ["s", "t-1", "a.b", "_x", "../x", "", ".", "x" * 80, 3],
    "seed": [0, 7, 4294967295, -1, 2**32, 2**70, 1.5, "1"],
    "duration_days": [0.1, 0.25, 0.0, -1.0, 1e308, NAN, INF, "0.2"],
    "alpha": [0.05, 0.1, 1e-6, 0.5, 1e-300, 0.0, 1.0, NAN],
    "metrics": [["ctr"], ["ctr", "stay_time"], [], ["ctr", "ctr"], ["revenue"], "ctr"],
    "shards": [1, 2, 3, 0, 300, 3000, 10**8, -1],
    "workers": [1, 2, 0, 2000],
    "unit": ["user", "session", "visit"],
    "control": ["control", "treatment", "nobody", 1],
    "truth": ["oracle", "counterfactual", "magic"],
    "users": [100, 2, 1, 10**9, None],
    "salt": ["", "x", "../../etc"],
    "engine": ["wave", "reference", "turbo"],
    "colour": ["red"],
    "world.n_users": [200, 300, 1, 10**9, 2**70, "300"],
    "world.preset": ["default", "moveline", "mars", ""],
    "world.pre_period_days": [0.1, 0.2, 0.0, 1e308],
    "world.n_shop_items": [300, 600, 5, 10**9],
    "world.sessions.per_day": [1.0, 3.0, 1e9, 0.0],
    "world.response.beta": [1.0, 1e308, -1.0],
    "world.response.b_cv": [-1.5, -1e308],
    "world.intent.needs_per_day": [0.5, 1e12],
    "world.scenarios.home_feed.traffic": [1.0, 1e-300, 1e300],
    "world.calibration": ["realistic", "dense", "sparse"],
    "serving.tick_s": [3600.0, 86400.0, 60.0, 1e-9, 0.0],
    "serving.max_batch": [4, 64, 0, 10**9],
    "serving.base_ms": [2.0, 1e308, -1.0],
    "serving.abandon_after_ms": [40.0, 1e-300, 1e308],
    "training.lr": [0.01, 1e308, 0.0],
    "training.epochs": [1, 0, 10**6],
    "arms.control.share": [0.5, 0.3, 1e-300, 1e-4, 0.0, 2.0],
    "arms.treatment.share": [0.5, 0.2, 1e-300, 0.9, -0.5],
    "arms.treatment.policy": ["oracle", "random", "popularity", "magic", ""],
    "arms.treatment.params": [{}, {"blend": 0.5}, {"blend": 5.0}, {"colour": 1}],
    "ramps": [[{"at_day": 0.1, "shares": {"treatment": 0.5}}], [{"at_day": 1e308, "shares": {}}],
              [{"at_day": 0.05, "shares": {"ghost": 0.2}}]],
}
ARM_NAMES = st.sampled_from(["control", "treatment", "t2", "../../../escaped", "a b", "x_vs_y", "1st", "T" * 40])


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"


def _toml(table: dict, prefix: str = "") -> str:
    plain = [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items() if not isinstance(v, dict) or not v]
    lines = plain[:]
    for k, v in table.items():
        if isinstance(v, dict) and v:
            name = f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k)
            lines += ["", f"[{name}]", _toml(v, name)]
    return "\n".join(lines)


@st.composite
def specs(draw, cache: Path) -> str:
    import tomllib

    from simab.simulators.spec import deep_merge

    table = tomllib.loads(SMALL_SPEC)
    table["training"] = {"cache_dir": str(cache)}
    if draw(st.integers(0, 3)) == 0:
        name = draw(ARM_NAMES)
        table["arms"] = {("control" if name != "control" else "c0"): table["arms"]["control"],
                         name: {"policy": "random", "share": 0.5}}
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(SPEC_VALUES)))
        value = draw(st.sampled_from(SPEC_VALUES[key]))
        if value is None:
            continue
        over: dict = {}
        node = over
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        table = deep_merge(table, over)
    return _toml(table) + "\n"


def _spec_case(data, finished_run, tmp_path_factory, capsys) -> None:
    _, _, cache = finished_run
    root = tmp_path_factory.mktemp("spec")
    spec = root / "c.toml"
    spec.write_text(data.draw(specs(cache), label="spec"))
    out = root / "out"
    code, _ = _call(["run", str(spec), "--out", str(out)], capsys, root=root, target=out, cache=cache)
    if code == 0:
        _verified(out)


GENERATED = pytest.mark.parametrize("case", ["flags", "specs"])


@GENERATED
@FAST
@given(data=st.data())
def test_flags_and_specs(case, data, finished_run, tmp_path_factory, capsys, no_expensive_work):
    """Flags of all nine commands and mutated campaign specs; the work a valid input starts
    is replaced by :class:`Reached` (validation, the folder's claim and checks still run)."""
    (_flags_case if case == "flags" else _spec_case)(data, finished_run, tmp_path_factory, capsys)


@pytest.mark.slow
@GENERATED
@pytest.mark.parametrize("no_expensive_work", [True], indirect=True)
@SLOW
@given(data=st.data())
def test_flags_and_specs_more(case, data, finished_run, tmp_path_factory, capsys, no_expensive_work):
    """The same with a larger budget, small valid campaigns running for real."""
    (_flags_case if case == "flags" else _spec_case)(data, finished_run, tmp_path_factory, capsys)

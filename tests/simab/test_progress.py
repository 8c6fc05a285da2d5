"""Progress lines go to stderr, and ``SIMAB_QUIET=1`` silences them."""

from simab.progress import progress


def test_progress_prints_to_stderr_unless_quiet(capsys, monkeypatch):
    monkeypatch.delenv("SIMAB_QUIET", raising=False)
    progress("shard 1/2 done")
    out = capsys.readouterr()
    assert out.err == "shard 1/2 done\n" and out.out == ""
    monkeypatch.setenv("SIMAB_QUIET", "1")
    progress("shard 2/2 done")
    assert capsys.readouterr().err == ""

"""``write_atomic``: the one atomic file write every layer uses."""

import os

import pytest

from simab.atomic import UMASK, write_atomic


def test_text_bytes_and_writer_functions(tmp_path):
    p = tmp_path / "a.json"
    assert write_atomic(p, "héllo\n") == p and p.read_bytes() == "héllo\n".encode()
    write_atomic(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01"
    write_atomic(p, lambda tmp: tmp.write_text("from a writer"), fsync=True)
    assert p.read_text() == "from a writer"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["a.json"]  # no temporary file left


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "run.json"
    p.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        write_atomic(p, half_then_fail)
    assert p.read_text() == "old"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["run.json"]


def test_permissions_are_those_of_a_plain_new_file(tmp_path):
    """Not mkstemp's private 0600: reports and checkpoints are for sharing."""
    p = write_atomic(tmp_path / "report.md", "x")
    assert os.stat(p).st_mode & 0o777 == 0o666 & ~UMASK

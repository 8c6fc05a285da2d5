"""The allocator settings of policies/runtime.py: applied while training and for serving
processes, restored after training, left alone without glibc."""

from __future__ import annotations

from simab.policies import runtime


def recorder(calls: list):
    def mallopt(param: int, value: int) -> int:
        calls.append((param, value))
        return 1

    return lambda: mallopt


def test_heap_temporaries_keeps_large_blocks_on_the_heap_and_restores_glibcs_settings(monkeypatch):
    calls: list = []
    monkeypatch.setattr(runtime, "glibc_mallopt", recorder(calls))
    with runtime.heap_temporaries():
        inside = dict(calls)
    assert inside[runtime.M_MMAP_THRESHOLD] == 1 << 30  # large blocks from the heap
    assert inside[runtime.M_TRIM_THRESHOLD] == 1 << 32  # freed memory kept for the next step
    after = dict(calls[len(inside):])
    # what glibc's dynamic threshold reaches with large blocks: 32 MB, trimming above twice that
    assert after == {runtime.M_MMAP_THRESHOLD: 32 << 20, runtime.M_TRIM_THRESHOLD: 64 << 20,
                     runtime.M_TOP_PAD: 128 << 10}


def test_another_c_library_is_left_alone(monkeypatch):
    monkeypatch.setattr(runtime, "glibc_mallopt", lambda: None)
    assert runtime.keep_heap() is False
    with runtime.heap_temporaries():
        pass


def test_glibc_is_found_on_linux():
    import platform

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert runtime.glibc_mallopt() is not None

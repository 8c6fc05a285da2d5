"""The context that steers home/channel retrieval holds only real events (issue #18's bug:
an empty slot of the short sequence read as category 0, a real category)."""

import numpy as np

from simab.engine.retrieval import retrieval_contexts


def retrieval_context(ml_cat, ml_real, seq_cat, seq_real) -> np.ndarray:
    """One request's context, absent entries (-1) dropped."""
    ctx = retrieval_contexts(ml_cat, ml_real, seq_cat, seq_real)
    return ctx[ctx >= 0]


def test_empty_slots_of_the_short_sequence_are_no_category():
    # a user with 3 target-history events: 7 of the 10 short-sequence slots are empty
    seq_cat = np.array([0, 0, 0, 0, 0, 0, 0, 5, 6, 7])
    seq_real = np.arange(10) >= 7
    ml_cat = np.array([-1, 4, 9])  # a scene without a category (-1) and two with one
    ml_real = np.array([True, True, True])
    ctx = retrieval_context(ml_cat, ml_real, seq_cat, seq_real)
    assert sorted(ctx.tolist()) == [4, 5, 6, 7, 9]
    assert 0 not in ctx  # the old code gave seven zeros here


def test_real_category_zero_is_kept():
    # category 0 is a real category when the event is real
    ctx = retrieval_context(np.array([0]), np.array([True]), np.array([0, 3]), np.array([True, True]))
    assert sorted(ctx.tolist()) == [0, 0, 3]


def test_a_user_without_any_event_has_an_empty_context():
    empty = np.zeros(10, np.int64)
    ctx = retrieval_context(empty, np.zeros(10, bool), empty, np.zeros(10, bool))
    assert ctx.size == 0

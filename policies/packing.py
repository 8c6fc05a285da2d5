"""Packing feature batches for the model's speed: rows grouped by history length, each
group's sequences cut to the group's longest real history.

Every sequence of the feature contract (:mod:`simab.policies.features`) is right-aligned:
a row's real entries sit at the end of its ``[B, L]`` arrays, padding (mask ``False``) at
the start.  Padding is work a model does for nothing: the cap of a lifelong history is
2,000 events while the median user has 30% of it.  Cutting a batch's sequences to the
longest real entry among its rows (:func:`trim`) drops only padding, so a row's result
is the same up to the order of floating-point sums (no model here reads a sequence
position; every reduction over a sequence is masked).  Sorting rows by their history
lengths before cutting batches (:func:`packed_batches`) makes the rows of a batch alike,
so little padding is left.

A batch's composition then shapes its floating-point work: a row's score may differ in
the last bits with the rows it is scored with.  The callers make the composition a
function of their inputs (the campaign: of the shard; training: of the seed).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

#: Mask key -> the other keys of that sequence, padded along axis 1 (right-aligned).
SEQUENCES: dict[str, tuple[str, ...]] = {
    "seq_mask": ("seq_item", "seq_cat"),
    "ais_mask": ("ais_item", "ais_cat", "ais_scene"),
    "ml_mask": ("ml_scene", "ml_cat", "ml_shop", "ml_gap"),
    "ll_mask": ("ll_item", "ll_cat", "ll_action", "ll_gap", "ll_tag"),
    "tl_mask": ("tl_item", "tl_cat", "tl_action", "tl_gap", "tl_tag"),
}
#: Prefixes of keys that hold another row's sequences (AMEN's ``pair_ctx_*``): cut with
#: their own masks.
PREFIXES = ("", "pair_ctx_")


def _sequences(batch: dict) -> list[tuple[str, tuple[str, ...]]]:
    """(mask key, the sequence's other keys) of every sequence ``batch`` holds."""
    return [(p + m, tuple(p + k for k in keys)) for p in PREFIXES for m, keys in SEQUENCES.items() if p + m in batch]


def real_lengths(batch: dict) -> dict[str, np.ndarray]:
    """Per sequence mask key of ``batch``: each row's number of real entries ``[B]``."""
    return {m: batch[m].sum(1).numpy() for m, _ in _sequences(batch)}


def trim(batch: dict) -> dict:
    """``batch`` with each sequence cut to the columns where some row has a real entry
    (at least one column, so that a batch of empty histories keeps its shapes): for the
    right-aligned sequences of the contract, the longest real history among the rows.  Only
    columns that are padding in every row go, whatever the alignment; a batch with nothing
    to cut is returned as it is."""
    out = None
    for m, keys in _sequences(batch):
        mask = batch[m]
        used = mask.numpy().any(0) if mask.device.type == "cpu" else mask.any(0).cpu().numpy()
        L = used.shape[0]
        real = np.flatnonzero(used)
        lo, hi = (int(real[0]), int(real[-1]) + 1) if len(real) else (L - 1, L)
        if hi - lo >= L:
            continue
        if out is None:
            out = dict(batch)
        for k in (m, *keys):
            if k in out:
                out[k] = out[k][:, lo:hi]
    return batch if out is None else out


def length_order(batch: dict) -> np.ndarray:
    """Row order by history length: the longest-capped sequence first (a lifelong history
    outweighs the rest), then the total of the others; stable, so equal rows keep their
    order."""
    masks = [m for m, _ in _sequences(batch)]
    B = next(iter(batch.values())).shape[0]
    if not masks:
        return np.arange(B)
    lengths = real_lengths(batch)
    first = max(masks, key=lambda m: batch[m].shape[1])
    rest = sum((lengths[m] for m in masks if m != first), np.zeros(B, np.int64))
    return np.lexsort((rest, lengths[first]))


def packed_batches(batch: dict, max_rows: int) -> Iterator[tuple[np.ndarray, dict]]:
    """``(rows, part)`` covering every row of ``batch`` once: rows sorted by history
    length (:func:`length_order`), cut into parts of at most ``max_rows``, each part
    trimmed (:func:`trim`); a batch of at most ``max_rows`` rows is one part, in its own
    order.  ``rows`` index ``batch``'s rows; scores of ``part`` go back to them."""
    B = next(iter(batch.values())).shape[0]
    if B <= max_rows:  # one part: no reordering needed, only the cut
        yield np.arange(B), trim(batch)
        return
    order = length_order(batch)
    for lo in range(0, len(order), max_rows):
        rows = order[lo:lo + max_rows]
        index = torch.from_numpy(rows)
        yield rows, trim({k: v.index_select(0, index) for k, v in batch.items()})


#: Training batches sorted by length together: a window of this many batches' rows (of the
#: shuffled epoch) is sorted by history length and cut into batches; the windows keep each
#: batch a random draw of the epoch's rows in all but length.
BUCKET_BATCHES = 50


def bucketed_batches(order: np.ndarray, lengths: np.ndarray, batch_size: int, seed: int,
                     window: int = BUCKET_BATCHES) -> list[np.ndarray]:
    """Length-bucketed training batches: ``order`` (the epoch's shuffled rows) in windows of
    ``window * batch_size`` rows, each window's rows sorted by ``lengths`` (per row of the
    source; stable) and cut into batches of ``batch_size``; the epoch's batches then come
    in an order shuffled by ``seed``.  Every row is in one batch; only the last window may
    leave a short batch."""
    batches = []
    span = window * batch_size
    for lo in range(0, len(order), span):
        rows = order[lo:lo + span]
        rows = rows[np.argsort(lengths[rows], kind="stable")]
        batches.extend(rows[s:s + batch_size] for s in range(0, len(rows), batch_size))
    perm = np.random.default_rng([seed, 29]).permutation(len(batches))
    return [batches[i] for i in perm]

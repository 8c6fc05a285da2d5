"""Counter-based random numbers keyed by (seed, stream, unit, counter).

Every draw in the world is a pure function of its key, computed with the
SplitMix64 finaliser (Steele, Lea & Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014).  Nothing depends on the order in which users, shards or
workers are processed, so the same seed gives the same bytes whatever the sharding,
and two counterfactual worlds that draw with the same keys share common random
numbers.  All functions are vectorised over numpy arrays of unit ids / counters.
"""

from __future__ import annotations

import hashlib

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLD = np.uint64(0x9E3779B97F4A7C15)
_TWO53 = float(2**53)


def stream_key(seed: int, stream: str) -> np.uint64:
    """A 64-bit key for a named stream of a seeded world (stable across runs/platforms)."""
    h = hashlib.blake2b(f"{int(seed)}/{stream}".encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(h, "little"))


def phase_stream(phase: str, stream: str) -> str:
    """The stream name of a behaviour stream in a simulation phase.  The campaign (and its
    counterfactual worlds, which share its draws on purpose) uses the plain name; the
    pre-period gets its own streams, so that its sessions, scenes and responses are
    independent of the campaign's although both count sessions and requests from 0."""
    return stream if phase == "campaign" else f"{phase}/{stream}"


_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser, in place on a fresh uint64 array (wrapping arithmetic)."""
    z ^= z >> _S30
    z *= _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


_MASK = (1 << 64) - 1
_M1_INT, _M2_INT, _GOLD_INT = int(_M1), int(_M2), int(_GOLD)


def _mix_int(z: int) -> int:
    z = ((z ^ (z >> 30)) * _M1_INT) & _MASK
    z = ((z ^ (z >> 27)) * _M2_INT) & _MASK
    return z ^ (z >> 31)


def _bits_int(key: int, unit: int, counter: int) -> int:
    """:func:`bits` for one Python-int (unit, counter): the same arithmetic modulo 2**64,
    without numpy's per-call overhead (the simulation loop draws many scalars)."""
    z = _mix_int(key ^ ((unit & _MASK) * _GOLD_INT & _MASK))
    return _mix_int((z + ((counter + 1) & _MASK) * _GOLD_INT) & _MASK)


def _scalar(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def _hash(key, u: np.ndarray, c: np.ndarray) -> np.ndarray:
    """The two SplitMix64 rounds over (key, unit, counter) uint64 arrays (broadcast)."""
    return _mix(_mix(key ^ (u * _GOLD)) + (c + np.uint64(1)) * _GOLD)


def _to_uniform(b: np.ndarray) -> np.ndarray:
    return ((b >> np.uint64(11)).astype(np.float64) + 0.5) / _TWO53


def _u64(x) -> np.ndarray:
    """At least one dimension: numpy scalars warn on wrap-around, arrays wrap silently."""
    return np.atleast_1d(np.asarray(x, dtype=np.int64)).astype(np.uint64)


def bits(key: np.uint64, unit, counter=0) -> np.ndarray:
    """64 random bits per (unit, counter) pair (broadcast)."""
    z = _hash(key, _u64(unit), _u64(counter))
    return z[0] if np.ndim(unit) == 0 and np.ndim(counter) == 0 else z


def uniform(key: np.uint64, unit, counter=0) -> np.ndarray:
    """Uniform(0, 1), never exactly 0 or 1.  Scalar (unit, counter) give a numpy float64
    scalar, bit-identical to the vectorised result."""
    if _scalar(unit) and _scalar(counter):
        return np.float64(((_bits_int(int(key), int(unit), int(counter)) >> 11) + 0.5) / _TWO53)
    return _to_uniform(bits(key, unit, counter))


def uniforms(keys, unit, counters) -> np.ndarray:
    """Draws of several streams in one pass: ``out[s] == uniform(keys[s], unit,
    counters[s])`` (bit-identical), stacked on a new first axis.  The per-call overhead
    of small arrays dominates the simulation's response draws; this pays it once."""
    k = np.array([int(x) for x in keys], np.uint64)
    c = np.stack(np.broadcast_arrays(*[np.asarray(x, np.int64) for x in counters])).astype(np.uint64)
    u = _u64(unit)
    k = k.reshape((len(k),) + (1,) * max(c.ndim - 1, u.ndim))
    return _to_uniform(_hash(k, u[None], c))


def box_muller(u1: np.ndarray, u2: np.ndarray) -> np.ndarray:
    return np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)


def normal(key: np.uint64, unit, counter=0) -> np.ndarray:
    """Standard normal via Box-Muller on two counter-derived uniforms."""
    c = np.asarray(counter, dtype=np.int64) * 2
    u1 = uniform(key, unit, c)
    u2 = uniform(key, unit, c + 1)
    return box_muller(u1, u2)


def exponential(key: np.uint64, unit, counter=0) -> np.ndarray:
    return -np.log(uniform(key, unit, counter))


def integers(key: np.uint64, unit, counter, n) -> np.ndarray:
    """Uniform integers in [0, n) (n may be an array)."""
    return scale(uniform(key, unit, counter), n)


def scale(u: np.ndarray, n) -> np.ndarray:
    """Uniforms ``u`` to integers in [0, n), as :func:`integers` does."""
    return np.minimum((u * np.asarray(n)).astype(np.int64), np.asarray(n) - 1)


def generator(seed: int, stream: str, unit: int) -> np.random.Generator:
    """A numpy Generator for one unit of one stream, for bulk draws (e.g. one user's
    2,000-event lifelong history).  Independent of every other unit."""
    k = int(stream_key(seed, stream))
    return np.random.Generator(np.random.Philox(key=[k, int(unit) & 0xFFFFFFFFFFFFFFFF]))

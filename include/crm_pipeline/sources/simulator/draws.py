"""Counter-based random draws: every number the simulator uses is a hash of ``(seed, purpose, index, j)``.

A seeded ``random.Random`` per record cost more than PostgreSQL's whole COPY of the record (a SHA-512 and an
``init_by_array`` per seeding, several seedings per record). A hash of a counter needs no state, so the draws of a
million entities are a few numpy operations over an index array, and entity ``i``'s draws are the same whether it
is computed alone (a test, a small incremental window) or inside a block of a first sync at scale L.

The mixer is splitmix64's finaliser, applied twice; ``purpose`` is any tuple of names, hashed once with BLAKE2b.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_J_STEP = np.uint64(0xD1B54A32D192ED03)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_UNIT = 2.0**-53


def _mix(x: U64) -> U64:
    x = (x ^ (x >> _S30)) * _M1
    x = (x ^ (x >> _S27)) * _M2
    return x ^ (x >> _S31)


@lru_cache(maxsize=4096)
def purpose_key(seed: int, parts: tuple[object, ...]) -> np.uint64:
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return np.uint64(int.from_bytes(digest, "little"))


class Draws:
    """The draws of one simulated company (one seed). ``index`` is an int64 array of entity indices; ``j`` (a
    scalar or an array of the same shape) numbers repeated draws of one purpose for the same entity."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def bits(self, index: Ints, *purpose: object, j: int | Ints = 0) -> U64:
        key = purpose_key(self.seed, purpose)
        with np.errstate(over="ignore"):
            counter = key + index.astype(np.uint64) * _GOLDEN + np.asarray(j).astype(np.uint64) * _J_STEP
            return _mix(_mix(counter))

    def uniform(self, index: Ints, *purpose: object, j: int | Ints = 0) -> Floats:
        """Uniform in ``[0, 1)`` with 53 random bits."""
        return (self.bits(index, *purpose, j=j) >> _S11).astype(np.float64) * _UNIT

    def below(self, index: Ints, n: int | Ints, *purpose: object, j: int | Ints = 0) -> Ints:
        """Uniform integers in ``[0, n)``; ``n`` may differ per entity."""
        drawn = np.floor(self.uniform(index, *purpose, j=j) * n).astype(np.int64)
        return np.minimum(drawn, np.asarray(n, dtype=np.int64) - 1)

    def between(self, index: Ints, low: int, high: int, *purpose: object, j: int | Ints = 0) -> Ints:
        """Uniform integers in ``[low, high)``, as ``random.randrange(low, high)``."""
        return low + self.below(index, high - low, *purpose, j=j)

    def choice(self, index: Ints, options: tuple[object, ...], *purpose: object) -> npt.NDArray[np.object_]:
        table = np.empty(len(options), dtype=object)
        table[:] = options
        return table[self.below(index, len(options), *purpose)]

    def lognormal(self, index: Ints, mu: float, sigma: float, *purpose: object) -> Floats:
        """Box-Muller from two draws: ``exp(mu + sigma * z)``."""
        u1 = 1.0 - self.uniform(index, *purpose, j=0)  # (0, 1]: log is finite
        u2 = self.uniform(index, *purpose, j=1)
        z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
        return np.exp(mu + sigma * z)


def indices(values: object) -> Ints:
    """An int64 index array from an int, a range or a sequence."""
    if isinstance(values, range):
        return np.arange(values.start, values.stop, values.step, dtype=np.int64)
    return np.atleast_1d(np.asarray(values, dtype=np.int64))

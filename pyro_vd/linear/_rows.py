r"""
Sums over the rows of a design, block by block: what a fit that re-weights every row at every step
(:class:`~pyro_vd.linear.VDClassifier`'s Newton solver) asks of its data.

A fit asks for :math:`\sum_{\text{blocks}} f(X_b, X_b^{\circ 2}, t_b, \dots)` of a function ``f`` of one
block of rows (its active columns, their squares and its targets) returning a tuple of numbers and
arrays; the tuple of sums comes back. :class:`InMemoryRows` walks an in-memory X in small blocks, so that
a block's temporaries (rows × quadrature points, a weighted copy of the block) stay in the core's cache
instead of costing a pass over memory each. As in :mod:`pyro_vd.linear._gram`, the blocks form a fixed
number of parts, each summed in order and the parts summed in order, run on the available cores with
BLAS at one thread (:mod:`pyro_vd.linear._threads`): the sums do not depend on the number of threads.
:mod:`pyro_vd.linear.dask` gives the same interface over a Dask array, each block summed where it lives.
"""

import numpy as np

from ._threads import map_parts, parallel_threads

#: Bytes of X per block of rows at most (its squares and temporaries of the same size come on top).
BLOCK_BYTES = 1 << 20
#: At least this many rows a block (fewer cost more in Python than in arithmetic).
MIN_BLOCK_ROWS = 64
#: At most this many parts, and at most this many bytes of partial sums (a few d × d arrays a part).
MAX_PARTS = 8
PART_BYTES = 1 << 26
#: X with fewer elements is summed in one part, in the calling thread.
SERIAL_ELEMENTS = 1 << 18


def add_parts(total, part):
    """The elementwise sum of two tuples of numbers and arrays (``total``'s arrays updated in place)."""
    if total is None:
        return tuple(np.array(p, dtype=np.float64) if np.ndim(p) else float(p) for p in part)
    return tuple(_add(a, b) for a, b in zip(total, part, strict=True))


def _add(a, b):
    if np.ndim(a):
        a += b
        return a
    return a + float(b)


class InMemoryRows:
    """
    The rows of an in-memory ``X`` (n × d, float64) with targets ``t`` (n,). The active columns and their
    squares are copied once per active set, not at every sum; the two latest sets are kept (a search that
    alternates a model's columns with all of them copies neither again).
    ``max_block_rows`` caps the rows of a block (the Newton solver keeps rows × quadrature points under
    torch's serial grain, so that its elementwise kernels do not start threads of their own);
    ``squares=False`` passes None for the squares (a fit that does not read them: RVC's IRLS).
    """

    def __init__(self, X, t, *, max_block_rows=None, n_threads=None, squares=True):
        self.X, self.t = X, t
        self.n_samples = len(t)
        rows = max(MIN_BLOCK_ROWS, BLOCK_BYTES // (8 * max(X.shape[1], 1)))
        if max_block_rows is not None:
            rows = min(rows, max(1, int(max_block_rows)))
        self.block_rows = int(max(1, min(rows, self.n_samples)))
        self.n_threads, self.squares = n_threads, squares
        self._cache = {}  # active mask's bytes -> (X, X²), the two latest

    def _columns(self, active):
        key = np.asarray(active, dtype=bool).tobytes()
        if key not in self._cache:
            X = self.X if active.all() else np.ascontiguousarray(self.X[:, active])
            if len(self._cache) >= 2:
                del self._cache[next(iter(self._cache))]
            self._cache[key] = (X, X * X if self.squares else None)
        else:  # the latest last
            self._cache[key] = self._cache.pop(key)
        return self._cache[key]

    def take(self, index):
        """The rows ``index`` (an integer array), with the same options."""
        return InMemoryRows(
            np.ascontiguousarray(self.X[index]),
            self.t[index],
            max_block_rows=self.block_rows,
            n_threads=self.n_threads,
            squares=self.squares,
        )

    def folds(self, k):
        """``k`` pairs (rows out of fold f, rows of fold f), fold f the rows i ≡ f (mod k); None where
        there are fewer than k rows."""
        if self.n_samples < k:
            return None
        fold = np.arange(self.n_samples) % k
        return [
            (self.take(np.flatnonzero(fold != f)), self.take(np.flatnonzero(fold == f))) for f in range(k)
        ]

    def sum(self, function, active, *args):
        r""":math:`\sum_b` ``function(X_b, X2_b, t_b, *args)`` over the blocks of rows, X restricted to the
        ``active`` columns (a boolean mask)."""
        X, X2 = self._columns(active)
        n, k = self.n_samples, X.shape[1]
        rows = self.block_rows
        n_blocks = -(-n // rows)
        if n * k < SERIAL_ELEMENTS:
            n_parts = 1
        else:
            n_parts = int(min(MAX_PARTS, n_blocks, max(1, PART_BYTES // (8 * 4 * (k + 1) ** 2))))
        bounds = [part * n_blocks // n_parts for part in range(n_parts + 1)]

        def part_sum(part, workspace):
            total = None
            for block in range(bounds[part], bounds[part + 1]):
                r = slice(block * rows, min(n, (block + 1) * rows))
                total = add_parts(total, function(X[r], None if X2 is None else X2[r], self.t[r], *args))
            return total

        n_threads = self.n_threads
        if n_threads is None:
            n_threads = 1 if n_parts == 1 else parallel_threads(n_parts)
        total = None
        for part in map_parts(part_sum, n_parts, n_threads):
            total = add_parts(total, part)
        return total

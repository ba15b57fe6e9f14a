r"""
The sufficient statistics of a linear-Gaussian fit in one pass over the rows.

With a shift :math:`c` per column and :math:`c_y` for the target, and
:math:`Z = [X - \mathbf 1 c^\top,\; \mathbf 1,\; y - c_y\mathbf 1]` (n × (d + 2)), one symmetric rank-k
product holds all of them:

.. math::

    Z^\top Z = \begin{pmatrix} S_{xx} & s_x & S_{xy} \\ s_x^\top & n & s_y \\
    S_{xy}^\top & s_y & S_{yy} \end{pmatrix},\qquad
    \begin{aligned} S_{xx} &= \textstyle\sum_n (x_n - c)(x_n - c)^\top, & s_x &= \textstyle\sum_n (x_n - c),
    \\ S_{xy} &= \textstyle\sum_n (x_n - c)(y_n - c_y), & s_y &= \textstyle\sum_n (y_n - c_y),\quad
    S_{yy} = \textstyle\sum_n (y_n - c_y)^2. \end{aligned}

The centred products then follow as :math:`\sum_n (x_n - \bar x)(x_n - \bar x)^\top = S_{xx} - s_x
s_x^\top / n` with a rounding error of about :math:`\varepsilon\, n\, |\bar x - c|^2`, where the plain
:math:`X^\top X - n\bar x\bar x^\top` errs by :math:`\varepsilon\, n\, \bar x^2`: with :math:`c` the mean of
the first rows, a column of offset 10⁸ and spread 1 keeps its digits (the plain form loses them all).

The rows go through a buffer in blocks of about 2 MiB, so X is read from memory once and the shift, the
column of ones and y cost no pass of their own; :math:`Z^\top Z` of a block is numpy's ``Z.T @ Z``, a
BLAS ``syrk`` (numpy picks it for a product of an array with its own transpose). The blocks form a
fixed number of parts, each summed in order and the parts summed in order, run on the available cores
with BLAS at one thread (:mod:`pyro_vd.linear._threads`): the result does not depend on the number of
threads.
"""

import numpy as np

from ._threads import map_parts, parallel_threads

#: Bytes of a block of rows of Z (it stays in the core's cache between the shift and the product).
_BLOCK_BYTES = 2**21
#: At least this many rows a block (a product of fewer rows costs more to add up than to compute).
_MIN_BLOCK_ROWS = 256
#: At most this many parts, and at most this many bytes of (d + 2)² partial sums.
_MAX_PARTS = 8
_PART_BYTES = 2**26
#: X with fewer elements is reduced in one part, in the calling thread.
_SERIAL_ELEMENTS = 2**18


def block_rows(n_samples, n_features):
    """The rows of X per block: about 2 MiB of Z, at least 256 rows, at most ``n_samples``."""
    return int(min(n_samples, max(_MIN_BLOCK_ROWS, _BLOCK_BYTES // (8 * (n_features + 2)))))


def row_statistics(X, y, *, shift=None, y_shift=None, n_threads=None):
    r"""
    :math:`S_{xx}, s_x, S_{xy}, s_y, S_{yy}` and n of ``X`` (n × d, float64) and ``y`` (n,) about the
    shifts :math:`c` and :math:`c_y` (module docstring), from one pass over the rows.

    :param X: float64 array; C- or F-ordered, or a strided view (nothing is copied whole).
    :param y: float64 array of n values.
    :param shift: :math:`c`, shape (d,); default the mean of the first block of rows (near every column's
        mean, so that the centred products lose no digits).
    :param y_shift: :math:`c_y`; default the mean of the first block of y.
    :param n_threads: threads to use; default one per available core (see
        :func:`~pyro_vd.linear._threads.parallel_threads`). The result is the same for any number (with
        threadpoolctl installed, which holds BLAS to one thread meanwhile).
    :returns: dict with ``n``, ``shift``, ``y_shift``, ``sx``, ``xx``, ``sy``, ``xy``, ``yy`` (the sums as
        numpy arrays or floats; not checked for overflow: a NaN or inf in X or y, or a square too large for
        float64, makes them not finite).
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be 2-D and y of its rows; got shapes {X.shape} and {y.shape}")
    if X.dtype != np.float64 or y.dtype != np.float64:
        raise TypeError(f"X and y must be float64; got {X.dtype} and {y.dtype}")
    n, d = X.shape
    if n < 1 or d < 1:
        raise ValueError(f"X must have at least one row and one column; got shape {X.shape}")
    rows = block_rows(n, d)
    with np.errstate(over="ignore", invalid="ignore"):
        shift = X[:rows].mean(0) if shift is None else np.asarray(shift, dtype=np.float64)
        y_shift = float(y[:rows].mean()) if y_shift is None else float(y_shift)
    if shift.shape != (d,):
        raise ValueError(f"shift must have shape ({d},); got {shift.shape}")
    n_blocks = -(-n // rows)
    if n * d < _SERIAL_ELEMENTS:
        n_parts = 1
    else:
        n_parts = int(min(_MAX_PARTS, n_blocks, max(1, _PART_BYTES // (8 * (d + 2) ** 2))))
    bounds = [part * n_blocks // n_parts for part in range(n_parts + 1)]

    def part_sum(part, workspace):
        z = workspace.get("z")
        if z is None or z.shape != (rows, d + 2):
            z = workspace["z"] = np.empty((rows, d + 2))
            z[:, d] = 1.0
        total = None
        with np.errstate(over="ignore", invalid="ignore"):  # per thread: numpy's error state is
            for block in range(bounds[part], bounds[part + 1]):
                start = block * rows
                size = min(rows, n - start)
                zb = z[:size]  # the leading rows of a C-ordered buffer: zb.T @ zb is one syrk
                np.subtract(X[start : start + size], shift, out=zb[:, :d])
                np.subtract(y[start : start + size], y_shift, out=zb[:, d + 1])
                gram = zb.T @ zb
                if total is None:
                    total = gram
                else:
                    total += gram
        return total

    if n_threads is None:
        n_threads = 1 if n_parts == 1 else parallel_threads(n_parts)
    with np.errstate(over="ignore", invalid="ignore"):
        parts = map_parts(part_sum, n_parts, n_threads)
        total = parts[0]
        for part in parts[1:]:
            total += part
    return {
        "n": n,
        "shift": shift,
        "y_shift": y_shift,
        "sx": total[:d, d].copy(),
        "xx": np.ascontiguousarray(total[:d, :d]),
        "sy": float(total[d, d + 1]),
        "xy": total[:d, d + 1].copy(),
        "yy": float(total[d + 1, d + 1]),
    }


__all__ = ["block_rows", "row_statistics"]

r"""
The thread pools of the linear fits, set deliberately.

A fit calls into pools that each size themselves to the machine: OpenBLAS's (numpy's and scipy's BLAS
and LAPACK; torch's OpenMP pool serves the α updates, too small to be split). OpenBLAS's threads
busy-wait for each other inside a call and spin for a while after it, so on a machine with few cores any
other busy thread (another pool's, another process's) turns its multi-threaded calls into waits. Measured
on two cores (``benchmarks/linear_speed.py``): RVR on the 1000 × 1000 ARD table takes 14.5 s with BLAS
on one thread and 24.4 s with OpenBLAS on both, on an otherwise idle machine; with another process
busy, 12–13 s against 33 s to several minutes. And OpenBLAS does not split a product over its long
inner dimension: XᵀX of a tall X (n × d, n ≫ d) runs no faster on two threads than on one.

So the fits hold BLAS to one thread (:func:`single_threaded_blas`) and use the cores themselves where
there is work to split: the rows of the one pass over X (:func:`map_parts`). The parts of a pass are
fixed by the data's shape, not by the number of threads, and summed in order, so the numbers do not
depend on how many threads there are; against BLAS on several threads of its own they differ in the
last digits only (OpenBLAS splits a product's sums differently then).

BLAS is limited through ``threadpoolctl`` (a dependency, imported at the first fit); should it be missing,
the pools are left as they are and the passes run in the calling thread.
"""

import concurrent.futures
import contextlib
import os
import threading

_controller = None  # threadpoolctl's view of the loaded BLAS libraries (False: threadpoolctl missing)
_managed = True  # False inside pools_as_found()


def available_cores():
    """The cores this process may run on (its CPU affinity where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _blas_controller():
    """threadpoolctl's controller of the BLAS libraries, found once (they are loaded with numpy and
    scipy, which this package imports first), or None without threadpoolctl."""
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:  # pragma: no cover - exercised by the fallback test with the import blocked
            _controller = False
        else:
            _controller = ThreadpoolController().select(user_api="blas")
    return _controller or None


def can_limit_blas():
    """Whether :func:`single_threaded_blas` can hold BLAS to one thread (threadpoolctl is installed)."""
    return _blas_controller() is not None


@contextlib.contextmanager
def single_threaded_blas():
    """
    numpy's and scipy's BLAS held to one thread inside the block, the previous numbers of threads restored
    after it (also on an exception; blocks nest). Yields whether BLAS is limited: False without
    threadpoolctl, and nothing changes then.

    BLAS's setting is process-wide. threadpoolctl lets one thread at a time control an OpenBLAS built with
    its own threads (the first that sets it, while it lives); in other threads the block changes nothing,
    so fits running in several threads at once never leave a limit behind.
    """
    controller = _blas_controller() if _managed else None
    if controller is None:
        yield False
        return
    with controller.limit(limits=1):
        yield True


def parallel_threads(n_parts):
    """
    The threads to run ``n_parts`` independent parts of a pass on: one per available core, at most one
    per part; 1 when BLAS cannot be held to one thread (threads would then share BLAS's own pool) or when
    called from a thread other than the main one (a Dask worker or a thread pool already runs fits in
    parallel: more threads would only oversubscribe the cores).
    """
    if n_parts < 2 or not _managed or threading.current_thread() is not threading.main_thread():
        return 1
    if not can_limit_blas():
        return 1
    return max(1, min(available_cores(), n_parts))


@contextlib.contextmanager
def pools_as_found():
    """
    Inside the block the fits leave the thread pools as they find them: no BLAS limit, passes in the
    calling thread (what the fits did before they set the pools). For measuring what setting them buys
    (``benchmarks/linear_speed.py``); the numbers fitted are the same.
    """
    global _managed
    previous, _managed = _managed, False
    try:
        yield
    finally:
        _managed = previous


def map_parts(function, n_parts, n_threads):
    """
    ``[function(part, workspace) for part in range(n_parts)]`` on ``n_threads`` threads, each taking the
    next part when it is free (so a core that another process holds simply does fewer parts), with BLAS
    held to one thread. ``workspace`` is a dict private to the thread that runs the part (for buffers to
    reuse). The results come back in the order of the parts, whatever thread computed them.
    """
    if n_threads <= 1:
        workspace = {}
        with single_threaded_blas():
            return [function(part, workspace) for part in range(n_parts)]
    local = threading.local()

    def run(part):
        if not hasattr(local, "workspace"):
            local.workspace = {}
        return function(part, local.workspace)

    with single_threaded_blas(), concurrent.futures.ThreadPoolExecutor(max_workers=n_threads) as pool:
        return list(pool.map(run, range(n_parts)))


__all__ = [
    "available_cores",
    "can_limit_blas",
    "map_parts",
    "parallel_threads",
    "pools_as_found",
    "single_threaded_blas",
]

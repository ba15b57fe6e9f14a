import threading

import numpy as np
import pytest

from pyro_vd.linear import RVR, GKLRegression, VDRegression, _threads
from pyro_vd.linear._gram import row_statistics

threadpoolctl = pytest.importorskip("threadpoolctl")


def _blas_threads():
    """{library path: threads} of every BLAS loaded (numpy's and scipy's OpenBLAS here)."""
    return {
        info["filepath"]: info["num_threads"]
        for info in threadpoolctl.threadpool_info()
        if info["user_api"] == "blas"
    }


def _data(n=200, d=8, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return X, X[:, 0] - 2 * X[:, 1] + 0.3 * rng.normal(size=n)


@pytest.fixture
def two_blas_threads():
    """BLAS on two threads for the test (whatever OMP_NUM_THREADS the suite runs under), restored after."""
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        yield _blas_threads()


def test_single_threaded_blas_limits_and_restores(two_blas_threads):
    assert set(two_blas_threads.values()) == {2}
    with _threads.single_threaded_blas() as limited:
        assert limited and set(_blas_threads().values()) == {1}
        with _threads.single_threaded_blas():  # nested: still one, and the outer block still holds it
            assert set(_blas_threads().values()) == {1}
        assert set(_blas_threads().values()) == {1}
    assert _blas_threads() == two_blas_threads
    with pytest.raises(RuntimeError), _threads.single_threaded_blas():
        raise RuntimeError("restored on the way out of an exception too")
    assert _blas_threads() == two_blas_threads


def test_blocks_in_other_threads_leave_the_setting_as_it_was(two_blas_threads):
    """Fits in other threads while the main thread controls BLAS (threadpoolctl lets one thread control
    OpenBLAS's pool): whatever they could set, nothing is left changed."""
    X, y = _data(n=3000, d=100)

    def fit():
        with _threads.single_threaded_blas():
            VDRegression().fit(X, y)

    workers = [threading.Thread(target=fit) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert _blas_threads() == two_blas_threads


@pytest.mark.parametrize("estimator", [VDRegression, RVR, GKLRegression], ids=lambda e: e.__name__)
def test_fits_restore_blas_threads(estimator, two_blas_threads):
    X, y = _data()
    estimator().fit(X, y)
    assert _blas_threads() == two_blas_threads
    with pytest.raises(ValueError):
        estimator().fit(X, y[:-1])  # refused inside the block
    assert _blas_threads() == two_blas_threads


@pytest.mark.parametrize("estimator", [VDRegression, RVR], ids=lambda e: e.__name__)
def test_the_pools_do_not_change_the_fit(estimator):
    """The fit with the pools set (BLAS on one thread, the row pass on every core) against the pools as
    found: the same numbers."""
    X, y = _data(n=3000, d=100, seed=1)  # above the size the row pass splits into parts
    managed = estimator().fit(X, y)
    with _threads.pools_as_found():
        assert _threads.parallel_threads(8) == 1
        found = estimator().fit(X, y)
    np.testing.assert_array_equal(managed.relevance_, found.relevance_)
    np.testing.assert_allclose(managed.coef_, found.coef_, rtol=1e-12, atol=1e-15)


def test_without_threadpoolctl_nothing_is_limited(monkeypatch, two_blas_threads):
    monkeypatch.setattr(_threads, "_controller", False)  # as if threadpoolctl were not installed
    assert not _threads.can_limit_blas() and _threads.parallel_threads(8) == 1
    with _threads.single_threaded_blas() as limited:
        assert not limited and _blas_threads() == two_blas_threads
    X, y = _data(n=3000, d=100, seed=2)
    stats = row_statistics(X, y)  # in the calling thread, with BLAS's own two threads
    monkeypatch.undo()
    # the same up to rounding (OpenBLAS splits a product's sums differently on two threads)
    np.testing.assert_allclose(stats["xx"], row_statistics(X, y)["xx"], rtol=1e-13, atol=1e-12)


def test_map_parts_keeps_the_order_of_the_parts():
    def part(index, workspace):
        workspace["calls"] = workspace.get("calls", 0) + 1  # private to the thread that runs it
        return index**2

    assert _threads.map_parts(part, 20, 3) == [i**2 for i in range(20)]
    assert _threads.map_parts(part, 5, 1) == [0, 1, 4, 9, 16]


def test_parallel_threads_outside_the_main_thread_is_one():
    found = []
    worker = threading.Thread(target=lambda: found.append(_threads.parallel_threads(8)))
    worker.start()
    worker.join()
    assert found == [1]
    assert 1 <= _threads.parallel_threads(8) <= min(8, _threads.available_cores())

"""The linear regressors on Dask arrays: statistics on a local cluster, the same fit as in memory."""

import functools
import pathlib
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from pyro_vd.linear import RVC, RVR, GKLClassifier, GKLRegression, VDClassifier, VDRegression
from pyro_vd.linear._convergence import ConvergenceWarning

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("dask.distributed")

README = pathlib.Path(__file__).resolve().parents[2] / "README.md"

#: (estimator, its prior-precision attribute)
REGRESSORS = [(VDRegression, "log_alpha_"), (RVR, "alpha_"), (GKLRegression, "alpha_")]


@pytest.fixture(scope="module")
def client():
    with (  # the dashboard on a free port: a cluster already running on the machine holds 8787
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def data():
    """1000 × 8, three relevant features, columns of different scales and non-zero means."""
    rng = np.random.default_rng(0)
    scale = np.array([1.0, 3.0, 0.5, 2.0, 1.0, 0.25, 4.0, 1.0])
    X = rng.normal(size=(1000, 8)) * scale + rng.normal(size=8)
    y = X[:, :3] @ np.array([1.5, -0.5, 2.0]) + 0.7 + 0.5 * rng.normal(size=1000)
    return X, y


def _assert_close(actual, expected):
    """Relative agreement to 1e-8, elementwise (pruned weights exactly 0 and α = ∞ on both sides)."""
    np.testing.assert_allclose(actual, expected, rtol=1e-8, atol=0.0)


@pytest.fixture
def observed_computes(monkeypatch):
    """Every result ``dask.compute`` brings to the client, with rows refused outright: a Dask array
    turned into NumPy on the client is an AssertionError."""
    import dask

    results = []
    compute = dask.compute

    def recording_compute(*args, **kwargs):
        out = compute(*args, **kwargs)
        results.append(out)
        return out

    def refuse(self, *args, **kwargs):
        raise AssertionError("a Dask array was brought into client memory")

    monkeypatch.setattr(dask, "compute", recording_compute)
    monkeypatch.setattr(da.Array, "__array__", refuse)
    return results


def _nbytes(value):
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_nbytes(v) for v in value)
    return np.asarray(value).nbytes


@pytest.mark.parametrize("fit_intercept", [True, False], ids=["intercept", "no-intercept"])
@pytest.mark.parametrize(("estimator", "alpha_name"), REGRESSORS, ids=lambda v: getattr(v, "__name__", v))
def test_dask_fit_matches_in_memory(client, data, estimator, alpha_name, fit_intercept):
    X, y = data
    expected = estimator(fit_intercept=fit_intercept).fit(X, y)
    X_dask, y_dask = da.from_array(X, chunks=(150, 3)), da.from_array(y, chunks=200)
    fitted = estimator(fit_intercept=fit_intercept).fit(X_dask, y_dask)
    for name in ("coef_", alpha_name):
        _assert_close(getattr(fitted, name), getattr(expected, name))
    if fit_intercept:
        _assert_close(fitted.intercept_, expected.intercept_)
    else:
        assert fitted.intercept_ == expected.intercept_ == 0.0
    assert fitted.relevance_.tolist() == expected.relevance_.tolist()
    assert fitted.n_features_in_ == 8

    mean, std = fitted.predict(X_dask, return_std=True)
    prediction = fitted.predict(X_dask)
    assert all(isinstance(p, da.Array) for p in (mean, std, prediction))
    assert prediction.chunks == (X_dask.chunks[0],)
    expected_mean, expected_std = expected.predict(X, return_std=True)
    _assert_close(prediction.compute(), expected_mean)
    _assert_close(mean.compute(), expected_mean)
    _assert_close(std.compute(), expected_std)


@pytest.mark.parametrize(("estimator", "alpha_name"), REGRESSORS, ids=lambda v: getattr(v, "__name__", v))
def test_dask_fits_of_offset_columns_and_y_keep_the_relevant_set(client, data, estimator, alpha_name):
    """The units come from the merged statistics as fitted (centred): an offset of 1e7 on a relevant
    column, 1e8 on y, pruned it (RVR on Dask: relevance [1 0 0 0 ...])."""
    X, y = data
    reference = estimator().fit(X, y)
    shift = np.zeros(8)
    shift[1] = 1e7
    X_shifted, y_shifted = X + shift, y + 1e8
    fitted = estimator().fit(da.from_array(X_shifted, chunks=(150, 3)), da.from_array(y_shifted, chunks=200))
    expected = estimator().fit(X_shifted, y_shifted)
    assert fitted.relevance_.tolist() == expected.relevance_.tolist() == reference.relevance_.tolist()
    np.testing.assert_allclose(fitted.coef_, expected.coef_, rtol=1e-6)
    np.testing.assert_allclose(fitted.coef_, reference.coef_, rtol=1e-4, atol=1e-6)


def test_rows_never_reach_the_client(client, observed_computes):
    rng = da.random.default_rng(0)
    X = rng.normal(size=(40_000, 10), chunks=(5_000, 10))  # generated on the workers
    y = X[:, 0] - X[:, 1] + rng.normal(size=40_000, chunks=5_000)
    for estimator, _ in REGRESSORS:
        estimator().fit(X, y)
    assert len(observed_computes) == 3  # one pass over the rows per fit
    # each pass returns statistics of size O(d²) (d = 10): a few kB, where the rows are 3.2 MB
    assert max(_nbytes(result) for result in observed_computes) < 8 * 4 * 11**2


def test_numpy_target_and_partial_fit(client, data):
    X, y = data
    X_dask = da.from_array(X, chunks=(250, 8))
    whole = VDRegression().fit(X, y)
    chunked = VDRegression().partial_fit(X_dask[:500], y[:500]).partial_fit(X[500:], y[500:])
    _assert_close(chunked.coef_, whole.coef_)
    _assert_close(chunked.log_alpha_, whole.log_alpha_)


def test_dask_input_is_checked(client, data):
    X, y = data
    X_dask = da.from_array(X, chunks=(250, 8))
    with pytest.raises(ValueError, match="NaN or infinity"):
        RVR().fit(da.from_array(np.where(X > 2.5, np.nan, X), chunks=(250, 8)), y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        VDRegression().fit(X_dask, y[:-1])
    with pytest.raises(ValueError, match="expecting 8 features"):
        VDRegression().fit(X, y).predict(X_dask[:, :5])


@pytest.fixture(scope="module")
def labels():
    """600 × 6, columns of different scales and offsets, two relevant features; 3 classes."""
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(600, 6))
    X = Z * np.array([1.0, 5.0, 0.2, 1.0, 3.0, 1.0]) + rng.normal(size=6) * 4
    scores = np.column_stack([2.0 * Z[:, 0] - Z[:, 1], 2.0 * Z[:, 1], np.zeros(600)])
    classes = np.argmax(scores + rng.gumbel(size=(600, 3)), axis=1)
    return X, classes


def test_vd_classifier_newton_on_dask_matches_in_memory(client, labels):
    """The same Newton iteration, its rows summed in other blocks and its units reduced by Chan's merge:
    rounding differs. Measured: the coefficients differ by 3.5e-14 of the largest, the log α of the kept
    features by 1.8e-13 relative; the bounds leave 10 000× room, and a block of rows dropped or counted
    twice (a fifth of the data) moves them by far more. (With the Hessian in single precision, tried and
    reverted, such differences could send the non-concave fit to another local optimum.)"""
    X, classes = labels
    y = (classes == 1).astype(int)
    expected = VDClassifier(solver="newton").fit(X, y)
    X_dask, y_dask = da.from_array(X, chunks=(130, 4)), da.from_array(y, chunks=170)
    fitted = VDClassifier(solver="newton").fit(X_dask, y_dask)
    assert fitted.classes_.tolist() == expected.classes_.tolist()
    assert fitted.relevance_.tolist() == expected.relevance_.tolist()
    scale = np.abs(expected.coef_).max()
    np.testing.assert_allclose(fitted.coef_, expected.coef_, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(fitted.intercept_, expected.intercept_, rtol=0, atol=1e-9 * scale)
    # log α of a feature on its way to ∞ moves along a flat ridge (KL ≈ e^{-log α}/2) and stops where the
    # ELBO's gain runs out, which rounding shifts (by 0.03 at log α = 17 here); the others agree
    kept = expected.log_alpha_ <= 5.0
    np.testing.assert_allclose(fitted.log_alpha_[kept], expected.log_alpha_[kept], rtol=1e-9)
    assert (fitted.log_alpha_[~kept] > 5.0).all()
    proba = fitted.predict_proba(X_dask)
    labels_out = fitted.predict(X_dask)
    assert isinstance(proba, da.Array) and isinstance(labels_out, da.Array)
    np.testing.assert_allclose(proba.compute(), expected.predict_proba(X), rtol=0, atol=1e-8)
    assert (labels_out.compute() == fitted.predict(X)).all()
    np.testing.assert_allclose(fitted.decision_function(X_dask).compute(), fitted.decision_function(X))


def test_rvc_on_dask_matches_in_memory(client, labels):
    """Measured: the coefficients agree with the in-memory fit's to 6e-16 relative, α to 6e-14, the
    evidence to 2e-16 (the same IRLS and evidence steps, rows summed in other blocks, the units by
    Chan's merge); the bounds leave a thousandfold room."""
    X, classes = labels
    y = (classes == 1).astype(int)
    expected = RVC().fit(X, y)
    fitted = RVC().fit(da.from_array(X, chunks=(130, 4)), da.from_array(y, chunks=170))
    assert fitted.relevance_.tolist() == expected.relevance_.tolist()
    assert (np.isfinite(fitted.alpha_) == np.isfinite(expected.alpha_)).all()
    np.testing.assert_allclose(fitted.coef_, expected.coef_, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(fitted.alpha_, expected.alpha_, rtol=1e-10)
    np.testing.assert_allclose(fitted.log_evidence_, expected.log_evidence_, rtol=1e-12)
    proba = fitted.predict_proba(da.from_array(X, chunks=(200, 6)))
    np.testing.assert_allclose(proba.compute(), expected.predict_proba(X), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("estimator", [RVC, VDClassifier], ids=lambda e: e.__name__)
def test_classifiers_on_dask_take_string_labels_as_in_memory(client, labels, estimator):
    """They were refused on Dask ('y must be real numbers') and taken in memory."""
    X, classes = labels
    y = np.where(classes == 1, "pos", "neg")
    expected = estimator().fit(X, y)
    fitted = estimator().fit(da.from_array(X, chunks=(130, 4)), da.from_array(y, chunks=170))
    assert fitted.classes_.tolist() == expected.classes_.tolist() == ["neg", "pos"]
    assert fitted.relevance_.tolist() == expected.relevance_.tolist()
    np.testing.assert_allclose(fitted.coef_, expected.coef_, rtol=1e-8, atol=1e-12)
    with pytest.raises(ValueError, match="y must have shape"):
        estimator().fit(da.from_array(X, chunks=(130, 4)), y[:-1])


def test_classifiers_on_dask_take_empty_blocks_big_integer_labels_and_refuse_nan(client):
    """Empty row blocks (as X[mask].compute_chunk_sizes() leaves) are skipped, not a raw numpy error;
    labels keep their dtype (as float64, 2**53 and 2**53 + 1 would be one class); NaN labels are named."""
    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] + 0.5 * rng.normal(size=300) > 0).astype(np.int64) + 2**53
    keep = (np.arange(300) < 100) | (np.arange(300) >= 200)
    X_dask = da.from_array(X, chunks=(100, 3))[da.from_array(keep, chunks=100)].compute_chunk_sizes()
    assert X_dask.chunks[0] == (100, 0, 100)
    X, y = X[keep], y[keep]
    expected = RVC().fit(X, y)
    fitted = RVC().fit(X_dask, da.from_array(y, chunks=100))
    assert fitted.classes_.dtype == np.int64 and fitted.classes_.tolist() == [2**53, 2**53 + 1]
    np.testing.assert_allclose(fitted.coef_, expected.coef_, rtol=1e-10)
    assert (fitted.predict(X_dask).compute() == expected.predict(X)).all()
    np.testing.assert_allclose(
        VDRegression().fit(X_dask, X[:, 1]).coef_, VDRegression().fit(X, X[:, 1]).coef_
    )
    with pytest.raises(ValueError, match="NaN or infinity"):
        RVC().fit(X_dask, np.where(np.arange(200) == 7, np.nan, 1.0 * (y - 2**53)))
    # labels of mixed types: a bare "'<' not supported" from Dask's unique
    with pytest.raises(TypeError, match="y mixes labels of types that cannot be ordered"):
        RVC().fit(X_dask, da.from_array(np.array(["a", 1] * 100, dtype=object), chunks=100))


def test_vd_classifier_one_vs_rest_on_dask(client, labels):
    X, classes = labels[0][:300, :3], labels[1][:300]
    expected = VDClassifier(solver="newton").fit(X, classes)
    fitted = VDClassifier(solver="newton").fit(da.from_array(X, chunks=(100, 3)), classes)
    assert fitted.classes_.tolist() == [0, 1, 2] and fitted.coef_.shape == (3, 3)
    assert fitted.relevance_.tolist() == expected.relevance_.tolist()
    proba = fitted.predict_proba(da.from_array(X, chunks=(100, 3))).compute()
    np.testing.assert_allclose(proba, expected.predict_proba(X), rtol=0, atol=1e-3)


@pytest.mark.parametrize("estimator", [VDClassifier, RVC], ids=lambda e: e.__name__)
def test_one_vs_rest_on_dask_names_the_class_of_each_warning(client, labels, estimator):
    X, classes = labels[0][:300, :3], labels[1][:300]
    with pytest.warns(ConvergenceWarning) as caught:
        estimator(max_iter=1).fit(da.from_array(X, chunks=(100, 3)), classes)
    named = sorted(str(w.message).rsplit("(class ", 1)[-1] for w in caught)
    assert named == [f"{c} against the rest)" for c in (0, 1, 2)]
    assert all(w.filename == __file__ for w in caught)


def test_classifiers_rows_never_reach_the_client(client, observed_computes):
    rng = da.random.default_rng(0)
    X = rng.normal(size=(20_000, 5), chunks=(4_000, 5))  # generated on the workers
    y = (X[:, 0] - X[:, 1] + rng.logistic(size=20_000, chunks=4_000) > 0).astype(int)
    model = VDClassifier(solver="newton", threshold="evidence").fit(X, y)
    assert model.relevance_.tolist() == [True, True, False, False, False]
    assert RVC().fit(X, y).relevance_.tolist() == [True, True, False, False, False]
    # every compute returns sums of size O(d²) (d = 5: 11 Newton parameters): the rows are 800 kB
    assert max(_nbytes(result) for result in observed_computes) < 8 * 4 * 12**2


@pytest.mark.parametrize("estimator", [GKLClassifier, VDClassifier], ids=lambda e: e.__name__)
def test_classifiers_that_cannot_fit_dask_say_so_without_computing_it(observed_computes, estimator):
    """G-KL RVC and VDClassifier's L-BFGS solver refuse a Dask array before any computation; any fitted
    classifier predicts one block by block."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] > 0).astype(int)
    make, expected_error = estimator, (TypeError, "Dask")
    if estimator is VDClassifier:
        make, expected_error = (
            functools.partial(VDClassifier, solver="lbfgs", threshold="sparse_vd"),
            (ValueError, "solver='newton'"),
        )
    with pytest.raises(expected_error[0], match=expected_error[1]):
        make().fit(da.from_array(X, chunks=100), y)
    assert observed_computes == []
    with warnings.catch_warnings():  # a short fit, only to have a fitted model for predict
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted = make(max_iter=5).fit(X, y)
    prediction = fitted.predict_proba(da.from_array(X, chunks=(70, 3)))
    assert isinstance(prediction, da.Array)
    np.testing.assert_allclose(prediction.compute(), fitted.predict_proba(X), rtol=1e-12)


def test_importing_the_package_does_not_import_dask():
    code = (
        "import sys, pyro_vd, pyro_vd.linear; "
        "assert not [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_readme_dask_example_runs(client):
    section = README.read_text().split("### Linear ARD on Dask", 1)[1]
    (block,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)
    namespace = {}
    exec(compile(block, str(README), "exec"), namespace)
    assert namespace["vd"].relevance_.tolist() == [True] * 3 + [False] * 17
    assert isinstance(namespace["y_hat"], da.Array)
    assert namespace["clf"].relevance_.tolist() == [True] * 3 + [False] * 17
    assert isinstance(namespace["proba"], da.Array) and namespace["proba"].shape == (1_000_000, 2)


def test_classifiers_on_dask_name_missing_labels(client):
    X = np.random.default_rng(0).normal(size=(60, 2))
    labels = (np.arange(60) % 2).astype(object)
    labels[0] = None
    for estimator in (VDClassifier(), RVC()):
        with pytest.raises(ValueError, match="Input y contains 1 missing labels"):
            estimator.fit(da.from_array(X, chunks=20), da.from_array(labels, chunks=20))


def test_dask_rows_fold_by_blocks():
    from pyro_vd.linear.dask import DaskRows

    Z = da.from_array(np.arange(40.0).reshape(20, 2), chunks=((3, 5, 4, 2, 6), 2))
    t = da.from_array(np.ones(20), chunks=((3, 5, 4, 2, 6),))
    folds = DaskRows(Z, t).folds(5)
    assert [held.n_samples for _, held in folds] == [3, 5, 4, 2, 6]
    assert all(training.n_samples + held.n_samples == 20 for training, held in folds)
    ones = lambda X, X2, t: (float(t.sum()),)  # noqa: E731
    assert [held.sum(ones, np.ones(2, dtype=bool))[0] for _, held in folds] == [3, 5, 4, 2, 6]
    assert DaskRows(Z[:8].rechunk((4, 2)), t[:8].rechunk(4)).folds(5) is None  # two blocks: no folds


def test_a_dask_partial_fit_keeps_the_feature_names_as_in_memory(client):
    """A Dask chunk after a fit on a data frame dropped feature_names_in_ without a word; predict on a
    data frame with its columns reordered then only warned and predicted for the wrong columns."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    y = X @ np.array([1.0, 2.0, -1.0])
    fit = VDRegression().fit(frame, y)
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        fit.partial_fit(da.from_array(X, chunks=20), y)
    assert list(fit.feature_names_in_) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="same order"):
        fit.predict(frame[["c", "a", "b"]])


@pytest.mark.parametrize("estimator", [VDRegression, RVC])
def test_a_y_of_unknown_block_sizes_is_named(client, estimator):
    """X of unknown block sizes was told to compute_chunk_sizes(); y was "inconsistent numbers of
    samples: [120, nan]"."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(120, 3)), rng.normal(size=120)
    y_dask = da.from_array(y, chunks=40)
    y_dask = (y_dask > 0).astype(int) if estimator is RVC else y_dask
    with pytest.raises(ValueError, match=r"y has blocks of unknown size; call y.compute_chunk_sizes\(\)"):
        estimator().fit(da.from_array(X, chunks=(40, 3)), y_dask[y_dask > -100])

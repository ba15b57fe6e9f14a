"""scikit-learn's feature-name conventions (``feature_names_in_``) for the six linear estimators."""

import re
import warnings

import numpy as np
import pytest

from pyro_vd.linear import RVC, RVR, GKLClassifier, GKLRegression, VDClassifier, VDRegression

pd = pytest.importorskip("pandas")

NAMES = ["alpha", "beta", "gamma", "delta"]
ESTIMATORS = [
    VDRegression(),
    RVR(),
    GKLRegression(),
    VDClassifier(n_quadrature=8),
    RVC(),
    GKLClassifier(),
]


def _data(estimator, n=80):
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(n, len(NAMES))), columns=NAMES)
    t = X["alpha"].to_numpy() - X["beta"].to_numpy() + 0.3 * rng.normal(size=n)
    return X, (t > 0).astype(int) if hasattr(estimator, "predict_proba") else t


def _methods(model):
    names = ("predict", "predict_proba", "decision_function")
    return [getattr(model, name) for name in names if hasattr(model, name)]


@pytest.fixture(params=ESTIMATORS, ids=lambda e: type(e).__name__)
def fitted(request):
    X, y = _data(request.param)
    return type(request.param)(**request.param.get_params()).fit(X, y), X, y


def test_dataframe_fit_sets_feature_names(fitted):
    model, X, _ = fitted
    assert isinstance(model.feature_names_in_, np.ndarray) and model.feature_names_in_.dtype == object
    assert list(model.feature_names_in_) == NAMES
    assert model.n_features_in_ == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method in _methods(model):
            method(X)  # the same names: no warning


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (NAMES[::-1], "Feature names must be in the same order as they were in fit."),
        (["alpha", "beta", "gamma", "epsilon"], "Feature names unseen at fit time:\n- epsilon\n"),
        (NAMES[:3], "Feature names seen at fit time, yet now missing:\n- delta\n"),
    ],
    ids=["reordered", "renamed", "missing"],
)
def test_other_columns_at_predict_raise(fitted, columns, message):
    model, X, _ = fitted
    other = pd.DataFrame(X.to_numpy()[:, : len(columns)], columns=columns)
    expected = re.escape("The feature names should match those that were passed during fit.\n" + message)
    for method in _methods(model):
        with pytest.raises(ValueError, match=expected):
            method(other)


def test_names_on_one_side_only_warn_as_scikit_learn(fitted):
    model, X, y = fitted
    owner = type(model).__name__
    with pytest.warns(UserWarning, match=f"X does not have valid feature names, but {owner} was fitted with"):
        model.predict(X.to_numpy())
    model.fit(X.to_numpy(), y)  # refit on an array: the old names go
    assert not hasattr(model, "feature_names_in_")
    with pytest.warns(
        UserWarning, match=f"X has feature names, but {owner} was fitted without feature names"
    ):
        model.predict(X)


def test_only_string_names_count():
    X, y = _data(VDRegression())
    numbered = VDRegression().fit(pd.DataFrame(X.to_numpy()), y)  # integer column names: not names
    assert not hasattr(numbered, "feature_names_in_")
    with pytest.raises(TypeError, match="only supported if all input features have string names"):
        VDRegression().fit(pd.DataFrame(X.to_numpy(), columns=["a", "b", 2, 3]), y)


class _Frame:
    """A data frame that is not pandas: ``columns`` and ``__array__`` are all the estimators use."""

    def __init__(self, values, columns):
        self.values, self.columns = values, columns

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.values, dtype=dtype)


def test_any_data_frame_by_duck_typing():
    X, y = _data(VDRegression())
    model = VDRegression().fit(_Frame(X.to_numpy(), NAMES), y)
    assert list(model.feature_names_in_) == NAMES
    with pytest.raises(ValueError, match="same order"):
        model.predict(_Frame(X.to_numpy(), NAMES[::-1]))


def test_partial_fit_keeps_the_names_of_the_first_chunk():
    X, y = _data(VDRegression(), n=120)
    model = VDRegression().partial_fit(X[:40], y[:40])
    state = {k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in vars(model).items()}
    with pytest.raises(ValueError, match="same order"):
        model.partial_fit(X[NAMES[::-1]][40:80], y[40:80])
    assert np.array_equal(model.coef_, state["coef_"]) and model._stats["n"] == 40
    model.partial_fit(X[40:80], y[40:80])
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        model.partial_fit(X.to_numpy()[80:], y[80:])
    assert list(model.feature_names_in_) == NAMES and model._stats["n"] == 120
    np.testing.assert_allclose(model.coef_, VDRegression().fit(X, y).coef_, atol=1e-10)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_scikit_learn_column_name_check(estimator):
    pytest.importorskip("sklearn")
    from sklearn.utils.estimator_checks import check_dataframe_column_names_consistency

    check_dataframe_column_names_consistency(type(estimator).__name__, estimator)

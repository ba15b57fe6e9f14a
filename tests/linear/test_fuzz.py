"""
Property tests of the six linear estimators and ``VDRegression.partial_fit`` on hostile data: random
shapes, scales from 1e-150 to 1e150, constant / duplicated / all-zero columns, one to three classes,
float32 / float64 / integer designs, NaN and inf, pandas data frames. Every outcome must be a finite
answer (finite ``coef_``, ``intercept_`` and predictions) or a ValueError / TypeError with a message,
with at most a handful of warnings.

A case is a plain dict of choices (:data:`SPACE` plus a seed), so that ``benchmarks/fuzz_linear.py``
can draw many more of them from a seeded generator and count failures per estimator, while hypothesis
draws and shrinks them here.
"""

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyro_vd.linear import RVC, RVR, GKLClassifier, GKLRegression, VDClassifier, VDRegression

#: More warnings than this in one fit + predict is a flood.
MAX_WARNINGS = 3

SPACE = {
    "n": [1, 2, 3, 5, 12, 30],
    "d": [1, 2, 3, 8],
    "x_exp": [-150, -100, -20, 0, 0, 20, 100, 150],
    "y_exp": [-150, -100, -20, 0, 0, 20, 100, 150],
    "columns": ["plain", "plain", "constant", "duplicate", "zero"],
    "dtype": ["float64", "float64", "float32", "int"],
    "bad": ["none", "none", "none", "none", "nan", "inf"],
    "container": ["array", "array", "dataframe"],
    "target": ["linear", "linear", "noise", "zero", "constant"],
    "n_classes": [1, 2, 2, 3],
    "chunks": [1, 2, 3],
}
#: Shape caps per estimator (G-KL classification is a full-covariance fit per outer step).
CAPS = {"GKLClassifier": (30, 8)}

ESTIMATORS = {
    "VDRegression": VDRegression,
    "RVR": RVR,
    "GKLRegression": GKLRegression,
    "VDClassifier": VDClassifier,
    "RVC": RVC,
    "GKLClassifier": GKLClassifier,
    "VDRegression.partial_fit": VDRegression,
}


def random_case(rng):
    """A case drawn by a numpy Generator (the benchmark's way)."""
    case = {key: choices[int(rng.integers(len(choices)))] for key, choices in SPACE.items()}
    case["seed"] = int(rng.integers(2**31))
    return case


def cases():
    """The same space as a hypothesis strategy (shrinks towards the first choice of each key)."""
    return st.fixed_dictionaries(
        {key: st.sampled_from(choices) for key, choices in SPACE.items()}
        | {"seed": st.integers(0, 2**31 - 1)}
    )


def make_data(name, case):
    """(X, y) of a case for the estimator ``name``: X possibly a data frame, y numeric or class labels."""
    rng = np.random.default_rng(case["seed"])
    n, d = case["n"], case["d"]
    cap_n, cap_d = CAPS.get(name, (n, d))
    n, d = min(n, cap_n), min(d, cap_d)
    Z = rng.normal(size=(n, d))
    if case["columns"] == "constant":
        Z[:, -1] = 1.5
    elif case["columns"] == "duplicate" and d > 1:
        Z[:, -1] = Z[:, 0]
    elif case["columns"] == "zero":
        Z[:, -1] = 0.0
    w = rng.normal(size=d)
    signal = Z @ w + 0.1 * rng.normal(size=n)
    with np.errstate(over="ignore", invalid="ignore"):
        if case["dtype"] == "int":
            X = np.round(3 * Z).astype(np.int64) * 10 ** min(abs(case["x_exp"]), 15)
        else:
            X = (Z * 10.0 ** case["x_exp"]).astype(case["dtype"])
    if case["bad"] != "none" and X.dtype.kind == "f":
        X = X.copy()
        X[rng.integers(n), rng.integers(d)] = np.nan if case["bad"] == "nan" else np.inf
    if name.endswith("Classifier") or name == "RVC":
        k = case["n_classes"]
        if k == 1:
            y = np.zeros(n, dtype=int)
        else:
            edges = np.quantile(signal, np.linspace(0, 1, k + 1)[1:-1])
            y = np.searchsorted(edges, signal)
    else:
        y = {
            "linear": signal,
            "noise": rng.normal(size=n),
            "zero": np.zeros(n),
            "constant": np.full(n, -2.5),
        }[case["target"]] * 10.0 ** case["y_exp"]
        if case["bad"] == "inf" and X.dtype.kind != "f":
            y = y.copy()
            y[0] = np.inf
    if case["container"] == "dataframe":
        import pandas as pd

        X = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
    return X, y


def _finite(name, value):
    value = np.asarray(value, dtype=float)
    if not np.isfinite(value).all():
        return f"{name} not finite: {np.array2string(value.ravel()[:6], precision=3)}"
    return None


def _fit_and_check(name, case):
    X, y = make_data(name, case)
    model = ESTIMATORS[name]()
    if name.endswith("partial_fit"):
        for part in np.array_split(np.arange(len(y)), min(case["chunks"], len(y))):
            chunk = X.iloc[part] if hasattr(X, "iloc") else X[part]
            model.partial_fit(chunk, y[part])
    else:
        model.fit(X, y)
    problems = [_finite("coef_", model.coef_), _finite("intercept_", model.intercept_)]
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        problems.append(_finite("predict_proba", proba))
        if problems[-1] is None and not np.allclose(proba.sum(1), 1.0):
            problems.append("predict_proba rows do not sum to 1")
        problems.append(_finite("decision_function", model.decision_function(X)))
        if not np.isin(model.predict(X), model.classes_).all():
            problems.append("predict returns labels outside classes_")
    else:
        mean, std = model.predict(X, return_std=True)
        problems += [_finite("predict", mean), _finite("predict std", std)]
    return [p for p in problems if p is not None]


def check_case(name, case):
    """None when the case behaves (finite answer or a clear ValueError/TypeError, few warnings), else
    a one-line description of what went wrong."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            problems = _fit_and_check(name, case)
        except (ValueError, TypeError) as error:
            problems = [] if str(error).strip() else [f"{type(error).__name__} without a message"]
        except Exception as error:
            problems = [f"{type(error).__name__}: {str(error)[:120]}"]
    if len(caught) > MAX_WARNINGS:
        kinds = sorted({f"{w.category.__name__}: {str(w.message)[:60]}" for w in caught})
        problems.append(f"{len(caught)} warnings ({'; '.join(kinds[:3])})")
    return "; ".join(problems) or None


FUZZ = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)
EXAMPLES = {"VDRegression": 70, "VDRegression.partial_fit": 60, "VDClassifier": 60, "GKLClassifier": 30}


@pytest.mark.parametrize("name", list(ESTIMATORS), ids=str)
def test_hostile_data_gives_a_finite_fit_or_a_clear_error(name):
    @settings(FUZZ, max_examples=EXAMPLES.get(name, FUZZ.max_examples))
    @given(case=cases())
    def check(case):
        problem = check_case(name, case)
        assert problem is None, f"{name} on {case}: {problem}"

    check()

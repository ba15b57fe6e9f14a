import warnings

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

from pyro_vd.guides import AutoVariationalDropout
from pyro_vd.linear import ConvergenceWarning, VDRegression
from pyro_vd.models import LinearRegression, StandardizationWarning


def _caught(call):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return caught


def test_warnings_name_the_users_line_not_the_librarys():
    """Made deep inside Pyro's step, torch's module call or inference_mode and the estimator, with fixed
    stacklevels they named a frame of Pyro, torch or pyro_vd."""
    pyro.clear_param_store()
    model = LinearRegression(3, num_data=64)
    svi = SVI(model, AutoVariationalDropout(model), pyro.optim.Adam({"lr": 0.01}), Trace_ELBO())
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((50, 3)), rng.standard_normal(50)
    for call, category in [
        (lambda: svi.step(100 * torch.randn(64, 3), torch.randn(64)), StandardizationWarning),
        (lambda: VDRegression(max_iter=1).fit(X, y), ConvergenceWarning),
        (lambda: VDRegression().fit(X, y[:, None]), UserWarning),  # scikit-learn's DataConversionWarning
    ]:
        caught = [w for w in _caught(call) if issubclass(w.category, category)]
        assert caught and all(w.filename == __file__ for w in caught), [
            (w.filename, w.category) for w in caught
        ]


def test_warn_at_caller_from_user_code_names_that_code():
    from pyro_vd._warnings import warn_at_caller

    with pytest.warns(UserWarning, match="here") as record:
        warn_at_caller("here")
    assert record[0].filename == __file__

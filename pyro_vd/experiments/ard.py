"""
The seed's ARD experiments: variational dropout against the relevance vector machine (Type-II maximum
likelihood) and Gaussian-KL variational ARD, for linear and logistic regression.

* :func:`more_features` — 1000 objects, 10 relevant + 990 irrelevant features (the seed's table).
* :func:`minibatch` — 100 000 × 100 (10 relevant): fit time and relevance of every method, and of the
  minibatch SVI versions at batch sizes of 0.1 %, 1 % and 10 % of the data (the seed's plots).

scikit-learn rows (``ARDRegression``, L1-penalized logistic regression) appear when it is installed.
"""

import inspect
import time

import numpy as np
import pyro
import torch

from ..guides import AutoVariationalDropout
from ..inference import VariationalDropoutELBO
from ..linear import RVC, RVR, GKLClassifier, GKLRegression, VDClassifier, VDRegression
from ..linear.rvc import _mode
from ..models import LinearRegression, LogisticRegression
from ..poutine import local_reparameterization
from .ard_data import make_ard_classification, make_ard_regression


def _row(method, metric, value, relevance, n_relevant, seconds, model=None):
    relevance = np.asarray(relevance, bool)
    row = {
        "method": method,
        "metric": metric,
        "value": float(value),
        "pruned": int((~relevance[n_relevant:]).sum()),
        "n_irrelevant": int(len(relevance) - n_relevant),
        "kept": int(relevance[:n_relevant].sum()),
        "n_relevant": int(n_relevant),
        "seconds": float(seconds),
    }
    evidence = getattr(model, "log_evidence_", None)
    if evidence is not None:  # the log evidence (or its bound) at the solution, where the model has one
        row["log_evidence"] = float(np.mean(evidence))
    return row


def _timed(fit):
    start = time.perf_counter()
    result = fit()
    return result, time.perf_counter() - start


def _sklearn():
    try:
        from sklearn import linear_model
    except ImportError:  # pragma: no cover - scikit-learn is a test/benchmark dependency
        return None
    return linear_model


def regression_rows(X, y, X_test, y_test, n_relevant, *, include=None, log=print):
    """One row per regression method: test MSE, irrelevant pruned, relevant kept, fit seconds."""
    methods = {"VD-RVR": VDRegression, "RVR": RVR, "G-KL RVR": GKLRegression}
    rows = []
    for name, estimator in methods.items():
        if include is not None and name not in include:
            continue
        model, seconds = _timed(lambda estimator=estimator: estimator().fit(X, y))
        mse = np.mean((model.predict(X_test) - y_test) ** 2)
        rows.append(_row(name, "test MSE", mse, model.relevance_, n_relevant, seconds, model))
        log(f"  {name}: MSE {mse:.4f}, {seconds:.2f} s")
    linear_model = _sklearn()
    if linear_model is not None and (include is None or "sklearn ARDRegression" in include):
        model, seconds = _timed(lambda: linear_model.ARDRegression().fit(X, y))
        mse = np.mean((model.predict(X_test) - y_test) ** 2)
        rows.append(
            _row(
                "sklearn ARDRegression",
                "test MSE",
                mse,
                model.lambda_ < model.threshold_lambda,
                n_relevant,
                seconds,
            )
        )
    # Oracle: least squares on the relevant features only.
    (coef, intercept), seconds = _timed(lambda: _least_squares(X[:, :n_relevant], y))
    mse = np.mean((X_test[:, :n_relevant] @ coef + intercept - y_test) ** 2)
    relevance = np.arange(X.shape[1]) < n_relevant
    rows.append(_row("oracle (relevant features only)", "test MSE", mse, relevance, n_relevant, seconds))
    return rows


#: Rows of fits stopped at their iteration cap on purpose: their ConvergenceWarning is their label.
def classification_rows(X, y, X_test, y_test, n_relevant, *, include=None, log=print):
    """One row per classification method: test accuracy, irrelevant pruned, relevant kept, fit seconds.
    Every estimator at its defaults: VD-RVC selects by the evidence rule in its fit (ELBO gain above
    log d), G-KL RVC from its default start (``init="scaled"``)."""
    methods = {"VD-RVC": VDClassifier, "RVC": RVC, "G-KL RVC": GKLClassifier}
    rows = []
    for name, estimator in methods.items():
        if include is not None and name not in include:
            continue
        model, seconds = _timed(lambda estimator=estimator: estimator().fit(X, y))
        accuracy = np.mean(model.predict(X_test) == y_test)
        rows.append(_row(name, "test accuracy", accuracy, model.relevance_, n_relevant, seconds, model))
        log(f"  {name}: accuracy {accuracy:.4f}, {seconds:.2f} s")
    linear_model = _sklearn()
    if linear_model is not None and (include is None or "L1 logistic regression" in include):
        options = {"Cs": 10, "cv": 5, "l1_ratios": [1.0], "solver": "liblinear", "max_iter": 1000}
        options["scoring"] = "accuracy"
        if "use_legacy_attributes" in inspect.signature(linear_model.LogisticRegressionCV).parameters:
            options["use_legacy_attributes"] = False  # scikit-learn >= 1.9
        model, seconds = _timed(lambda: linear_model.LogisticRegressionCV(**options).fit(X, y))
        accuracy = np.mean(model.predict(X_test) == y_test)
        rows.append(
            _row(
                "L1 logistic regression (CV)",
                "test accuracy",
                accuracy,
                np.ravel(model.coef_) != 0,
                n_relevant,
                seconds,
            )
        )
    # Oracle: unpenalized logistic regression on the relevant features only.
    Phi = np.column_stack([X[:, :n_relevant], np.ones(len(X))])
    (w, _), seconds = _timed(
        lambda: _mode(Phi, y.astype(float), np.full(n_relevant + 1, 1e-8), np.zeros(n_relevant + 1))
    )
    accuracy = np.mean(((X_test[:, :n_relevant] @ w[:-1] + w[-1]) > 0) == y_test)
    relevance = np.arange(X.shape[1]) < n_relevant
    rows.append(
        _row("oracle (relevant features only)", "test accuracy", accuracy, relevance, n_relevant, seconds)
    )
    return rows


def _least_squares(X, y):
    Xc = np.column_stack([X, np.ones(len(X))])
    solution = np.linalg.lstsq(Xc, y, rcond=None)[0]
    return solution[:-1], solution[-1]


def more_features(*, n=1000, d=1000, n_relevant=10, seed=0, include=None, log=print):
    """
    The seed's "more features" experiment: ``n`` objects, ``n_relevant`` relevant and ``d - n_relevant``
    irrelevant features, test sets of 10 000 rows (:mod:`~pyro_vd.experiments.ard_data`).

    :returns: ``{"regression": [rows], "classification": [rows], "config": {...}}``.
    """
    log("regression")
    reg = regression_rows(
        *make_ard_regression(n, d, n_relevant, seed=seed)[:4], n_relevant, include=include, log=log
    )
    log("classification")
    clf = classification_rows(
        *make_ard_classification(n, d, n_relevant, seed=seed)[:4],
        n_relevant,
        include=include,
        log=log,
    )
    return {
        "regression": reg,
        "classification": clf,
        "config": {"n": n, "d": d, "n_relevant": n_relevant, "seed": seed},
    }


def svi_linear(
    X,
    y,
    *,
    classification,
    batch_size,
    steps,
    lr=0.01,
    seed=0,
    return_noise_scale=False,
    guide_kwargs=None,
    betas=None,
):
    """``steps`` minibatch SVI steps of the Pyro linear models with the guide's defaults (which the
    models recommend: :data:`~pyro_vd.models.linear.LINEAR_GUIDE_DEFAULTS`), Adam(``lr``) (with
    ``betas`` where given, else torch's (0.9, 0.999)), LRT, exact KL (``guide_kwargs`` override the
    guide's settings); batches are consecutive slices of reshuffled data. Returns (θ, log α, bias,
    seconds), and the learned noise scale σ of the regression model last with ``return_noise_scale``."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    n, d = X.shape
    model = (LogisticRegression if classification else LinearRegression)(d, num_data=n)
    guide = AutoVariationalDropout(model, **(guide_kwargs or {}))
    optim_args = {"lr": lr} if betas is None else {"lr": lr, "betas": tuple(betas)}
    svi = pyro.infer.SVI(model, guide, pyro.optim.Adam(optim_args), VariationalDropoutELBO(kl_method="exact"))
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    start = time.perf_counter()
    batch_size = min(batch_size, n)
    per_pass = n // batch_size
    with local_reparameterization():
        for step in range(steps):
            if step % per_pass == 0:
                order = torch.randperm(n)
            i = (step % per_pass) * batch_size
            index = order[i : i + batch_size]
            svi.step(Xt[index], yt[index])
    guide.apply_average()  # the linear models average their iterates (``averaging``)
    seconds = time.perf_counter() - start
    bias = float(pyro.param("net.bias").detach()[0])
    result = (
        guide.get_theta("net.weight")[0].numpy(),
        guide.get_log_alpha("net.weight")[0].numpy(),
        bias,
        seconds,
    )
    if return_noise_scale:
        noise = None if classification else float(pyro.param("noise_scale").detach())
        result = (*result, noise)
    return result


def exact_vd(task, X, y, rule="evidence"):
    """The exact VD optimum SVI is compared with, under ``rule`` (the evidence rule by default):
    ``VDRegression(threshold=rule)`` or ``VDClassifier(solver="newton", threshold=rule)`` (Newton:
    L-BFGS stops at its iteration cap before the optimum on some draws)."""
    if task == "classification":
        return VDClassifier(solver="newton", threshold=rule).fit(X, y)
    return VDRegression(threshold=rule).fit(X, y)


def agreement(theta, log_alpha, exact, *, truth=None, margin=1.0):
    """
    How far an SVI fit (θ, log α) is from the exact estimator ``exact`` (a fitted ``VDRegression`` /
    ``VDClassifier``) on the same data, with **the exact estimator's own relevance rule applied to both**
    (``exact.threshold_``: τ(d) for ``threshold="evidence"``, 3 for ``"sparse_vd"``; issue 13's "the same
    rule applies to α from SVI"): ``symmetric_difference`` — features relevant in one and not the other
    (the exact side is ``exact.relevance_``), leaving out those whose exact log α lies within ``margin``
    of the bound (for a feature ``VDRegression``'s evidence rule pruned: its ``profile_log_alpha_``);
    ``theta_error`` — the largest relative |θ − θ_exact| over the features relevant in both (outside the
    margin); ``theta_error_sd`` — the largest |θ − θ_exact| over the same features in units of the exact
    posterior's standard deviation √α·|θ| (minibatch SVI that has converged still carries sampling
    noise of about the posterior's scale: a relative error of 5 % is 0.3 standard deviations for a
    feature at log α = −3.3); ``theta_error_true`` — the relative error over the truly
    relevant features (``truth != 0``) the exact solver keeps (outside the margin), when ``truth`` is
    given.
    """
    # how far the exact decision was from the bound: a pruned feature's own profile optimum, where the
    # estimator reports it (the evidence rules of VDRegression and VDClassifier prune in the fit, where
    # log_alpha_ is max_log_alpha or inf)
    exact_log_alpha = np.asarray(getattr(exact, "profile_log_alpha_", exact.log_alpha_), float).reshape(-1)
    bound = float(exact.threshold_)
    relevant = np.asarray(log_alpha, float).reshape(-1) <= bound
    exact_relevant = np.asarray(exact.relevance_, bool).reshape(-1)
    clear = np.abs(exact_log_alpha - bound) >= margin
    both = relevant & exact_relevant & clear
    coef = np.asarray(exact.coef_, float).reshape(-1)

    def error(mask, scale):
        if not mask.any():
            return 0.0
        return float(np.max(np.abs(theta[mask] - coef[mask]) / scale[mask]))

    exact_alpha = np.asarray(exact.log_alpha_, float).reshape(-1)
    posterior_sd = np.full(coef.shape, np.inf)  # pruned features (α = ∞) are never in the masks
    posterior_sd[exact_relevant] = np.exp(0.5 * exact_alpha[exact_relevant]) * np.abs(coef[exact_relevant])
    result = {
        "symmetric_difference": int(((relevant != exact_relevant) & clear).sum()),
        "near_threshold": int((~clear).sum()),
        "theta_error": error(both, np.abs(coef)),
        "theta_error_sd": error(both, posterior_sd),
    }
    if truth is not None:  # the truly relevant features the exact solver keeps (θ_exact ≠ 0)
        result["theta_error_true"] = error((np.asarray(truth) != 0) & exact_relevant & clear, np.abs(coef))
    return result


def minibatch(
    *,
    n=100000,
    d=100,
    n_relevant=10,
    fractions=(0.001, 0.01, 0.1),
    steps=3000,
    seed=0,
    include=None,
    log=print,
):
    """
    The seed's 100 000 × 100 experiment: every full-data method, and minibatch SVI at each batch
    ``fraction`` of the data, each for the same number of ``steps`` (so the batch size alone varies:
    larger batches see more data and less gradient noise, at more cost per step). Each SVI row also
    carries its agreement with the exact VD estimator on the same data (:func:`agreement`):
    ``exact_pruned`` (irrelevant features the exact solver prunes) and ``symmetric_difference`` of the
    relevant sets.

    :returns: ``{"regression": [rows], "classification": [rows], "config": {...}}``.
    """
    result = {
        "config": {"n": n, "d": d, "n_relevant": n_relevant, "fractions": list(fractions), "steps": steps}
    }
    for task, make, rows_fn in (
        ("regression", make_ard_regression, regression_rows),
        ("classification", make_ard_classification, classification_rows),
    ):
        log(task)
        X, y, X_test, y_test, _ = make(n, d, n_relevant, seed=seed)
        rows = rows_fn(X, y, X_test, y_test, n_relevant, include=include, log=log)
        exact = exact_vd(task, X, y)
        for fraction in fractions:
            batch = max(1, round(fraction * n))
            theta, log_alpha, bias, seconds = svi_linear(
                X, y, classification=task == "classification", batch_size=batch, steps=steps, seed=seed
            )
            prediction = X_test @ theta + bias
            if task == "classification":
                metric, value = "test accuracy", np.mean((prediction > 0) == y_test)
            else:
                metric, value = "test MSE", np.mean((prediction - y_test) ** 2)
            name = f"VD SVI, batch {100 * fraction:g} %"
            # the exact solver's rule (the evidence rule, τ(d)) applied to SVI's α too
            row = _row(name, metric, value, log_alpha <= exact.threshold_, n_relevant, seconds)
            row["exact_pruned"] = int((~exact.relevance_[n_relevant:]).sum())
            row.update(agreement(theta, log_alpha, exact))
            rows.append(row)
            log(
                f"  {name}: {metric} {value:.4f}, pruned {row['pruned']} (exact {row['exact_pruned']}), "
                f"sym. diff. {row['symmetric_difference']}, {seconds:.1f} s"
            )
        result[task] = rows
    return result


def format_rows(rows):
    """A Markdown table of experiment rows."""
    if not rows:
        return ""
    metric = rows[0]["metric"]
    svi = any("exact_pruned" in r for r in rows)
    evidence = any("log_evidence" in r for r in rows)
    header = f"| method | {metric} | irrelevant pruned | relevant kept | fit s |"
    rule = "|---|---:|---:|---:|---:|"
    if evidence:  # log evidence (RVR) or its lower bound (VD, G-KL) at the solution, nats
        header += " log evidence |"
        rule += "---:|"
    if svi:  # the SVI rows' agreement with the exact VD solver
        header += " pruned by exact VD | relevant sets' sym. diff. |"
        rule += "---:|---:|"
    lines = [header, rule]
    for r in rows:
        line = (
            f"| {r['method']} | {r['value']:.4f} | {r['pruned']}/{r['n_irrelevant']} "
            f"| {r['kept']}/{r['n_relevant']} | {r['seconds']:.2f} |"
        )
        if evidence:
            line += f" {r['log_evidence']:.1f} |" if "log_evidence" in r else " |"
        if svi:
            line += (
                f" {r['exact_pruned']}/{r['n_irrelevant']} | {r['symmetric_difference']} |"
                if "exact_pruned" in r
                else " | |"
            )
        lines.append(line)
    return "\n".join(lines)

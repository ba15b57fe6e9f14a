import numpy as np
import pytest
import torch

from pyro_vd.linear import VDClassifier
from pyro_vd.linear.vd_classifier import expected_log_sigmoid, expected_sigmoid, gauss_hermite


def _data(n=400, d=20, relevant=4, seed=0, classes=2):
    rng = np.random.default_rng(seed)
    W = np.zeros((classes if classes > 2 else 1, d))
    W[:, :relevant] = rng.choice([-1, 1], size=(W.shape[0], relevant)) * (
        1.5 + rng.random((W.shape[0], relevant))
    )
    X = rng.normal(size=(n, d))
    logits = X @ W.T
    if classes == 2:
        y = (rng.random(n) < 1 / (1 + np.exp(-logits[:, 0]))).astype(int)
    else:  # labels drawn from the softmax: separable data would let |θ| grow without bound
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        y = (rng.random((n, 1)) > p.cumsum(1)).sum(1)
    return X, y


def test_quadrature_against_monte_carlo():
    nodes, weights = gauss_hermite(32)
    m, s = (
        torch.tensor([0.3, -2.0, 4.0], dtype=torch.float64),
        torch.tensor([0.5, 2.0, 7.0], dtype=torch.float64),
    )
    z = torch.randn(2_000_000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mc = torch.nn.functional.logsigmoid(m + s * z).mean(0)
    se = torch.nn.functional.logsigmoid(m + s * z).std(0) / 2_000_000**0.5
    assert ((expected_log_sigmoid(m, s, nodes, weights) - mc).abs() < 5 * se).all()
    assert torch.allclose(
        expected_sigmoid(m, torch.zeros(3, dtype=torch.float64), nodes, weights), torch.sigmoid(m)
    )


def test_binary_relevance_and_accuracy():
    """At the ELBO's optimum (Newton, the default) log α ≤ 3 keeps the 4 relevant features and 5 of the 16
    irrelevant ones on this draw (2–7 on seeds 0–3: the rule's known weakness, issue 13); the evidence
    rule keeps none of them."""
    X, y = _data()
    model = VDClassifier(threshold="sparse_vd").fit(X, y)
    assert model.relevance_[:4].all() and model.relevance_[4:].sum() <= 7
    assert VDClassifier().fit(X, y).relevance_.tolist() == [True] * 4 + [False] * 16
    assert model.score(X, y) > 0.85
    proba = model.predict_proba(X)
    assert proba.shape == (400, 2) and np.allclose(proba.sum(1), 1)
    assert (model.predict(X) == model.classes_[(proba[:, 1] > 0.5).astype(int)]).all()


def test_multiclass_one_vs_rest_and_string_labels():
    """Seed 1's features 0 and 2 have class weights (−2.33, −2.25, −1.80) and (2.05, 1.83, 1.63): the softmax
    ignores their common part, so they are weak in every one-vs-rest model. log α ≤ 3 keeps them (with 7
    of the 16 irrelevant ones); the evidence rule keeps the strong features 1 and 3 only."""
    X, y = _data(n=600, classes=3, seed=1)
    labels = np.array(["a", "b", "c"])[y]
    model = VDClassifier(threshold="sparse_vd").fit(X, labels)
    assert model.coef_.shape == (3, 20) and list(model.classes_) == ["a", "b", "c"]
    assert model.score(X, labels) > 0.7
    assert model.relevance_[:4].all()
    evidence = VDClassifier().fit(X, labels)
    assert np.flatnonzero(evidence.relevance_).tolist() == [1, 3]
    assert np.isinf(evidence.log_alpha_[:, evidence.relevance_ == 0]).all()
    assert evidence.score(X, labels) > 0.7


def test_bad_labels():
    X, _ = _data()
    with pytest.raises(ValueError, match="got 1 class"):
        VDClassifier().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="continuous"):
        VDClassifier().fit(X, np.linspace(0, 1, len(X)))
    with pytest.raises(ValueError, match="NaN"):
        VDClassifier().fit(X, np.full(len(X), np.nan))
    with pytest.raises(ValueError, match="not fitted"):
        VDClassifier().predict(X)


def test_scikit_learn_estimator_checks():
    pytest.importorskip("sklearn")
    from sklearn.utils.estimator_checks import check_estimator

    failures = check_estimator(VDClassifier(n_quadrature=8), on_fail=None, on_skip=None)
    problems = [f"{r['check_name']}: {r['exception']}" for r in failures if r["status"] == "failed"]
    assert not problems, "\n".join(problems)

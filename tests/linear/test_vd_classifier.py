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


def test_the_evidence_rule_warns_where_the_plain_fit_predicts_far_better_on_a_dense_truth():
    """40 of 50 features relevant: the evidence fit keeps 22 (its prior's optimum, not its search) and
    predicts at a test log loss of 0.41 against the plain fit's 0.31; the approximate leave-one-out
    losses are 0.334 and 0.237 (ratio 1.41, the warning's bound 1.2)."""
    from pyro_vd.experiments.ard_data import make_dense_classification
    from pyro_vd.linear import EvidenceRuleWarning

    X, y, _, _, relevant = make_dense_classification(500, 50, 40, low=0.5, high=1.5, seed=0)
    with pytest.warns(
        EvidenceRuleWarning, match=r"kept 22 of 50 features.*threshold='sparse_vd', 4\d features"
    ) as caught:
        fit = VDClassifier().fit(X, y)
    assert caught[0].filename == __file__  # the user's line, not the library's
    assert fit.relevance_[relevant].sum() == 22  # the fit is what it was: the warning only says so


@pytest.mark.parametrize(
    "draw",
    ["sparse", "sparse, rho 0.9", "noise", "rare positives", "dense at d = n/2"],
)
def test_no_evidence_rule_warning_on_sparse_truths_noise_or_where_the_estimate_is_unreliable(draw):
    """Warnings are errors here. The sparse ρ = 0.9 draw passes the score gate (z = 7.2: correlated
    left-out features) and is compared, at a leave-one-out ratio of 1.12; at d = n/2 the estimate is not
    made (there it favoured the plain fit by 1.55 where both predict at chance)."""
    from pyro_vd.experiments.ard_data import make_ard_classification, make_dense_classification

    rng = np.random.default_rng(0)
    if draw == "sparse":
        X, y = make_ard_classification(1000, 100, 10, seed=0, n_test=1)[:2]
    elif draw == "sparse, rho 0.9":
        X, y = make_ard_classification(1000, 100, 10, seed=0, n_test=1, rho=0.9)[:2]
    elif draw == "noise":
        X, y = rng.standard_normal((500, 100)), (rng.random(500) < 0.9).astype(int)
    elif draw == "rare positives":
        X = rng.standard_normal((2000, 100))
        y = (rng.random(2000) < 1 / (1 + np.exp(4.0 - X[:, :5].sum(1)))).astype(int)
    else:
        X, y = make_dense_classification(300, 150, 100, low=0.3, high=1.0, seed=0, n_test=1)[:2]
    VDClassifier().fit(X, y)


@pytest.mark.parametrize("evidence", [False, True], ids=["plain", "evidence"])
def test_the_leave_one_out_estimate_is_close_to_refitting_without_each_row(evidence):
    """Measured against n refits (3 seeds × 4 designs, the plain and the evidence fit): the estimate is
    0.4–4.5 % below the exact leave-one-out loss (one Newton step, α held); 6 % bounds it."""
    from pyro_vd.linear._loo import loo_log_loss
    from pyro_vd.linear._rows import InMemoryRows
    from pyro_vd.linear._vd_newton import _log_sigmoid, newton_fit
    from pyro_vd.linear._vd_selection import evidence_fit

    nodes, weights = (a.numpy() for a in gauss_hermite(32))
    n, d = (150, 6) if evidence else (120, 4)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, d))
    X -= X.mean(0)
    w = np.zeros(d)
    w[:2] = rng.uniform(0.5, 1.5, 2)
    t = np.where(rng.random(n) < 1 / (1 + np.exp(-X @ w)), 1.0, -1.0)

    def fit(rows):
        if evidence:
            return evidence_fit(InMemoryRows(X[rows], t[rows]), d, nodes, weights, "exact", 1000, 1e-10)[:3]
        start = (np.full(d, 0.01), np.full(d, -10.0))
        return newton_fit(InMemoryRows(X[rows], t[rows]), *start, nodes, weights, "exact", 1000, 1e-10)[:3]

    def loss(i, theta, rho, b):
        kept = np.isfinite(rho)
        s = np.sqrt((X[i, kept] ** 2) @ np.exp(rho[kept]))
        return -(_log_sigmoid(t[i] * (X[i] @ theta + b) + s * nodes[None]) @ weights)[0]

    estimate = loo_log_loss(InMemoryRows(X, t), *fit(np.arange(n)), nodes, weights)
    exact = np.mean([loss(i, *fit(np.delete(np.arange(n), i))) for i in range(n)])
    assert estimate == pytest.approx(exact, rel=0.06)
    assert estimate > np.mean([loss(i, *fit(np.arange(n))) for i in range(n)])  # above the training loss

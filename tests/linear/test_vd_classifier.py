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
    predicts at a test log loss of 0.41 against the plain fit's 0.31; the cross-validated losses are
    0.334 and 0.247 (ratio 1.35, the warning's bound 1.2)."""
    from pyro_vd.experiments.ard_data import make_dense_classification
    from pyro_vd.linear import EvidenceRuleWarning

    X, y, _, _, relevant = make_dense_classification(500, 50, 40, low=0.5, high=1.5, seed=0)
    message = r"kept 22 of 50 features.*threshold='sparse_vd', 41 features.*cross-validated log loss is 0.247"
    with pytest.warns(EvidenceRuleWarning, match=message) as caught:
        fit = VDClassifier().fit(X, y)
    assert caught[0].filename == __file__  # the user's line, not the library's
    assert fit.relevance_[relevant].sum() == 22  # the fit is what it was: the warning only says so


def test_the_dense_warning_counts_the_features_that_vary():
    """Two constant columns added to the dense draw: the evidence fit keeps the same 22, and the message
    says of 50 features, as without them (before: "of 52", counting columns no rule can keep)."""
    from pyro_vd.experiments.ard_data import make_dense_classification
    from pyro_vd.linear import EvidenceRuleWarning

    X, y, _, _, _ = make_dense_classification(500, 50, 40, low=0.5, high=1.5, seed=0)
    X = np.column_stack([X, np.full(len(X), 3.0), np.zeros(len(X))])
    with pytest.warns(EvidenceRuleWarning, match=r"kept 22 of 50 features"):
        VDClassifier().fit(X, y)


@pytest.mark.parametrize(
    "draw",
    ["sparse", "sparse, rho 0.9", "noise", "rare positives", "weak signals", "dense at d = n/2"],
)
def test_no_evidence_rule_warning_on_sparse_truths_noise_or_where_the_estimate_is_unreliable(draw):
    """Warnings are errors here. The ρ = 0.9 draw passes the score gate (correlated left-out features)
    and is compared, at a cross-validated ratio of 1.006; the weak-signal draw (a review's: 100 rows,
    6 of 20 weights of 0.2–0.6) at 1.136, where the plain fit's test log loss is the higher (0.750
    against 0.652; an approximate leave-one-out estimate warned there); at d = n/2 no comparison is made
    (there it favoured the plain fit where both predict at chance)."""
    from pyro_vd.experiments.ard_data import make_ard_classification, make_dense_classification

    rng = np.random.default_rng(0)
    if draw == "sparse":
        X, y = make_ard_classification(1000, 100, 10, seed=0, n_test=1)[:2]
    elif draw == "sparse, rho 0.9":
        X, y = make_ard_classification(500, 50, 10, seed=1, n_test=1, rho=0.9)[:2]
    elif draw == "noise":
        X, y = rng.standard_normal((500, 100)), (rng.random(500) < 0.9).astype(int)
    elif draw == "rare positives":
        X = rng.standard_normal((2000, 100))
        y = (rng.random(2000) < 1 / (1 + np.exp(4.0 - X[:, :5].sum(1)))).astype(int)
    elif draw == "weak signals":
        rng = np.random.default_rng(104)
        X = rng.standard_normal((20100, 20))
        w = np.zeros(20)
        w[:6] = rng.choice([-1, 1], 6) * rng.uniform(0.2, 0.6, 6)
        y = (rng.random(20100) < 1 / (1 + np.exp(-(X @ w + 0.5)))).astype(int)
        X, y = X[:100], y[:100]
    else:
        X, y = make_dense_classification(300, 150, 100, low=0.3, high=1.0, seed=0, n_test=1)[:2]
    VDClassifier().fit(X, y)


def test_the_cross_validated_log_loss_refits_each_fold_and_scores_its_rows():
    """Folds partition the rows; the score lies above the training loss; and for a plain fit of 1000 rows
    the 5-fold score is within 0.05 of the test log loss on 20 000 fresh rows (measured 0.008–0.034
    over seeds 0–4: cross-validation estimates the test loss of a fit to such data, not of this one)."""
    from pyro_vd.linear import _cross_validation as cv
    from pyro_vd.linear._rows import InMemoryRows
    from pyro_vd.linear._vd_newton import newton_fit

    nodes, weights = (a.numpy() for a in gauss_hermite(32))
    rng = np.random.default_rng(0)
    n, d = 1000, 8
    X = rng.standard_normal((n + 20000, d))
    w = np.r_[1.5, -1.0, 0.5, np.zeros(d - 3)]
    t = np.where(rng.random(n + 20000) < 1 / (1 + np.exp(-X @ w)), 1.0, -1.0)
    rows = InMemoryRows(X[:n], t[:n])
    folds = rows.folds(cv.FOLDS)
    assert sorted(np.concatenate([held.X[:, 0] for _, held in folds])) == sorted(X[:n, 0])
    assert all(training.n_samples + held.n_samples == n for training, held in folds)
    fit = newton_fit(rows, np.full(d, 0.01), np.full(d, -10.0), nodes, weights, "exact", 1000, 1e-10)[:3]
    (score,) = cv.cross_validated_log_loss(rows, [fit], nodes, weights, "exact", 1000, 1e-10)
    test = cv.held_out_log_loss(InMemoryRows(X[n:], t[n:]), fit, nodes, weights)
    train = cv.held_out_log_loss(rows, fit, nodes, weights)
    assert train < score and score == pytest.approx(test, abs=0.05)
    assert InMemoryRows(X[:3], t[:3]).folds(cv.FOLDS) is None


def test_constant_columns_do_not_move_the_classifiers_evidence_rule():
    from pyro_vd.experiments.ard_data import make_ard_classification

    X, y, _, _, _ = make_ard_classification(300, 10, n_relevant=3, seed=1, n_test=10)
    alone = VDClassifier().fit(X, y)
    padded = VDClassifier().fit(np.hstack([X, np.full((300, 60), -3.0)]), y)
    assert padded.threshold_ == alone.threshold_
    assert (padded.relevance_[:10] == alone.relevance_).all() and not padded.relevance_[10:].any()
    np.testing.assert_allclose(padded.coef_[:10], alone.coef_, rtol=1e-6, atol=1e-9)
    # the search's bound is over the same d as its penalty (a bound over every column let features out
    # at one and back in at the other: 17 → 48–67 Newton steps with 300 constant columns, 8 of 40 seeds)
    assert padded.n_iter_ == alone.n_iter_
    from pyro_vd.analysis import relevance

    table = relevance(padded, threshold="evidence")  # τ(d) over the features that vary, as fitted
    assert (table["relevant"].to_numpy() == padded.relevance_).all()


def test_a_constant_column_is_out_of_an_lbfgs_fit():
    # L-BFGS left a constant column near its start, at a finite log α of 29–34: relevant at threshold=1e6
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=(200, 3)), np.full(200, 2.0)])
    y = (X[:, 0] + 0.5 * rng.normal(size=200) > 0).astype(int)
    fit = VDClassifier(solver="lbfgs", threshold=1e6).fit(X, y)
    assert fit.coef_[3] == 0.0 and np.isinf(fit.log_alpha_[3]) and not fit.relevance_[3]

"""
Logistic regression with feature relevance on scikit-learn's breast cancer data (bundled, no download):
VD logistic regression (Gauss–Hermite ELBO, Newton) against the relevance vector classifier, the
relevance table of both, and the forest plot of the VD coefficients.

    python examples/breast_cancer_relevance.py [--out coefficients.png]
"""

import argparse

import matplotlib

matplotlib.use("Agg")

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from pyro_vd.analysis import relevance
from pyro_vd.linear import RVC, VDClassifier
from pyro_vd.plots import plot_coefficients

parser = argparse.ArgumentParser()
parser.add_argument("--out", default=None, help="save the coefficient plot here (PNG)")
args = parser.parse_args()

data = load_breast_cancer()
X_train, X_test, y_train, y_test = train_test_split(data.data, data.target, test_size=0.3, random_state=0)
scaler = StandardScaler().fit(X_train)
X_train, X_test = scaler.transform(X_train), scaler.transform(X_test)
names = list(data.feature_names)

for estimator in (VDClassifier(), RVC()):
    estimator.fit(X_train, y_train)
    table = relevance(estimator, feature_names=names)
    accuracy = np.mean(estimator.predict(X_test) == y_test)
    print(
        f"\n{type(estimator).__name__}: test accuracy {accuracy:.3f}, {int(table['relevant'].sum())} of "
        f"{len(names)} features relevant"
    )
    print(table[table["relevant"]].sort_values("snr", ascending=False).round(3).to_string())
    assert accuracy > 0.93, accuracy

fig = plot_coefficients(VDClassifier().fit(X_train, y_train), feature_names=names)
if args.out:
    fig.savefig(args.out, dpi=110)
    print(f"\nsaved {args.out}")

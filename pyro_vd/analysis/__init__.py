"""Looking at what was learned: ArviZ ``InferenceData`` from a model and guide (or a fitted linear
estimator), and the table of feature relevance."""

from .inference_data import import_arviz, to_inference_data
from .relevance import relevance

__all__ = ["import_arviz", "relevance", "to_inference_data"]

"""An effect handler that refuses plates drawing a random subsample: analysis needs every row, aligned."""

from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample


class FullDataMessenger(Messenger):
    r"""
    Raise a ``ValueError`` when a ``pyro.plate(name, size, subsample_size=b)`` with :math:`b < size`
    is about to draw random indices. Evaluating such a model twice evaluates two different sets of rows,
    so draws stacked across calls (posterior predictive, pointwise log-likelihood, a deployed network's
    outputs) would not be aligned with the data. Plates given explicit indices (``subsample=``, as
    :class:`~pyro_vd.models.VDModel` does) or no subsampling pass.

    :param str purpose: what the full data are needed for, named in the error.
    """

    def __init__(self, purpose):
        super().__init__()
        self.purpose = purpose

    def _pyro_sample(self, msg):
        fn = msg["fn"]
        if not isinstance(fn, _Subsample) or msg["value"] is not None:
            return
        if fn.subsample_size is not None and 0 <= fn.subsample_size < fn.size:
            raise ValueError(
                f"plate {msg['name']!r} draws a random subsample ({fn.subsample_size} of {fn.size} rows) at "
                f"every call, so {self.purpose} would mix different rows. Run the model on all the rows "
                "(subsample_size=None, or subsample=torch.arange(size)) for this."
            )


class EvaluationMessenger(FullDataMessenger):
    """A :class:`FullDataMessenger` of pyro_vd's own evaluations (``to_inference_data``, the pruning
    checks): they read each row's log-density or output, never the likelihood's scale to the training
    set, so :class:`~pyro_vd.models.VDModel` takes a batch larger than ``num_data`` there (a test set).
    A user's own ``FullDataMessenger`` does not do this: an ELBO under it is still scaled, and refused."""


def evaluating():
    """True inside an :class:`EvaluationMessenger`."""
    from pyro.poutine.runtime import _PYRO_STACK

    return any(isinstance(messenger, EvaluationMessenger) for messenger in _PYRO_STACK)

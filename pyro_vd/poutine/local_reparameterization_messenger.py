"""An effect handler that turns Normal weight sites into :class:`LocalReparamWeight` tensors."""

import sys

from pyro.distributions import Independent, Normal
from pyro.poutine.messenger import Messenger
from torch.distributions import Normal as TorchNormal

from .._validation import check_bool
from .local_reparameterization import LocalReparamWeight

#: Methods of Pyro's ELBOs that run the model and guide; the frames whose ``self`` is looked at.
_ELBO_METHODS = frozenset(
    {
        "loss",
        "_loss",
        "loss_and_grads",
        "differentiable_loss",
        "_get_traces",
        "_get_trace",
        "_get_vectorized_trace",
    }
)


def _nonlinear_objective(depth=64):
    r"""
    The name of the ELBO running this model, when it is one whose objective is not linear in
    :math:`\sum_n \log p(y_n \mid w)` (Pyro's ``RenyiELBO``, ``ReweightedWakeSleep`` and
    ``TraceTailAdaptive_ELBO`` over more than one particle: a log-mean-exp of the particles' weights;
    with one particle the Rényi bound is the ELBO), else None.
    The trick replaces one weight sample by independent noise per row: the expectation of a sum over rows
    is kept, not that of a function of the whole sum (``RenyiELBO(alpha=0, num_particles=8)``, the IWAE
    bound, came out 1.3 nats above log Z, no longer a bound). Found by the callers' frames (names first,
    ``self`` only in an ELBO method's frame: a few microseconds).
    """
    from pyro.infer import RenyiELBO, ReweightedWakeSleep, TraceTailAdaptive_ELBO

    frame = sys._getframe(2)
    for _ in range(depth):
        if frame is None:
            return None
        if frame.f_code.co_name in _ELBO_METHODS:
            owner = frame.f_locals.get("self")
            if (
                isinstance(owner, RenyiELBO | ReweightedWakeSleep | TraceTailAdaptive_ELBO)
                and getattr(owner, "num_particles", 1) > 1
            ):
                return type(owner).__name__
        frame = frame.f_back
    return None


def _normal_base(fn):
    """The Normal under ``.to_event()`` wrappers, or None."""
    while isinstance(fn, Independent):
        fn = fn.base_dist
    return fn if isinstance(fn, TorchNormal | Normal) else None


class LocalReparameterizationMessenger(Messenger):
    r"""
    Local reparameterization for every latent site drawn from a Normal (a
    :class:`~pyro_vd.distributions.VDNormal` in particular, also through ``.to_event()``): instead of a
    weight sample, the site's value becomes a :class:`~pyro_vd.poutine.LocalReparamWeight`, from which
    ``F.linear`` and ``F.conv1d/2d/3d`` sample pre-activations
    :math:`b \sim \mathcal{N}(A\theta + \text{bias}, A^2\sigma^2)`.

    In SVI the guide draws the site first, so the value the model replays is the handle; observed
    sites, sites that already have a value, non-Normal sites and **auxiliary** sites (the
    ``*_unconstrained`` / latent sites of Pyro's ``AutoNormal`` or ``AutoDiagonalNormal`` in an
    ``AutoGuideList``, which are transformed, never multiplied into a layer) are left alone.
    Without this handler
    (or with ``enabled=False``) the guide samples whole weights: the weight-sampling mode, kept for
    comparison.

    Example::

        model = pyro_vd.models.LeNet300100(num_data=60000)
        guide = pyro_vd.guides.AutoVariationalDropout(model)
        svi = pyro.infer.SVI(model, guide, pyro.optim.Adam({"lr": 1e-3}),
                             pyro_vd.inference.VariationalDropoutELBO())
        with pyro_vd.poutine.local_reparameterization():
            svi.step(x, y)

    .. note:: A weight used by several linear calls gets independent noise in each (as in every LRT
        implementation); used by any other operation it is one fixed sample.

    :param bool enabled: turn the trick off without changing the code around it.
    """

    def __init__(self, enabled=True):
        super().__init__()
        self.enabled = check_bool(enabled, "enabled")  # ("no" is truthy: the trick stayed on)

    def _pyro_sample(self, msg):
        if not self.enabled or msg["is_observed"] or msg["value"] is not None:
            return
        if msg["infer"].get("is_auxiliary"):
            return
        base = _normal_base(msg["fn"])
        if base is None:
            return
        objective = _nonlinear_objective()
        if objective is not None:
            raise ValueError(
                f"local_reparameterization() under {objective}: the trick draws independent noise per row, "
                "which keeps the expectation of a sum of per-row log-likelihoods (Trace_ELBO, "
                "TraceMeanField_ELBO, VariationalDropoutELBO) but not of the ELBO's function of the whole "
                f"sum: {objective}'s value would not be its bound. Run it without the trick "
                "(local_reparameterization(enabled=False), or outside the with block)"
            )
        # VDNormal.variance is exp(log σ²) straight from its parameters; a Normal's is scale².
        msg["value"] = LocalReparamWeight(base.loc, base.variance, single_use=True)  # one pass's draw
        msg["done"] = True


def local_reparameterization(fn=None, enabled=True):
    """
    Functional form of :class:`LocalReparameterizationMessenger`: a context manager, or a wrapper
    of ``fn``::

        with local_reparameterization():
            svi.step(x, y)

        step = local_reparameterization(svi.step)
    """
    messenger = LocalReparameterizationMessenger(enabled=enabled)
    return messenger(fn) if fn is not None else messenger

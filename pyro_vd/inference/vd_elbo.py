"""The variational dropout ELBO: expected log-likelihood minus a closed-form KL, never sampled."""

import math
import numbers

import pyro.poutine as poutine
import torch
from pyro.distributions import Delta, Independent, Unit
from pyro.distributions.util import scale_and_mask, sum_rightmost
from pyro.infer.elbo import ELBO
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence

from .._validation import check_finite_real
from .._warnings import warn_at_caller
from ..distributions.kl_log_uniform import check_kl_method
from ..distributions.log_uniform import LogUniform
from ..distributions.vd_normal import VDNormal


def _unwrap(fn):
    event_dims = 0
    while isinstance(fn, Independent):
        event_dims += fn.reinterpreted_batch_ndims
        fn = fn.base_dist
    return fn, event_dims


class VariationalDropoutELBO(ELBO):
    r"""
    The SVI loss of variational dropout (Kingma et al. 2015; Molchanov et al. 2017):

    .. math::

        \text{loss} = -\Big(\tfrac{N}{B}\sum_{b} \log p(t_b \mid x_b, w)
        \;-\; \lambda \sum_{\text{sites}} \mathrm{KL}\big(q(w)\,\|\,p(w)\big)\Big),

    one Monte Carlo draw of the likelihood per particle (the :math:`N/B` comes from the model's
    ``pyro.plate(..., subsample=...)``), and the KL of each latent site:

    * :class:`~pyro_vd.distributions.VDNormal` against :class:`~pyro_vd.distributions.LogUniform`: in
      closed form by :func:`~pyro_vd.distributions.kl_log_uniform` with ``kl_method`` (default: each
      guide distribution's own ``kl_method``); no log-density of a weight sample is ever computed;
    * any other pair with a registered ``torch.distributions.kl_divergence`` (e.g. the neuron noise's
      ``TruncatedLogNormal ‖ TruncatedLogUniform``, ``Normal ‖ Normal``): in closed form;
    * every other latent site — other guides' sites in an
      :class:`~pyro.infer.autoguide.AutoGuideList`, such as ``AutoNormal``'s ``Delta`` sites, and
      **auxiliary** guide sites (``AutoNormal``'s ``*_unconstrained``, ``AutoDiagonalNormal``'s
      latent) — by the estimator of Pyro's :class:`~pyro.infer.Trace_ELBO`,
      :math:`\log q(v) - \log p(v)` at the guide's draw (for a ``Delta`` its ``log_density``, the
      Jacobian of the autoguide's transform; for an auxiliary site its :math:`\log q`, whose
      expectation is the entropy the model-facing ``Delta`` does not carry).

    A closed-form term is scaled by its guide site's scale and mask (as in
    :class:`~pyro.infer.TraceMeanField_ELBO`); in the estimator, log q takes the guide site's and log p
    the model site's (as in :class:`~pyro.infer.Trace_ELBO`). ``kl_weight`` multiplies every one of
    these terms, other guides' latents included (a KL warm-up anneals them all). A guide site that is
    not reparameterized is refused
    (use Pyro's ``Trace_ELBO`` for score-function gradients).

    ``kl_weight`` (:math:`\lambda`) can be changed between steps, e.g.
    ``elbo.kl_weight = linear_warmup(epoch, 5, 20)``; at 0 the KL is not computed at all. After each
    evaluation :attr:`last_terms` holds the data term, the KL and the weight used.

    It is an ordinary :class:`~pyro.infer.ELBO`: pass it to :class:`~pyro.infer.SVI`, or call
    ``elbo(model, guide)`` for the ``nn.Module`` whose ``forward`` is the differentiable loss (with
    ``pyro.settings.set(module_local_params=True)`` for plain PyTorch training loops).

    .. warning:: Like :class:`~pyro.infer.TraceMeanField_ELBO`, a closed-form KL per site assumes that
        the guide's distribution of a site and the model's are given the same ancestors (true for
        mean-field guides and for every guide Pyro ships); every latent model site must have a guide
        site, and every guide site must be reparameterized.

    A non-finite loss raises before any gradient is taken: a ``ValueError`` naming the model argument
    or observed site that holds NaN/inf, or a ``FloatingPointError`` when the data are finite (the
    optimization diverged; also when Pyro's validation finds a distribution parameter invalid on finite
    data), so that no parameter is ever overwritten with NaN. A finite loss that runs away is reported
    too: a :class:`DivergenceWarning` (once per model and guide) when the negative log-likelihood per
    data point, averaged over steps, rises more than 100 nats above the lowest it reached.

    :param str kl_method: ``None`` (each guide's choice), ``"molchanov"``, ``"kingma"`` or ``"exact"``.
    :param float kl_weight: the weight λ ≥ 0 of the KL term.
    :param int num_particles: likelihood draws averaged per step.
    """

    def __init__(self, *, kl_method=None, kl_weight=1.0, num_particles=1):
        if (
            isinstance(num_particles, bool)
            or not isinstance(num_particles, numbers.Integral)
            or num_particles < 1
        ):
            raise ValueError(f"num_particles must be a positive integer; got {num_particles!r}")
        super().__init__(num_particles=int(num_particles))
        self.kl_method = None if kl_method is None else check_kl_method(kl_method)
        self.kl_weight = kl_weight
        self._last_terms = None
        self._monitor = _DivergenceMonitor()

    @property
    def kl_weight(self):
        """The weight λ of the KL term."""
        return self._kl_weight

    @kl_weight.setter
    def kl_weight(self, value):
        number = check_finite_real(value, "kl_weight")  # (also a one-element tensor, e.g. a schedule's)
        if number < 0:
            raise ValueError(f"kl_weight must be a finite number >= 0; got {value!r}")
        self._kl_weight = number

    @property
    def last_terms(self):
        """``{"loss", "data", "kl", "kl_weight"}`` of the last evaluation, as floats (``kl`` is None
        when the weight was 0 and the KL was not computed). Reading them waits for the device; a loop on
        a GPU that sums them over steps should take :attr:`last_term_tensors` and read once per epoch."""
        if self._last_terms is None:
            return None
        return {k: (v.item() if isinstance(v, torch.Tensor) else v) for k, v in self._last_terms.items()}

    @property
    def last_term_tensors(self):
        """:attr:`last_terms` unread (no host synchronization): detached tensors on the loss's device,
        except where a term is a number (``data`` is 0.0 for a model without observed sites, ``kl`` None
        at weight 0); ``kl_weight`` is a float."""
        return None if self._last_terms is None else dict(self._last_terms)

    # --------------------------------------------------------------------------------- traces
    def _get_trace(self, model, guide, args, kwargs):
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        return model_trace, guide_trace

    def _site_kl(self, name, guide_site, model_site):
        """The KL term of one latent site, scaled and summed: in closed form where there is one (scaled
        by the guide site's scale and mask, as in TraceMeanField_ELBO), else Trace_ELBO's estimator
        log q(v) − log p(v), each side scaled by its own site's scale and mask."""
        q, p = guide_site["fn"], model_site["fn"]
        if q.event_dim != p.event_dim:  # Trace_ELBO refuses this too; a log-density would broadcast
            raise ValueError(
                f"site {name!r}: the guide's distribution has event_dim {q.event_dim}, the model's "
                f"{p.event_dim} (use .to_event() on the same dims on both sides)"
            )
        q_base, q_event_dims = _unwrap(q)
        p_base, _ = _unwrap(p)
        closed = None
        if isinstance(q_base, VDNormal) and isinstance(p_base, LogUniform):
            scale, mask = guide_site["scale"], guide_site["mask"]
            if mask is None and (not isinstance(scale, torch.Tensor) or scale.dim() == 0):
                # everything is summed: the fused node that returns the total (the hot path)
                return q_base.kl_to_log_uniform_sum(self.kl_method) * scale
            closed = sum_rightmost(q_base.kl_to_log_uniform(self.kl_method), q_event_dims)
        elif not isinstance(q_base, Delta):
            # A Delta is the model-facing site of Pyro's AutoNormal, AutoDiagonalNormal, … (the real q
            # sits on an auxiliary site): its registered KL, −log p(v), would drop its log_density.
            try:
                closed = kl_divergence(q, p)
            except NotImplementedError:
                pass
        if closed is not None:
            return scale_and_mask(closed, guide_site["scale"], guide_site["mask"]).sum()
        value = model_site["value"]
        log_q = scale_and_mask(q.log_prob(value), guide_site["scale"], guide_site["mask"]).sum()
        log_p = scale_and_mask(p.log_prob(value), model_site["scale"], model_site["mask"]).sum()
        return log_q - log_p

    def _terms(self, model_trace, guide_trace):
        data = 0.0
        self._data_count = 0.0  # how many data points the data term sums over (after N/B scaling)
        kl = 0.0 if self._kl_weight > 0 else None
        for name, site in model_trace.nodes.items():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if site["is_observed"]:  # the likelihood, pyro.factor and pyro.deterministic sites
                log_prob = site["fn"].log_prob(site["value"])
                data = data + scale_and_mask(log_prob, site["scale"], site["mask"]).sum()
                if not site["infer"].get("_deterministic") and not isinstance(site["fn"], Unit):
                    self._data_count = self._data_count + _count(log_prob, site["scale"])
                continue
            guide_site = guide_trace.nodes.get(name)
            if guide_site is None:
                raise ValueError(f"latent site {name!r} of the model has no site in the guide")
            _check_reparameterized(name, guide_site)
            if kl is not None:
                kl = kl + self._site_kl(name, guide_site, site)
        if kl is not None:
            # Guide sites with no latent model site: auxiliary ones (AutoNormal's *_unconstrained) and
            # ones the model observes (poutine.condition): their log q, as in Trace_ELBO.
            for name, site in guide_trace.nodes.items():
                if site["type"] != "sample" or site_is_subsample(site):
                    continue
                model_site = model_trace.nodes.get(name)
                if model_site is not None and not model_site["is_observed"]:
                    continue
                _check_reparameterized(name, site)
                log_q = site["fn"].log_prob(site["value"])
                kl = kl + scale_and_mask(log_q, site["scale"], site["mask"]).sum()
        return data, kl

    # ------------------------------------------------------------------------------- the loss
    def differentiable_loss(self, model, guide, *args, **kwargs):
        """The loss as a differentiable tensor (averaged over particles)."""
        return self._loss_and_value(model, guide, args, kwargs)[0]

    def _loss_and_value(self, model, guide, args, kwargs):
        """The differentiable loss, and its float where the finiteness check read it (a training step
        with observed data), else None."""
        loss = data_total = kl_total = 0.0
        for _ in range(self.num_particles):
            try:
                model_trace, guide_trace = self._get_trace(model, guide, args, kwargs)
                data, kl = self._terms(model_trace, guide_trace)
            except ValueError as error:  # e.g. a distribution's validation tripping over NaN data
                _check_finite_arguments(args, kwargs, error)
                if str(error).startswith("Expected parameter"):  # Pyro's validation, on finite data
                    raise FloatingPointError(
                        "a distribution's parameter is invalid although the data are finite: the "
                        "optimization diverged (try a smaller learning rate, a KL warm-up, or clipping "
                        f"log α), or the model computes an invalid parameter. {str(error).splitlines()[0]}"
                    ) from error
                raise
            particle = -data if kl is None else self._kl_weight * kl - data
            loss = loss + particle / self.num_particles
            data_total = data_total + data / self.num_particles
            if kl is not None:
                kl_total = kl_total + kl / self.num_particles
        if not isinstance(loss, torch.Tensor):
            if kl is None and any(
                site["type"] == "sample" and not site["is_observed"] for site in model_trace.nodes.values()
            ):
                raise ValueError(
                    "the model has no observed site, and with kl_weight=0 the KL of its latent sites is "
                    "not computed: nothing to optimize"
                )
            raise ValueError("the model has no observed site and no latent site: nothing to optimize")
        # training steps only (not loss() on held-out data) feed the divergence monitor
        watched = (
            torch.is_grad_enabled() and isinstance(data_total, torch.Tensor) and _positive(self._data_count)
        )
        if watched:  # the loss and the monitor's value in one read: one host synchronization on a GPU
            nll = -data_total.detach() / self._data_count
            dtype = torch.promote_types(loss.dtype, nll.dtype)  # not float64: MPS has none
            pair = torch.stack([loss.detach().to(dtype).reshape(()), nll.to(dtype).reshape(())])
            loss_value, nll_value = pair.tolist()
            finite = math.isfinite(loss_value)
        else:
            finite = bool(torch.isfinite(loss))
        if not finite:
            _diagnose_nonfinite(model_trace, args, kwargs)
        if watched:
            self._monitor.watch((id(model), id(guide)), nll_value)
        self._last_terms = {
            "loss": loss.detach(),
            "data": data_total.detach() if isinstance(data_total, torch.Tensor) else data_total,
            "kl": None if self._kl_weight == 0 else _detach(kl_total),
            "kl_weight": self._kl_weight,
        }
        return loss, (loss_value if watched else None)

    def loss(self, model, guide, *args, **kwargs):
        """The loss as a float, without gradients."""
        with torch.no_grad():
            return self.differentiable_loss(model, guide, *args, **kwargs).item()

    def loss_and_grads(self, model, guide, *args, **kwargs):
        """The loss as a float; its gradients are accumulated into the parameters."""
        loss, value = self._loss_and_value(model, guide, args, kwargs)
        loss.backward(retain_graph=self.retain_graph)
        # the float the finiteness check read before the backward pass was queued: no second wait
        return loss.item() if value is None else value


class DivergenceWarning(RuntimeWarning):
    """The optimization is diverging: the data term rose far above the best it reached."""


class _DivergenceMonitor:
    r"""
    Watches the negative log-likelihood per data point, :math:`-\text{data}/N`, of the training steps
    through a moving average (weight 0.1 on each step, which smooths minibatch noise), and warns once
    when the average rises above the lowest it reached by more than ``max(rise, 10·|lowest|)`` nats:
    both an absolute and a relative margin, so that minibatch swings of a large per-datum term (a
    regression in raw units) do not count. The per-datum data term is used rather than the loss because
    the loss legitimately rises by orders of magnitude during a KL warm-up. Adam at learning rate 10 on
    a small MLP drives the average from 1.2 to 121 within 60 steps (the loss from 2.6e3 to 4e7); no
    training run of the test suite, where warnings are errors, comes near the margin. The ELBO reads each
    value together with its check that the loss is finite (one transfer, which that check needs anyway);
    a new (model, guide) pair starts a new watch.
    """

    def __init__(self, rise=100.0):
        self.rise = rise
        self._reset(None)

    def _reset(self, key):
        self.key, self.average, self.best, self.warned = key, None, math.inf, False

    def watch(self, key, nll):
        if key != self.key:
            self._reset(key)
        self.update(float(nll))

    def update(self, nll):
        self.average = nll if self.average is None else 0.9 * self.average + 0.1 * nll
        self.best = min(self.best, self.average)
        if not self.warned and self.average - self.best > max(self.rise, 10 * abs(self.best)):
            self.warned = True
            warn_at_caller(
                f"the optimization is diverging: the negative log-likelihood per data point rose from "
                f"{self.best:.3g} to {self.average:.3g} (moving average). Lower the learning rate, or warm "
                "up the KL.",
                DivergenceWarning,
            )


def _count(log_prob, scale):
    """The number of data points a scaled log-density sums over: Σ scale (a tensor scale too)."""
    if isinstance(scale, torch.Tensor):
        return (scale * torch.ones_like(log_prob)).sum()
    return float(scale) * log_prob.numel()


def _positive(count):
    return bool(count > 0) if not isinstance(count, torch.Tensor) else True


def _check_reparameterized(name, site):
    if not site["fn"].has_rsample:
        raise ValueError(
            f"guide site {name!r} ({type(_unwrap(site['fn'])[0]).__name__}) is not reparameterized: "
            "VariationalDropoutELBO takes pathwise gradients only; use Pyro's Trace_ELBO (score-function "
            "gradients) or TraceEnum_ELBO for it"
        )


def _detach(value):
    return value.detach() if isinstance(value, torch.Tensor) else value


def _nonfinite(value):
    return isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()


def _check_finite_arguments(args, kwargs, cause=None):
    for i, arg in enumerate(args):
        if _nonfinite(arg):
            raise ValueError(f"the model's argument {i} contains NaN or inf") from cause
    for key, arg in kwargs.items():
        if _nonfinite(arg):
            raise ValueError(f"the model's argument {key!r} contains NaN or inf") from cause


def _diagnose_nonfinite(model_trace, args, kwargs):
    _check_finite_arguments(args, kwargs)
    for name, site in model_trace.nodes.items():
        if site["type"] == "sample" and site["is_observed"] and _nonfinite(site["value"]):
            raise ValueError(f"observed site {name!r} contains NaN or inf")
    raise FloatingPointError(
        "the loss is not finite although the data are: the optimization diverged (try a smaller "
        "learning rate, a KL warm-up, or clipping log α)"
    )

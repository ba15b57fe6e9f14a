r"""
Is log α still moving? :class:`LogAlphaDrift` compares a guide's log α between two moments of training
(say, two epochs) so that "pruned" can be trusted before a run is stopped.

Under SVI, the log α of a weight with no information climbs slowly (its gradient decays like 1/α), so
the pruned fraction can keep rising long after the loss looks flat. What decides whether the pruning
is final is whether weights still **cross the threshold** (kept ↔ pruned), how fast the log α near
the threshold still move, and whether weights are **heading** for it at their trend, not the loss.
The last matters most under Adam: a weight whose gradient was large earlier in the run (an irrelevant
feature that first shared a correlated neighbour's weight) moves by a small fraction of the learning
rate a step for as long as Adam's second-moment average remembers that gradient (β₂ = 0.999: thousands
of steps), so its log α can climb steadily from −5 towards the bound while no weight crosses and none
lies near the bound. Usage::

    drift = LogAlphaDrift(guide, threshold=3.0)
    for epoch in range(epochs):
        train_one_epoch()
        report = drift.update()        # the change since the last update
        print(report)                  # e.g. "412 of 266200 weights crossed log α = 3 …"
        if report.settled:
            break
"""

import math
from dataclasses import dataclass

import torch

from .pruning import DEFAULT_THRESHOLD, check_finite_posterior, check_vd_guide, log_alpha_bound

#: A run counts as settled when at most this share of the weights crossed the threshold (and at most
#: this share are heading for it) …
DEFAULT_CROSSING_TOLERANCE = 1e-3
#: … and the log α within 1 of the threshold moved by less than this (median |Δ log α|).
DEFAULT_MOVE_TOLERANCE = 0.05


@dataclass
class Drift:
    """The change of log α between two updates of :class:`LogAlphaDrift`.

    :ivar int crossed: weights whose decision changed (kept ↔ pruned at the threshold).
    :ivar int newly_pruned: of those, weights that went from kept to pruned.
    :ivar int total: all weights of the guide's sites.
    :ivar int near_threshold: weights whose log α lies within 1 of the threshold now.
    :ivar float median_move: the median |Δ log α| of the weights near the threshold (0 if none).
    :ivar int heading: weights on course to cross: at their trend over the later half of the updates so
        far, towards the threshold, they reach it within as many updates again as the tracker has seen
        (the full rule: :class:`LogAlphaDrift`).
    :ivar int held: weights whose log α the guide still holds at its start (``hold_log_alpha``): while
        any is, log α has not trained yet, nothing is settled, and the tracker starts again when the
        hold ends.
    :ivar bool settled: ``crossed`` and ``heading`` are each at most ``crossing_tolerance · total``,
        ``median_move ≤ move_tolerance``, and no weight is held.
    """

    crossed: int
    newly_pruned: int
    total: int
    near_threshold: int
    median_move: float
    settled: bool
    threshold: float
    heading: int = 0
    held: int = 0

    @property
    def crossed_fraction(self):
        return self.crossed / self.total if self.total else 0.0

    def to_dict(self):
        return {
            "crossed": self.crossed,
            "newly_pruned": self.newly_pruned,
            "near_threshold": self.near_threshold,
            "median_move": self.median_move,
            "heading": self.heading,
            "held": self.held,
            "settled": self.settled,
        }

    def __str__(self):
        if self.held:
            return (
                f"log α of {self.held} of {self.total} weights is held at its start by the guide "
                "(hold_log_alpha): not trained yet"
            )
        state = "settled" if self.settled else "still drifting"
        return (
            f"{self.crossed} of {self.total} weights crossed log α = {self.threshold:g} "
            f"({self.newly_pruned} newly pruned); {self.near_threshold} lie within 1 of it, moving by "
            f"{self.median_move:.3g} (median); {self.heading} heading for it: {state}"
        )


class LogAlphaDrift:
    """
    Tracks the log α of every weight site of a trained :class:`~pyro_vd.guides.AutoVariationalDropout`
    between calls of :meth:`update`.

    Besides the weights that crossed the threshold since the last update and the median move of those
    within 1 of it, each update counts the weights **heading** for the threshold. After k updates, a
    weight's trend is its mean move per update over the later part of them: a window of k/2 to 3/4·k
    updates (all of them at k = 1), from snapshots kept at updates 0, 1, 2, 4, 8, … (at most three
    copies of log α are held). A weight is heading for the threshold when its trend points towards it
    and would reach it within k more updates (as many again as the tracker has seen), it moved by more
    than ``move_tolerance`` over the window (not a weight that sits at the threshold with tiny jitter),
    and its last move was not 0 (a weight that stopped, say with the learning rate decayed to 0, is not
    heading); a weight that the guide's ``max_log_alpha`` (``min_log_alpha``) keeps from reaching the
    threshold never counts. Since the window is at least half the horizon, a weight counts once it moved
    towards the threshold by at least half its distance over the window: one that only jitters around a
    fixed value counts when its jitter is comparable with that (a Gaussian jitter of standard deviation
    s = 0.5 per update counted in 9.5 % of the updates 4s from the threshold and in 2.5 % 6s from
    it, over updates 50–300; at s = 0.1 and 20s, never). That errs towards "still drifting".

    Measured on the linear ARD model (20 000 × 100, correlated features, batches of 10 %, one update
    per epoch): an irrelevant feature's log α climbed from −4.7 at step 2000 to −2.3 at step 3000 (about
    0.024 an epoch), more than 1 from the bound τ(d) = −2.29 until the last epochs, while no weight
    crossed and none lay near the bound, so the crossings and the moves near the bound alone reported
    "settled" from step 1500 to 2750; it is counted as heading from step 2000 until it crossed. On
    another draw a feature climbed through the last unit below the bound at 0.024–0.039 an epoch, under
    the median-move tolerance: it is counted as heading until it crossed.

    :param guide: the guide (already run once).
    :param threshold: the pruning rule on log α (:func:`~pyro_vd.inference.pruning.log_alpha_bound`: a
        number, ``"sparse_vd"``, ``"evidence"``, or None for the model's rule, else Sparse VD's 3).
    :param float crossing_tolerance: the largest share of weights that may still cross the threshold, and
        the largest share that may be heading for it, for :attr:`Drift.settled`.
    :param float move_tolerance: the largest median |Δ log α| near the threshold for :attr:`Drift.settled`.
    """

    def __init__(
        self,
        guide,
        threshold=None,
        *,
        crossing_tolerance=DEFAULT_CROSSING_TOLERANCE,
        move_tolerance=DEFAULT_MOVE_TOLERANCE,
    ):
        for name, value in (("crossing_tolerance", crossing_tolerance), ("move_tolerance", move_tolerance)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
        if not check_vd_guide(guide).site_names:
            raise ValueError(
                "LogAlphaDrift follows the log α of weight sites, and the guide has none (a guide of "
                "neuron noise only, sparse_weights=False): follow neuron_sparsity(guide) instead"
            )
        self.guide = guide
        bounds = {name: log_alpha_bound(guide, name, threshold) for name in guide.site_names}
        #: the log α bound of the rule (of the first site, where the sites' bounds differ)
        self.threshold = next(iter(bounds.values()), DEFAULT_THRESHOLD)
        self._bounds = torch.cat(
            [torch.full((guide.get_log_alpha(n).numel(),), b, dtype=torch.float64) for n, b in bounds.items()]
        )
        self.crossing_tolerance = float(crossing_tolerance)
        self.move_tolerance = float(move_tolerance)
        self._last = self._snapshot()
        self._updates = 0
        # (update count, snapshot) at counts 0, 1, 2, 4, 8, …: the last two, the start of the trend
        self._anchors = [(0, self._last)]

    def _snapshot(self):
        values = []
        for name in self.guide.site_names:
            log_alpha = self.guide.get_log_alpha(name)
            check_finite_posterior(log_alpha, f"log α of site {name!r}")  # NaN would count as crossed
            values.append(log_alpha.flatten())
        return torch.cat(values)

    def state_dict(self):
        """What the tracker has seen (its update count and snapshots), as plain data and CPU tensors: a
        run resumed from a checkpoint that keeps it (``extra``) reports the same trends as one that was
        never interrupted. A fresh tracker starts its trends again from its construction."""
        return {
            "updates": self._updates,
            "last": self._last.detach().cpu(),
            "anchors": [(count, snapshot.detach().cpu()) for count, snapshot in self._anchors],
        }

    def load_state_dict(self, state):
        """Go on from :meth:`state_dict`; a ValueError if it belongs to a guide of another size."""
        try:
            updates, last = int(state["updates"]), torch.as_tensor(state["last"])
            anchors = [(int(count), torch.as_tensor(snapshot)) for count, snapshot in state["anchors"]]
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"not a LogAlphaDrift state: {error}") from error
        size = self._last.numel()
        if last.numel() != size or any(snapshot.numel() != size for _, snapshot in anchors) or not anchors:
            raise ValueError(f"the LogAlphaDrift state is of {last.numel()} weights; this guide has {size}")
        device, dtype = self._last.device, self._last.dtype
        self._updates, self._last = updates, last.to(device, dtype)
        self._anchors = [(count, snapshot.to(device, dtype)) for count, snapshot in anchors]

    def update(self):
        """The :class:`Drift` since the last update (or since construction), and a new reference point."""
        now = self._snapshot()
        before, self._last = self._last, now
        bound = self._bounds.to(now)
        held = self._held()
        if held:  # nothing to judge yet; the trend starts when log α starts to train
            self._updates, self._anchors = 0, [(0, now)]
            return Drift(
                crossed=0,
                newly_pruned=0,
                total=now.numel(),
                near_threshold=int(((now - bound).abs() <= 1.0).sum()),
                median_move=0.0,
                settled=False,
                threshold=self.threshold,
                held=held,
            )
        kept_before, kept_now = before <= bound, now <= bound
        crossed = kept_before != kept_now
        near = (now - bound).abs() <= 1.0
        moves = (now - before)[near].abs()
        median_move = float(moves.median()) if moves.numel() else 0.0
        crossed_count = int(crossed.sum())
        heading_count = int(self._heading(now, before, bound, kept_now).sum())
        total = now.numel()
        limit = self.crossing_tolerance * total
        return Drift(
            crossed=crossed_count,
            newly_pruned=int((kept_before & ~kept_now).sum()),
            total=total,
            near_threshold=int(near.sum()),
            median_move=median_move,
            settled=crossed_count <= limit and heading_count <= limit and median_move <= self.move_tolerance,
            threshold=self.threshold,
            heading=heading_count,
        )

    def _held(self):
        """The weights whose log α the guide holds now (see ``hold_log_alpha``)."""
        if not getattr(self.guide, "log_alpha_held", False):
            return 0
        return sum(
            self.guide.get_log_alpha(name).numel()
            for name in self.guide.site_names
            if self.guide.parameterization(name) != "additive"
        )

    def _heading(self, now, before, bound, kept_now):
        """The weights on course to cross (see the class's docstring); records this update's snapshot."""
        self._updates += 1
        k = self._updates
        # the latest anchor that leaves a window of at least half the updates (k/2 … 3/4·k of them)
        start, anchor = next((i, a) for i, a in reversed(self._anchors) if k - i >= k / 2)
        if k & (k - 1) == 0:  # a power of two: a new anchor, the oldest is no longer needed
            self._anchors = [*self._anchors[-1:], (k, now)]
        towards = torch.where(kept_now, 1.0, -1.0).to(now)  # kept: up to the bound; pruned: down to it
        trend = (now - anchor.to(now)) * towards / (k - start)  # > 0 towards the bound
        distance = (bound - now) * towards  # ≥ 0 for a kept weight, > 0 for a pruned one
        heading = (
            (trend > 0)
            & (trend * k >= distance)
            & (trend * (k - start) > self.move_tolerance)  # a move over the window, not a tiny jitter
            & (now != before)
        )
        # a weight the guide's clip keeps from the bound cannot cross it
        high, low = getattr(self.guide, "max_log_alpha", None), getattr(self.guide, "min_log_alpha", None)
        if high is not None:
            heading &= ~kept_now | (bound < high)
        if low is not None:
            heading &= kept_now | (bound >= low)
        return heading

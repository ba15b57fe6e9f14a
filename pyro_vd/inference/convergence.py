r"""
Is log α still moving? :class:`LogAlphaDrift` compares a guide's log α between two moments of training
(say, two epochs) so that "pruned" can be trusted before a run is stopped.

Under SVI, the log α of a weight with no information climbs slowly (its gradient decays like 1/α), so
the pruned fraction can keep rising long after the loss looks flat. What decides whether the pruning
is final is whether weights still **cross the threshold** (kept ↔ pruned) and how fast the log α near
the threshold still move, not the loss. Usage::

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

from .pruning import DEFAULT_THRESHOLD, log_alpha_bound

#: A run counts as settled when fewer than this share of the weights crossed the threshold …
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
    :ivar bool settled: ``crossed / total < crossing_tolerance`` and ``median_move < move_tolerance``.
    """

    crossed: int
    newly_pruned: int
    total: int
    near_threshold: int
    median_move: float
    settled: bool
    threshold: float

    @property
    def crossed_fraction(self):
        return self.crossed / self.total if self.total else 0.0

    def to_dict(self):
        return {
            "crossed": self.crossed,
            "newly_pruned": self.newly_pruned,
            "near_threshold": self.near_threshold,
            "median_move": self.median_move,
            "settled": self.settled,
        }

    def __str__(self):
        state = "settled" if self.settled else "still drifting"
        return (
            f"{self.crossed} of {self.total} weights crossed log α = {self.threshold:g} "
            f"({self.newly_pruned} newly pruned); {self.near_threshold} lie within 1 of it, moving by "
            f"{self.median_move:.3g} (median): {state}"
        )


class LogAlphaDrift:
    """
    Tracks the log α of every weight site of a trained :class:`~pyro_vd.guides.AutoVariationalDropout`
    between calls of :meth:`update`.

    :param guide: the guide (already run once).
    :param threshold: the pruning rule on log α (:func:`~pyro_vd.inference.pruning.log_alpha_bound`: a
        number, ``"sparse_vd"``, ``"evidence"``, or None for the model's rule, else Sparse VD's 3).
    :param float crossing_tolerance: the largest share of weights that may still cross the threshold for
        :attr:`Drift.settled`.
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
        self.guide = guide
        bounds = {name: log_alpha_bound(guide, name, threshold) for name in guide.site_names}
        #: the log α bound of the rule (of the first site, where the sites' bounds differ)
        self.threshold = next(iter(bounds.values()), DEFAULT_THRESHOLD)
        self._bounds = torch.cat(
            [torch.full((guide.get_log_alpha(n).numel(),), b) for n, b in bounds.items()]
        )
        self.crossing_tolerance = float(crossing_tolerance)
        self.move_tolerance = float(move_tolerance)
        self._last = self._snapshot()

    def _snapshot(self):
        return torch.cat([self.guide.get_log_alpha(name).flatten() for name in self.guide.site_names])

    def update(self):
        """The :class:`Drift` since the last update (or since construction), and a new reference point."""
        now = self._snapshot()
        before, self._last = self._last, now
        bound = self._bounds.to(now)
        kept_before, kept_now = before <= bound, now <= bound
        crossed = kept_before != kept_now
        near = (now - bound).abs() <= 1.0
        moves = (now - before)[near].abs()
        median_move = float(moves.median()) if moves.numel() else 0.0
        crossed_count = int(crossed.sum())
        total = now.numel()
        return Drift(
            crossed=crossed_count,
            newly_pruned=int((kept_before & ~kept_now).sum()),
            total=total,
            near_threshold=int(near.sum()),
            median_move=median_move,
            settled=crossed_count <= self.crossing_tolerance * total and median_move <= self.move_tolerance,
            threshold=self.threshold,
        )

"""Schedules for the weight of the KL term."""

from .._validation import check_finite_real


def linear_warmup(t, start, end):
    """
    KL weight for a linear warm-up: 0 before ``start``, rising linearly to 1 at ``end``, 1 after
    (Sparse VD: 0 for epochs < 5, then linear to 1 at epoch 20). ``t`` may be fractional
    (e.g. ``epoch + step / steps_per_epoch``).

    :param float t: the current time (epoch or step).
    :param float start: when the weight starts to grow.
    :param float end: when it reaches 1 (``end > start``; ``end == start`` is a step function).
    """
    t, start, end = (check_finite_real(v, label) for label, v in (("t", t), ("start", start), ("end", end)))
    if end < start:
        raise ValueError(f"end ({end}) must not be before start ({start})")
    if t < start:
        return 0.0
    if t >= end:
        return 1.0
    return (t - start) / (end - start)

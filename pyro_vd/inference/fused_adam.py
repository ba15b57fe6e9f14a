"""Adam for ``pyro.infer.SVI``: one optimizer step for all the parameters a step touched."""

import pyro
import torch
from pyro.optim import PyroOptim
from torch.utils.weak import WeakIdKeyDictionary

from .optim import _choice_is_ours, _fusable

# The tensors FusedAdam has taken a gradient from, by identity and only while they live. Under
# pyro.optim such a tensor's .grad holds zeros for good (SVI.step's zero_grads), a fact of the tensor, not
# of one optimizer: a new optimizer, a checkpoint restored into a model's own nn.Parameter, or a copy of
# the optimizer must see it too.
_HAD_GRAD = WeakIdKeyDictionary()


class FusedAdam(PyroOptim):
    r"""
    ``pyro.optim.Adam`` with the same update, made as one ``torch.optim.Adam`` step over every parameter
    the SVI step touched, fused where torch has the kernel (floating-point parameters on the CPU since
    torch 2.4, CUDA), instead of one ``torch.optim.Adam`` per parameter:

    .. math:: m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
              \theta \leftarrow \theta - \eta\,\hat m / (\sqrt{\hat v} + \epsilon)

    per parameter, each with its own step count, as ``pyro.optim.Adam`` keeps them. After the step the
    gradients it used are set to ``None`` (as ``torch.optim.Optimizer.zero_grad`` does by default), so
    that ``SVI.step``'s ``zero_grads`` has nothing to replace and the next backward pass writes the
    gradients instead of adding them to zeros. Where ``pyro.optim.Adam`` would step a parameter with a
    gradient of zeros (one that had a gradient before and is traced but has none this step: Pyro's
    ``zero_grads`` left zeros there, so its moments keep moving it), this optimizer does the same: it
    remembers, per tensor, that it took a gradient from it (a user who sets such a gradient to ``None``
    between steps stops Pyro's zero steps, not these).

    Why: ``pyro.optim`` makes one torch optimizer per parameter and steps them one by one, and ``SVI.step``
    then writes a new tensor of zeros into every gradient, to which the next backward pass adds. For
    Sparse VD on LeNet-300-100 (9 parameter tensors, 532 000 numbers, 2 CPU threads) ``SVI.step`` takes
    0.88× the time with this optimizer (median of 4 runs of ``benchmarks/throughput.py``, 0.84–0.95),
    and the gradients' zeros no longer take memory::

        svi = pyro.infer.SVI(model, guide, pyro_vd.inference.FusedAdam({"lr": 1e-3}), elbo)

    Like any :class:`pyro.optim.PyroOptim` it takes ``optim_args`` (``lr``, ``betas``, ``eps``,
    ``weight_decay``, ``amsgrad``, …, or a callable of the parameter's name that returns them: parameters
    with equal arguments share one step), ``clip_args``, and saves and restores its state by parameter
    name with ``get_state``/``set_state``/``save``/``load`` in ``pyro.optim``'s format, so a state saved by
    ``pyro.optim.Adam`` (or :func:`~pyro_vd.inference.save_checkpoint`) resumes here and back. A restored
    state brings each parameter's moments and step count; the learning rate and the other arguments are
    this optimizer's own. With an explicit ``fused`` or ``foreach``, or ``differentiable``/``capturable``,
    torch's choice is left alone. Learning-rate schedulers are not supported (use
    ``pyro.optim.ExponentialLR`` and the like with ``pyro.optim.Adam``). The values of ``optim_objs`` are
    shared: every parameter with the same arguments maps to the same ``torch.optim.Adam``, so a loop that
    changes the learning rate must visit each optimizer once (``set(optim.optim_objs.values())``).
    """

    def __init__(self, optim_args, clip_args=None):
        if not (callable(optim_args) or isinstance(optim_args, dict)):
            raise TypeError(
                f"optim_args must be a dict of Adam's arguments or a callable of a parameter's name that "
                f"returns one; got {type(optim_args).__name__}"
            )
        if not (clip_args is None or callable(clip_args) or isinstance(clip_args, dict)):
            raise TypeError(
                f"clip_args must be None, a dict of clip_norm and/or clip_value, or a callable that returns "
                f"one; got {type(clip_args).__name__}"
            )
        if isinstance(optim_args, dict):
            _check_args(optim_args)
        if isinstance(clip_args, dict):
            _check_clip_args(clip_args)
        super().__init__(torch.optim.Adam, optim_args, clip_args)
        # optim_objs (PyroOptim's): param -> the torch.optim.Adam that holds its state; parameters with
        # equal arguments share one (its single group's "params" is set to the ones each step updates)
        self._optimizers = {}  # key of the arguments -> torch.optim.Adam

    def __call__(self, params, *args, **kwargs):
        """Take one Adam step for each parameter in ``params`` that has a gradient, then set those
        gradients to ``None``."""
        params = list(params)
        new = [p for p in params if p not in self.optim_objs]
        if new:
            self._forget_dropped()
            for p in new:
                self._register(p)  # also without a gradient: a restored state is taken now, as in Pyro
        stepped = {}
        for p in params:
            if p.grad is None:
                if p not in _HAD_GRAD:
                    continue
                # pyro.optim.Adam would find the zeros SVI.step's zero_grads left and step with them
                p.grad = torch.zeros_like(p)
            _HAD_GRAD[p] = True
            if self.grad_clip[p] is not None:
                self.grad_clip[p](p)
            stepped.setdefault(id(self.optim_objs[p]), (self.optim_objs[p], []))[1].append(p)
        for optimizer, group in stepped.values():
            optimizer.param_groups[0]["params"] = group
            optimizer.step(*args, **kwargs)
            # torch's fused kernel writes the parameters without moving their version counters, which is
            # how the guide tells a training step (trained_steps, the hold) and a new iterate of its
            # averages from another backward pass of the same step: move them, as unfused Adam does
            torch.autograd.graph.increment_version(group)
        for _, group in stepped.values():
            for p in group:
                p.grad = None

    def get_state(self):
        """``{param name: state dict}`` as ``pyro.optim.PyroOptim.get_state`` gives it (one group of one
        parameter each; ``fused`` as given, None where this optimizer chose it)."""
        state = {}
        for p, optimizer in self.optim_objs.items():
            group = {k: v for k, v in optimizer.param_groups[0].items() if k != "params"}
            if getattr(optimizer, "chose_fused", False):  # (an attribute a pickle does not keep)
                group["fused"] = None
            saved = optimizer.state.get(p)
            state[pyro.get_param_store().param_name(p)] = {
                "state": {0: dict(saved)} if saved else {},
                "param_groups": [{**group, "params": [0]}],
            }
        return state

    def _register(self, p):
        """Give ``p`` to the torch optimizer for its arguments (made on first need), with its restored
        state if ``set_state`` left one for its name. Everything that can fail is done first."""
        name = pyro.get_param_store().param_name(p)
        args = self._optim_args_of(p, name)
        chose_fused = _choice_is_ours(args)
        if chose_fused:
            args["fused"] = _fusable([p])
        clip = self._clip_of(p, name)
        saved = self._state_waiting_to_be_consumed.get(name)
        state = None if saved is None else _restored(p, name, saved, args)
        key = _key(args)
        optimizer = self._optimizers.get(key)
        if optimizer is None:
            optimizer = torch.optim.Adam([p], **args)
            optimizer.chose_fused = chose_fused
            self._optimizers[key] = optimizer
        self.optim_objs[p] = optimizer
        self.grad_clip[p] = clip
        if saved is not None:
            del self._state_waiting_to_be_consumed[name]
            if state:  # (its gradient is None until a step gives it one, as for pyro.optim's fresh tensors)
                optimizer.state[p] = state

    def _clip_of(self, p, name):
        """``p``'s gradient clipping (None for none), its arguments checked; the callable called once."""
        try:
            clip_args = self._get_grad_clip_args(p)
        except AssertionError as error:  # pyro.optim asserts that the callable's result is a dict
            if not str(error).startswith("per-param clip arg"):
                raise
            raise TypeError(
                f"clip_args' callable must return a dict of clip_norm and/or clip_value (for parameter "
                f"{name!r})"
            ) from error
        _check_clip_args(clip_args, name)
        if not clip_args:
            return None
        return lambda tensor: self._clip_grad(tensor, **clip_args)

    def _optim_args_of(self, p, name):
        if not callable(self.pt_optim_args):
            return dict(self.pt_optim_args)
        try:
            args = self._get_optim_args(p)
        except AssertionError as error:  # pyro.optim asserts that the callable's result is a dict
            if not str(error).startswith("per-param optim arg"):
                raise
            args = None
        _check_args(args, name)
        return dict(args)

    def _forget_dropped(self):
        """Drop the states of parameters no longer in ``optim_objs`` (``load_checkpoint`` clears it to
        restore states by name; replaced tensors would otherwise keep their moments alive)."""
        for optimizer in self._optimizers.values():
            for p in [p for p in optimizer.state if p not in self.optim_objs]:
                del optimizer.state[p]


def _check_args(args, name=None):
    where = "" if name is None else f" (for parameter {name!r})"
    if not isinstance(args, dict):
        raise TypeError(f"optim_args must give a dict of Adam's arguments{where}; got {type(args).__name__}")
    if "params" in args:
        raise ValueError(f"optim_args must not name 'params'{where}: the SVI step gives them")
    try:  # torch's own checks of the names and values, now rather than at the first step
        torch.optim.Adam([torch.zeros(1, requires_grad=True)], **args)
    except (TypeError, ValueError, RuntimeError) as error:
        raise type(error)(f"optim_args{where}: {error}") from error


def _check_clip_args(args, name=None):
    where = "" if name is None else f" (for parameter {name!r})"
    if not isinstance(args, dict):
        raise TypeError(f"clip_args must give a dict of clip_norm and/or clip_value{where}; got {args!r:.60}")
    unknown = sorted(set(args) - {"clip_norm", "clip_value"})
    if unknown:
        raise ValueError(f"clip_args takes clip_norm and clip_value{where}; got {', '.join(unknown)}")


def _key(args):
    """Arguments as a key that tells apart exactly the values torch would treat differently (a tensor's
    repr rounds its values)."""

    def exact(value):
        if isinstance(value, torch.Tensor):
            return ("tensor", str(value.dtype), str(value.device), tuple(value.flatten().tolist()))
        if isinstance(value, tuple | list):
            return tuple(exact(v) for v in value)
        return repr(value)

    return tuple(sorted((k, exact(v)) for k, v in args.items()))


def _restored(p, name, saved, group):
    """``saved`` (one parameter's ``pyro.optim`` state dict) as the state of ``p`` in a torch Adam with
    the options ``group``: tensors copied to ``p``'s device and dtype, the step count where torch keeps it
    (on ``p``'s device in float32 when fused or capturable, else on the CPU)."""
    entries = saved.get("state") if isinstance(saved, dict) else None
    if not isinstance(entries, dict) or len(entries) > 1:
        raise ValueError(
            f"the saved optimizer state of {name!r} must be one parameter's state dict, as pyro.optim "
            f"saves it; got {saved!r:.80}"
        )
    if not entries:
        return {}
    state = {}
    for k, v in next(iter(entries.values())).items():
        if k == "step":
            on_device = group.get("fused") or group.get("capturable")
            step = torch.as_tensor(v, dtype=torch.float32).clone()
            state[k] = step.to(p.device) if on_device else step.cpu()
        elif isinstance(v, torch.Tensor):
            if v.shape != p.shape:
                raise ValueError(
                    f"the saved optimizer state of {name!r} has {k} of shape {tuple(v.shape)}, the "
                    f"parameter has shape {tuple(p.shape)}"
                )
            state[k] = v.to(device=p.device, dtype=p.dtype if v.is_floating_point() else v.dtype).clone()
        else:
            state[k] = v
    if group.get("amsgrad") and "max_exp_avg_sq" not in state:  # saved without amsgrad: as torch starts it
        state["max_exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return state

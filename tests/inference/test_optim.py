import pytest
import torch

from pyro_vd.inference import adam


def _run(optimizer_factory, steps=5):
    torch.manual_seed(0)
    params = [torch.randn(7, 3, requires_grad=True), torch.randn(3, requires_grad=True)]
    optimizer = optimizer_factory(params)
    for _ in range(steps):
        optimizer.zero_grad()
        (params[0].square().sum() + params[0].sum() * params[1].exp().sum()).backward()
        optimizer.step()
    return optimizer, params


def test_adam_is_fused_on_cpu_and_takes_torch_adams_steps():
    fused, fused_params = _run(lambda p: adam(p, lr=0.1))
    plain, plain_params = _run(lambda p: torch.optim.Adam(p, lr=0.1))
    assert fused.param_groups[0]["fused"] is True and not plain.param_groups[0]["fused"]
    for a, b in zip(fused_params, plain_params, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_adam_takes_groups_and_honours_an_explicit_choice():
    weights, bias = torch.zeros(3, requires_grad=True), torch.zeros(1, requires_grad=True)
    grouped = adam([{"params": [weights], "lr": 0.1}, {"params": [bias], "lr": 1.0}])
    assert [g["lr"] for g in grouped.param_groups] == [0.1, 1.0]
    assert all(g["fused"] for g in grouped.param_groups)
    assert not adam([weights], fused=False).param_groups[0]["fused"]
    assert adam([weights], foreach=True).param_groups[0]["foreach"]


def test_adam_takes_generators_in_groups_and_leaves_unfusable_options_to_torch():
    net = torch.nn.Linear(3, 1)
    optimizer = adam([{"params": net.parameters(), "lr": 0.1}])  # a generator: not used up beforehand
    assert [len(g["params"]) for g in optimizer.param_groups] == [2]
    before = net.weight.detach().clone()
    net(torch.ones(4, 3)).sum().backward()
    optimizer.step()
    assert not torch.equal(before, net.weight)
    assert [len(g["params"]) for g in adam([{"params": net.weight}]).param_groups] == [1]  # a tensor
    with pytest.raises(TypeError, match="iterable"):
        adam(net.weight)  # torch's refusal, not an iteration over the tensor's rows
    assert not adam(net.parameters(), differentiable=True).param_groups[0]["fused"]
    assert adam(net.parameters(), capturable=False).param_groups[0]["fused"]


def test_adam_does_not_fuse_where_torch_has_no_kernel(monkeypatch):
    import torch.utils._foreach_utils as foreach_utils

    monkeypatch.setattr(
        foreach_utils, "_get_fused_kernels_supported_devices", lambda: ["cuda"]
    )  # torch < 2.4
    optimizer = adam([torch.zeros(2, requires_grad=True)])
    assert not optimizer.param_groups[0]["fused"]


def test_adam_refuses_what_torch_refuses():
    with pytest.raises(ValueError):
        adam([], lr=0.1)

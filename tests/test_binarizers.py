"""Binarizers: forward values, surrogate gradients, two-valued weights, zero padding, registry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bifsmn_cli.errors import UserError
from bifsmn_cli.nn.binarizers import BINARIZERS, make_binarizer, sign
from bifsmn_cli.nn.config import BINARIZER_NAMES, ModelConfig
from bifsmn_cli.nn.dfsmn import DFSMN
from bifsmn_cli.nn.layers import QConv1d

TINY = ModelConfig(
    n_mels=16, frames=16, num_classes=4, num_blocks=4, stem_channels=4, backbone_size=16, hidden_size=24
)
SIGN_BASED = ("bifsmn", "bnn", "bireal", "irnet", "rad")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_registry():
    assert set(BINARIZERS) == {"bifsmn", "bnn", "dorefa", "xnor", "bireal", "irnet", "rad", "lpb"}
    assert {n for n, c in BINARIZERS.items() if c.exportable} == set(SIGN_BASED)
    for cls in BINARIZERS.values():
        assert cls.paper and cls.__doc__
    with pytest.raises(UserError, match="binarizer 'foo' is unknown"):
        make_binarizer("foo", 4, 1)


def test_torch_free_names_are_the_registry():
    """Pipelines are validated against nn.config's name list without loading torch; it must stay the registry."""
    assert BINARIZER_NAMES == tuple(BINARIZERS)


def test_sign_of_zero_and_nan_is_plus_one():
    """ARCHITECTURE.md's convention, shared with the engine's bit-packing (tests/test_kernels.py)."""
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-30, 3.0, math.nan, -math.inf])
    want = [-1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0]
    assert sign(x).tolist() == want
    for name in SIGN_BASED + ("lpb",):
        b = make_binarizer(name, 7, -1)
        if name == "lpb":  # at threshold 0 and shift 0, LPB is the plain sign
            with torch.no_grad():
                b.threshold.zero_()
                b.shift.zero_()
        assert b.quantize_input(x.view(1, 7)).flatten().tolist() == want, name


def _input_grad(name: str, x: torch.Tensor, **progress) -> torch.Tensor:
    b = make_binarizer(name, x.shape[-1], -1)
    if progress:
        b.set_progress(**progress)
    x = x.clone().requires_grad_(True)
    b.quantize_input(x).sum().backward()
    return x.grad


def test_input_forward_values():
    x = torch.tensor([[-1.5, -0.3, 0.0, 0.4, 2.0]])
    assert make_binarizer("dorefa", 5, -1).quantize_input(x).tolist() == [[0.0, 0.0, 0.0, 0.0, 1.0]]
    k = x.abs().mean()
    assert torch.allclose(make_binarizer("xnor", 5, -1).quantize_input(x), sign(x) * k)
    lpb = make_binarizer("lpb", 5, -1)
    with torch.no_grad():
        lpb.threshold.fill_(0.5)
        lpb.shift.copy_(torch.tensor([0.0, 0.25, 0.0, 0.0, -0.5]))
    assert lpb.quantize_input(x).tolist() == [[-1.0, -1.25, -1.0, -1.0, 1.5]]


def test_input_surrogate_gradients():
    x = torch.tensor([[-1.5, -0.5, 0.0, 0.25, 1.0, 2.0]])
    clipped = [0.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert _input_grad("bifsmn", x).flatten().tolist() == clipped
    assert _input_grad("bnn", x).flatten().tolist() == clipped
    assert _input_grad("rad", x).flatten().tolist() == clipped
    assert _input_grad("bireal", x).flatten().tolist() == [0.0, 1.0, 2.0, 1.5, 0.0, 0.0]
    assert _input_grad("dorefa", torch.tensor([[-0.5, 0.3, 1.5]])).flatten().tolist() == [0.0, 1.0, 0.0]
    for epoch, total in ((0, 10), (5, 10), (9, 10)):
        t = 0.1 * 10 ** (epoch / total * 2)
        k = max(1 / t, 1.0)
        expected = k * t * (1 - torch.tanh(t * x) ** 2)
        assert torch.allclose(_input_grad("irnet", x, epoch=epoch, total_epochs=total), expected)


def test_lpb_gradients_follow_its_rule():
    """a = sign(alpha_c (x - tau_c)) - beta_c, backward through clamp(alpha_c (x - tau_c), -1, 1): every
    parameter's gradient, element by element, against the rule written out by hand."""
    b = make_binarizer("lpb", 3, 1)
    assert 0 <= b.threshold.min() and b.threshold.max() <= 1e-3 and b.shift.max() <= 1e-3  # U(0, 0.001)
    with torch.no_grad():
        b.threshold.copy_(torch.tensor([0.2, -0.1, 0.0]))
        b.alpha_input.copy_(torch.tensor([1.0, 2.0, -0.5]))  # -0.5: the sign follows alpha's sign
        b.shift.copy_(torch.tensor([0.1, 0.0, -0.3]))
    x = torch.randn(4, 3, 5) * 1.5
    g = torch.randn(4, 3, 5)
    latent = x.clone().requires_grad_(True)
    a = b.quantize_input(latent)
    tau, alpha, beta = (p.detach().view(1, 3, 1) for p in (b.threshold, b.alpha_input, b.shift))
    u = alpha * (x - tau)
    assert torch.equal(a.detach(), sign(u) - beta)
    a.backward(g)
    inside = (u.abs() <= 1).float()
    torch.testing.assert_close(latent.grad, g * alpha * inside)
    torch.testing.assert_close(b.threshold.grad, -(g * alpha * inside).sum(dim=(0, 2)))
    torch.testing.assert_close(b.alpha_input.grad, (g * (x - tau) * inside).sum(dim=(0, 2)))
    torch.testing.assert_close(b.shift.grad, -g.sum(dim=(0, 2)))
    # the weight's estimator scale: d/d alpha_w of clamp(alpha_w w, -1, 1) = w where |alpha_w w| <= 1
    w = torch.randn(6, 3, 1) * 0.8
    gw = torch.randn(6, 3, 1)
    with torch.no_grad():
        b.alpha_weight.fill_(1.5)
    b.quantize_weight(w).backward(gw)
    inside_w = ((1.5 * w).abs() <= 1).float()
    torch.testing.assert_close(b.alpha_weight.grad, (gw * w * inside_w).sum())


def test_lpb_parameters_train_at_a_tenth_of_the_learning_rate():
    """The official optimiser's rule: thresholds and alphas at 0.1 x lr, without weight decay here; every other
    parameter keeps the base groups (so other binarizers' optimisers are unchanged)."""
    from bifsmn_cli.train.config import TrainConfig
    from bifsmn_cli.train.optim import make_optimizer

    cfg = TrainConfig(lr=0.02, weight_decay=1e-4)
    plain, _ = make_optimizer(DFSMN(TINY, "bifsmn", ("1x",)), cfg, 10)
    assert [g["initial_lr"] for g in plain.param_groups] == [0.02, 0.02]
    student = DFSMN(TINY, "lpb", ("1x",))
    optimizer, _ = make_optimizer(student, cfg, 10)
    lrs = [g["initial_lr"] for g in optimizer.param_groups]
    assert lrs[:2] == [0.02, 0.02] and lrs[2] == pytest.approx(0.002)
    slow = {id(p) for p in optimizer.param_groups[2]["params"]}
    own = {id(p) for _, m in student.binarized_layers() for p in m.binarizer.parameters()}
    assert slow == own and optimizer.param_groups[2]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(student.parameters()))


def _paper_weight_grad(name: str, b, w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """dL/dw by each paper's rule, written out by hand (g = dL/dq for q = quantize_weight(w), rows = outputs)."""
    inside = (w.abs() <= 1).float()
    if name in ("bifsmn", "bireal", "bnn", "rad"):  # clipped straight-through, never scaled
        return g * inside
    if name == "dorefa":  # plain straight-through
        return g
    if name == "lpb":  # the estimator of clamp(alpha_w * w, -1, 1)
        alpha = b.alpha_weight.detach()
        return g * alpha * ((alpha * w).abs() <= 1).float()
    if (
        name == "xnor"
    ):  # d/dw of alpha_o sign(w) with alpha_o = mean |w_o|: the sign's STE and alpha's own term
        alpha = w.abs().mean(dim=1, keepdim=True)
        return g * alpha * inside + torch.sign(w) * (g * torch.sign(w)).mean(dim=1, keepdim=True)
    if name == "irnet":  # EDE on the balanced weights times the power-of-two scale, through the balancing
        w = w.clone().requires_grad_(True)
        centred = w - w.mean(dim=1, keepdim=True)
        balanced = centred / centred.std(dim=1, keepdim=True)
        scale = torch.exp2(torch.round(torch.log2(balanced.abs().mean(dim=1, keepdim=True)))).detach()
        ede = b.k * b.t * (1 - torch.tanh(b.t * balanced.detach()) ** 2)
        return torch.autograd.grad(balanced, w, g * scale * ede)[0]
    raise AssertionError(f"no reference rule for {name}")


@pytest.mark.parametrize("name", sorted(BINARIZERS))
def test_weight_gradient_follows_the_papers_rule(name):
    """Numerically, element by element: small latent weights (scale ~0.05) would expose a gradient multiplied
    by the scale, and a few |w| > 1 exercise the clipping."""
    b = make_binarizer(name, 16, -1)
    b.set_progress(3, 10)
    w = torch.randn(6, 16) * 0.05
    w[0, :3] = torch.tensor([1.5, -2.0, 1.2])
    g = torch.randn(6, 16)
    latent = w.clone().requires_grad_(True)
    b.quantize_weight(latent).backward(g)
    torch.testing.assert_close(latent.grad, _paper_weight_grad(name, b, w, g), rtol=1e-5, atol=1e-6)


def test_weight_values():
    w = torch.tensor([[0.5, -0.1, 0.3, 0.0], [-2.0, 1.0, -1.0, 4.0]])
    expected_scale = torch.tensor([[0.225], [2.0]])
    for name in ("bifsmn", "bireal", "lpb", "xnor"):
        q = make_binarizer(name, 4, -1).quantize_weight(w)
        assert torch.allclose(q, sign(w) * expected_scale), name
    assert torch.equal(make_binarizer("bnn", 4, -1).quantize_weight(w), sign(w))
    assert torch.allclose(make_binarizer("dorefa", 4, -1).quantize_weight(w), sign(w) * w.abs().mean())
    q = make_binarizer("irnet", 4, -1).quantize_weight(w)
    centred = w - w.mean(dim=1, keepdim=True)
    assert torch.equal(sign(q), sign(centred))
    scales = q.abs().amax(dim=1)
    assert all(math.log2(s).is_integer() for s in scales.tolist())  # Libra-PB: powers of two


@pytest.mark.parametrize("name", sorted(BINARIZERS))
def test_two_valued_weights_and_gradients_reach_every_latent_weight(name):
    student = DFSMN(TINY, name, ("1x", "0.5x"))
    student.set_epoch(0, 4)
    layers = student.binarized_layers()
    assert len(layers) == 2 + 3 * TINY.num_blocks
    for lname, layer in layers:
        q = layer.quantized_weight().detach()
        signs, scale = layer.binarizer.weight_parts(layer.weight)
        assert scale.shape == (q.shape[0],) and torch.all(scale > 0), lname
        assert set(signs.unique().tolist()) <= {-1.0, 1.0}
        assert torch.equal(q, signs * scale.view(-1, *[1] * (q.dim() - 1))), lname  # exactly {-a_o, +a_o}

    out = student.forward_multi(torch.randn(8, 16, 16))
    loss = sum(F.cross_entropy(o, torch.arange(8) % 4) for o in out.values())
    extra = student.pop_extra_loss()
    assert (extra is not None) == (name == "rad")
    if extra is not None:
        loss = loss + extra
        assert student.pop_extra_loss() is None
    loss.backward()
    for lname, layer in layers:
        grad = layer.weight.grad
        assert grad is not None and grad.abs().sum() > 0, (name, lname)
        if (
            name != "dorefa"
        ):  # DoReFa's {0, 1} inputs leave weights seeing only zeros without gradient, by design
            assert torch.all(grad != 0), (name, lname)


def test_memory_padding_is_zero_after_binarizing():
    conv = QConv1d(2, 2, 5, groups=2, pad=(2, 2), binarizer="bifsmn")
    x = torch.randn(1, 2, 6)
    y = conv(x)
    q = conv.quantized_weight().detach()
    xb = sign(x)
    # first output: taps at t = -2, -1 are padding and must contribute nothing (not +-1)
    manual = (xb[0, :, :3] * q[:, 0, 2:]).sum(dim=1) + conv.bias
    assert torch.allclose(y[0, :, 0], manual.detach())
    assert y.shape == (1, 2, 6)


def test_rad_loss_penalises_degenerate_inputs():
    b = make_binarizer("rad", 3, 1).train()
    healthy = torch.randn(16, 3, 8, requires_grad=True)
    b.quantize_input(healthy)
    low = b.pop_loss()
    degenerate = (torch.randn(16, 3, 8) * 0.1 + 5.0).requires_grad_(True)
    b.quantize_input(degenerate)
    high = b.pop_loss()
    assert high > low + 1.0
    b.eval()
    b.quantize_input(healthy)
    assert b.pop_loss() is None  # the loss is a training regulariser only


@pytest.mark.parametrize("name", [n for n, c in sorted(BINARIZERS.items()) if c.exportable])
def test_exportable_layers_compute_scaled_sign_products(name):
    """What the exporter relies on: output = scale_o * (sign(w) . sign(x)) + bias_o, padded taps 0."""
    student = DFSMN(TINY, name)
    x = torch.randn(3, 16, 8)
    memory = student.blocks[0].memory
    signs, scale = memory.binarizer.weight_parts(memory.weight)
    expected = F.conv1d(F.pad(sign(x), memory.pad), signs, groups=16) * scale.view(1, -1, 1)
    torch.testing.assert_close(memory(x), expected + memory.bias.view(1, -1, 1))
    fc1 = student.fc1
    h = torch.randn(3, 8, fc1.in_features)
    signs, scale = fc1.binarizer.weight_parts(fc1.weight)
    torch.testing.assert_close(fc1(h), F.linear(sign(h), signs) * scale + fc1.bias)

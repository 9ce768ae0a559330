"""Wavelets against pywavelets, and the HED loss."""

from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from bifsmn_cli.errors import UserError
from bifsmn_cli.nn.config import HED_MODES, HEDConfig
from bifsmn_cli.nn.hed import HED, Wavelet2D, match_blocks


@pytest.mark.parametrize("wavelet", ["haar", "db2", "sym4"])
@pytest.mark.parametrize("mode", HED_MODES)
def test_dwt2_and_idwt2_match_pywavelets(wavelet, mode):
    rng = np.random.default_rng(0)
    dwt = Wavelet2D(wavelet, mode)
    for shape in [(16, 8), (9, 7), (3, 5)]:
        x = rng.standard_normal(shape)
        ca, (ch, cv, cd) = dwt(torch.from_numpy(x))
        ref_a, (ref_h, ref_v, ref_d) = pywt.dwt2(x, wavelet, mode=mode)
        for ours, ref in ((ca, ref_a), (ch, ref_h), (cv, ref_v), (cd, ref_d)):
            np.testing.assert_allclose(ours.numpy(), ref, atol=1e-12)
        np.testing.assert_allclose(
            dwt.inverse(None, (ch, cv, cd)).numpy(),
            pywt.idwt2((None, (ref_h, ref_v, ref_d)), wavelet, mode=mode),
            atol=1e-12,
        )
        np.testing.assert_allclose(
            dwt.inverse(ca, (ch, cv, cd)).numpy(),
            pywt.idwt2((ref_a, (ref_h, ref_v, ref_d)), wavelet, mode=mode),
            atol=1e-12,
        )


def test_batched_float32_and_band_split():
    dwt = Wavelet2D("db2", "periodization")
    x = torch.randn(4, 128, 8)
    high, low = dwt.high_pass(x), dwt.low_pass(x)
    assert high.shape == x.shape and low.shape == x.shape
    torch.testing.assert_close(high + low, x, atol=1e-5, rtol=0)  # perfect reconstruction
    ref = pywt.idwt2(
        (None, pywt.dwt2(x[2].double().numpy(), "db2", mode="periodization")[1]), "db2", "periodization"
    )
    np.testing.assert_allclose(high[2].numpy(), ref, atol=1e-5)


def test_haar_high_pass_removes_block_constants():
    x = torch.ones(1, 4, 4) * 3.0
    assert torch.allclose(Wavelet2D("haar").high_pass(x), torch.zeros_like(x), atol=1e-6)


def test_bad_wavelet_and_mode():
    with pytest.raises(UserError, match="pywavelets"):
        Wavelet2D("nope")
    with pytest.raises(UserError, match="mode"):
        Wavelet2D("haar", "smooth-ish")
    with pytest.raises(UserError, match="hed.select"):
        HED(HEDConfig(select="mid"))


def test_match_blocks_same_relative_depth():
    assert match_blocks(8, 8) == list(range(8))
    assert match_blocks(4, 8) == [1, 3, 5, 7]
    assert match_blocks(2, 8) == [3, 7]
    assert match_blocks(1, 8) == [7]


def _blocks(n: int = 4) -> list[torch.Tensor]:
    return [torch.randn(6, 16, 8) for _ in range(n)]


def test_hed_is_zero_for_identical_features_and_has_finite_gradients():
    teacher = _blocks()
    plain = HED(HEDConfig(select="plain"))
    student = [t.clone().requires_grad_(True) for t in teacher]
    loss = plain(student, plain.targets(teacher))
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert all(torch.isfinite(s.grad).all() for s in student)

    high = HED(HEDConfig(select="high"))
    enhanced = [high.enhance(t) for t in teacher]
    assert high(enhanced, high.targets(teacher)).item() == pytest.approx(0.0, abs=1e-6)
    assert high(teacher, high.targets(teacher)).item() > 0.01  # raw features differ from the enhanced target


def test_enhanced_teacher_definition():
    t = torch.randn(6, 16, 8)
    hed = HED(HEDConfig(select="high", wavelet="haar"))
    hf = hed.dwt.high_pass(t)
    torch.testing.assert_close(hed.enhance(t), hf / hf.std() + t / t.std())
    low = HED(HEDConfig(select="low"))
    lf = low.dwt.low_pass(t)
    torch.testing.assert_close(low.enhance(t), lf / lf.std() + t / t.std())


def test_hed_value_scale_invariance_and_matching():
    teacher = _blocks(8)
    hed = HED(HEDConfig())
    targets = hed.targets(teacher)
    student = _blocks(2)

    def block_loss(s, t):
        qs, qt = s**2 / (s**2).norm(), t**2 / (t**2).norm()
        return (qs - qt).norm()

    expected = sum(block_loss(s, hed.enhance(teacher[j])) for s, j in zip(student, [3, 7], strict=True))
    assert hed(student, targets).item() == pytest.approx(expected.item(), rel=1e-5)
    assert hed([s * 1e4 for s in student], targets).item() == pytest.approx(expected.item(), rel=1e-5)
    assert hed([s * 1e-20 for s in student], targets).item() == pytest.approx(expected.item(), rel=1e-4)


def test_none_disables():
    assert not HED(HEDConfig(select="none")).enabled
    assert not HED(HEDConfig(alpha=0.0)).enabled
    assert HED(HEDConfig()).enabled


@pytest.mark.parametrize("wavelet", ["haar", "db2", "sym3"])
@pytest.mark.parametrize("mode", ["zero", "symmetric", "reflect", "periodization"])
def test_band_passes_equal_transform_then_inverse(wavelet, mode):
    """high_pass/low_pass use per-axis operator matrices; they must equal forward + inverse on any shape."""
    dwt = Wavelet2D(wavelet, mode)
    for shape in ((3, 128, 8), (2, 7, 5), (9, 6)):
        x = torch.randn(*shape, dtype=torch.float64)
        ca, details = dwt(x)
        h, w = x.shape[-2:]
        torch.testing.assert_close(
            dwt.high_pass(x), dwt.inverse(None, details)[..., :h, :w], atol=1e-10, rtol=0
        )
        torch.testing.assert_close(
            dwt.low_pass(x), dwt.inverse(ca, (None, None, None))[..., :h, :w], atol=1e-10, rtol=0
        )


def test_fid_matches_low_and_high_parts_separately():
    """BiFSMNv2's frequency-independent distillation: per matched block, the normalised-square distance of the
    LL parts plus that of the high parts (computed here with pywt, not with the module's operators)."""
    teacher = _blocks(8)
    student = _blocks(4)
    fid = HED(HEDConfig(select="fid", wavelet="haar", mode="zero"))

    def parts(x):
        ca, details = pywt.dwt2(x.double().numpy(), "haar", mode="zero", axes=(-2, -1))
        h, w = x.shape[-2:]
        low = pywt.idwt2((ca, (None, None, None)), "haar", mode="zero", axes=(-2, -1))[..., :h, :w]
        high = pywt.idwt2((None, details), "haar", mode="zero", axes=(-2, -1))[..., :h, :w]
        return torch.from_numpy(low), torch.from_numpy(high)

    def distance(s, t):
        qs, qt = s**2 / (s**2).norm(), t**2 / (t**2).norm()
        return (qs - qt).norm()

    expected = 0.0
    for s, j in zip(student, [1, 3, 5, 7], strict=True):
        (s_lo, s_hi), (t_lo, t_hi) = parts(s), parts(teacher[j])
        expected += distance(s_lo, t_lo) + distance(s_hi, t_hi)
    assert fid(student, fid.targets(teacher)).item() == pytest.approx(float(expected), rel=1e-4)
    # identical blocks: both parts match exactly; one part moved alone is seen
    assert fid(teacher, fid.targets(teacher)).item() == pytest.approx(0.0, abs=1e-6)
    shifted = [t + 5.0 for t in teacher]  # a constant moves the LL band only (Haar detail bands ignore it)
    lo_only = sum(distance(parts(a)[0], parts(b)[0]) for a, b in zip(shifted, teacher, strict=True))
    assert fid(shifted, fid.targets(teacher)).item() == pytest.approx(float(lo_only), rel=1e-4)


def test_fid_logit_term_is_mse_and_only_for_fid():
    logits, teacher = torch.randn(5, 4), torch.randn(5, 4)
    fid = HED(HEDConfig(select="fid"))
    assert fid.logit_term(logits, teacher).item() == pytest.approx(((logits - teacher) ** 2).mean().item())
    for select in ("high", "low", "plain"):
        assert HED(HEDConfig(select=select)).logit_term(logits, teacher) is None


def test_joint_loss_with_fid_adds_alpha_times_blocks_and_logit_mse():
    """The training loss of a fid student: CE + alpha * (FID block term + MSE of the logits); kd_weight stays a
    separate KL term (off here)."""
    from bifsmn_cli.nn.config import ModelConfig
    from bifsmn_cli.nn.dfsmn import DFSMN
    from bifsmn_cli.train.config import TrainConfig
    from bifsmn_cli.train.losses import JointLoss

    torch.manual_seed(0)
    cfg = ModelConfig(
        n_mels=16, frames=16, num_classes=3, num_blocks=2, stem_channels=4, backbone_size=8, hidden_size=12
    )
    teacher, student = DFSMN(cfg).eval(), DFSMN(cfg, "bifsmn", ("1x",)).eval()
    fid = HED(HEDConfig(select="fid", alpha=0.5))
    loss_fn = JointLoss(student, {"1x": 1.0}, TrainConfig(kd_weight=0.0), teacher, fid)
    x, y = torch.randn(4, 16, 16), torch.tensor([0, 1, 2, 0])
    loss = loss_fn(lambda f: student.forward_multi(f, ("1x",), True), x, y)
    with torch.no_grad():
        t_logits, t_blocks = teacher(x, return_blocks=True)
        s_logits, s_blocks = student(x, return_blocks=True)
        blocks = fid(s_blocks, fid.targets(t_blocks))
        expected = torch.nn.functional.cross_entropy(s_logits, y) + 0.5 * (
            blocks + ((s_logits - t_logits) ** 2).mean()
        )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)

"""The D-FSMN model: official topology and counts, variants, teacher-to-student initialisation."""

from __future__ import annotations

import pytest
import torch

from bifsmn_cli.errors import UserError
from bifsmn_cli.nn.config import ModelConfig
from bifsmn_cli.nn.counting import count_all, count_variant
from bifsmn_cli.nn.dfsmn import DFSMN, VARIANT_BLOCKS, load_teacher_into_student, variant_blocks, variant_key

VARIANTS = ("1x", "0.5x", "0.25x")
TINY = ModelConfig(
    n_mels=16, frames=16, num_classes=4, num_blocks=4, stem_channels=4, backbone_size=16, hidden_size=24
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_teacher_matches_the_official_counts():
    teacher = DFSMN(ModelConfig())
    assert sum(p.numel() for p in teacher.parameters()) == 600_252
    c = count_variant(teacher, "1x")
    assert (c.params, c.macs, c.binary_ops) == (600_252, 5_431_296, 0)
    assert c.bytes_fp32 == 4 * 600_252


def test_teacher_shapes_and_block_outputs():
    teacher = DFSMN(ModelConfig()).eval()
    logits, blocks = teacher(torch.randn(3, 32, 32), return_blocks=True)
    assert logits.shape == (3, 12)
    assert len(blocks) == 8 and all(b.shape == (3, 128, 8) for b in blocks)
    assert teacher.binarized_layers() == []
    assert isinstance(teacher.act1, torch.nn.ReLU) and isinstance(
        teacher.blocks[0].act_out["1x"], torch.nn.PReLU
    )


def test_student_counts_per_variant():
    student = DFSMN(ModelConfig(), "bifsmn", VARIANTS)
    names = [n for n, _ in student.binarized_layers()]
    assert len(names) == 26 and names[:5] == [
        "conv2",
        "fc1",
        "blocks.0.memory",
        "blocks.0.expand",
        "blocks.0.project",
    ]
    counts = count_all(student)
    real = 16 * 16 * 16 * 25 + 1024 * 12  # conv1 and the classifier stay full precision
    per_block = 128 * 8 * 5 + 2 * 8 * 128 * 256
    front = 32 * 8 * 8 * 16 * 25 + 8 * 256 * 128
    for v, n_blocks in (("1x", 8), ("0.5x", 4), ("0.25x", 2)):
        c = counts[v]
        assert c.real_macs == real
        assert c.binary_ops == front + n_blocks * per_block
        assert c.flops == pytest.approx(real + c.binary_ops / 64)
    # 1x runs every shared weight plus its own BN/PReLU: teacher's 600,252 + 11 PReLU slopes replacing ReLUs
    assert counts["1x"].params == 600_252 + 11
    binary_weights = 16 * 32 * 25 + 256 * 128 + 8 * (128 * 5 + 2 * 128 * 256)
    scales = 32 + 128 + 8 * (128 + 256 + 128)
    assert counts["1x"].bytes_packed == binary_weights // 8 + 4 * (600_263 - binary_weights + scales)


def test_variant_blocks():
    assert VARIANT_BLOCKS == {"1x": list(range(8)), "0.5x": [1, 3, 5, 7], "0.25x": [3, 7]}
    assert variant_blocks("0.5x", 6) == [1, 3, 5]
    assert variant_blocks("0.25x", 6) == [3]
    assert variant_key("0.25x") == "0_25x"
    for bad in ("2x", "0.3x", "half", "0.125x"):
        with pytest.raises(UserError):
            variant_blocks(bad, 4)


def test_variants_share_weights_and_own_last_bn():
    student = DFSMN(TINY, "bifsmn", VARIANTS)
    block = student.blocks[3]
    assert set(block.bn_out) == {"1x", "0_5x", "0_25x"} and set(block.act_out) == {"1x", "0_5x", "0_25x"}
    assert sum(1 for k in student.state_dict() if k.endswith("memory.weight")) == TINY.num_blocks

    out = student.forward_multi(torch.randn(4, 16, 16))
    out["0.5x"].sum().backward()
    assert student.blocks[1].expand.weight.grad is not None  # block 1 runs in 0.5x
    assert student.blocks[0].expand.weight.grad is None  # block 0 does not
    assert student.blocks[1].bn_out["0_5x"].weight.grad is not None
    assert student.blocks[1].bn_out["1x"].weight.grad is None

    student.eval()
    x = torch.randn(4, 16, 16)
    before = student.forward_multi(x)
    with torch.no_grad():
        student.blocks[1].bn_out["0_5x"].bias.add_(1.0)
    after = student.forward_multi(x)
    assert torch.equal(before["1x"], after["1x"]) and not torch.equal(before["0.5x"], after["0.5x"])


def test_forward_multi_equals_separate_forwards():
    student = DFSMN(TINY, "bifsmn", VARIANTS).eval()
    x = torch.randn(5, 16, 16)
    joint = student.forward_multi(x, return_blocks=True)
    for v in VARIANTS:
        logits, blocks = student(x, v, return_blocks=True)
        assert torch.equal(logits, joint[v][0])
        assert len(blocks) == len(variant_blocks(v, TINY.num_blocks))


def test_student_initialised_from_teacher():
    teacher = DFSMN(ModelConfig())
    student = DFSMN(ModelConfig(), "bifsmn", VARIANTS)
    untouched = load_teacher_into_student(student, teacher.state_dict())
    assert sorted(untouched) == sorted(
        ["act1.weight", "act2.weight", "act_fc1.weight"] + [f"blocks.{i}.act_hidden.weight" for i in range(8)]
    )
    t, s = teacher.state_dict(), student.state_dict()
    assert torch.equal(s["blocks.2.expand.weight"], t["blocks.2.expand.weight"])
    for block, keys in ((7, ("1x", "0_5x", "0_25x")), (5, ("1x", "0_5x")), (4, ("1x",))):
        assert sorted(student.blocks[block].bn_out) == sorted(keys)  # only the variants that run the block
        for key in keys:
            for p in ("weight", "bias", "running_mean", "running_var"):
                assert torch.equal(s[f"blocks.{block}.bn_out.{key}.{p}"], t[f"blocks.{block}.bn_out.1x.{p}"])
            assert torch.equal(
                s[f"blocks.{block}.act_out.{key}.weight"], t[f"blocks.{block}.act_out.1x.weight"]
            )


def test_config_from_dict_and_errors():
    cfg = ModelConfig.from_dict({"num_blocks": 4, "memory_left": 3})
    assert cfg.num_blocks == 4 and cfg.memory_kernel == 6 and cfg.n_mels == 32
    with pytest.raises(UserError, match="model.blocks: unknown key"):
        ModelConfig.from_dict({"blocks": 4})
    with pytest.raises(UserError, match="model.activation"):
        ModelConfig.from_dict({"activation": "gelu"})
    with pytest.raises(UserError, match="model.dropout"):
        ModelConfig.from_dict({"dropout": 1.5})
    with pytest.raises(UserError, match="unknown"):
        DFSMN(TINY, "ternary")
    with pytest.raises(UserError, match=r"expected \(batch, 16, 16\)"):
        DFSMN(TINY)(torch.randn(2, 32, 32))


def test_non_default_config_counts():
    cfg = ModelConfig(n_mels=40, frames=98, num_blocks=3, memory_left=4, memory_right=1, num_classes=35)
    teacher = DFSMN(cfg)
    assert cfg.stem_shape() == (10, 25)
    logits, blocks = teacher(torch.randn(2, 40, 98), return_blocks=True)
    assert logits.shape == (2, 35) and blocks[0].shape == (2, 128, 25)
    c = count_variant(teacher)
    assert c.params == sum(p.numel() for p in teacher.parameters())
    expected = (
        20 * 49 * 16 * 25  # conv1 output 16 x 20 x 49
        + 10 * 25 * 32 * 16 * 25  # conv2
        + 25 * 320 * 128  # fc1
        + 3 * (128 * 25 * 6 + 2 * 25 * 128 * 256)
        + 128 * 25 * 35
    )
    assert c.macs == expected

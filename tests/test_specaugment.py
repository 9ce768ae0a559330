"""SpecAugment masks: bands of the asked widths filled with the clip mean, reproducible from the generator."""

from __future__ import annotations

import torch

from bifsmn_cli.audio.specaugment import SpecAugmentConfig, spec_augment


def test_masks_bands_with_the_clip_mean():
    x = torch.randn(64, 32, 32)
    cfg = SpecAugmentConfig(time_masks=1, time_width=4, freq_masks=1, freq_width=3)
    y = spec_augment(x, cfg, torch.Generator().manual_seed(0))
    again = spec_augment(x, cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(y, again)
    changed = y != x
    assert changed.any()
    for b in range(64):
        rows = changed[b].all(dim=1).sum()  # masked mel bins (whole rows)
        cols = changed[b].all(dim=0).sum()  # masked frames (whole columns)
        assert rows <= 3 and cols <= 4
        assert torch.allclose(y[b][changed[b]], x[b].mean().expand(int(changed[b].sum())))


def test_disabled_is_identity():
    x = torch.randn(4, 8, 8)
    assert not SpecAugmentConfig().enabled
    torch.testing.assert_close(spec_augment(x, SpecAugmentConfig(), torch.Generator()), x)

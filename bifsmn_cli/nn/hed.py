"""High-frequency Enhancement Distillation (HED) and the differentiable 2-D wavelet transform it uses.

A block output (B, C, T) is treated as a one-channel image (channels x time). `Wavelet2D` computes a one-level
2-D DWT with the filters of `pywt.Wavelet(name)` as torch convolutions and matches `pywt.dwt2` / `pywt.idwt2`
(axes (-2, -1)) for every supported mode:

- `zero`, `symmetric`, `reflect`, `periodic`, `constant`: the signal is extended by `L - 2` samples on the
  left (pywt's convention), giving floor((N + L - 1) / 2) coefficients per axis; the inverse keeps samples
  [L - 2, L - 2 + 2 n - L + 2) of the transposed convolution, as pywt does whatever the mode;
- `periodization`: circular extension, ceil(N / 2) coefficients (an odd axis is first extended by repeating
  its last sample, as pywt does) and a circular inverse.

Reconstructions of an odd-sized axis have one extra sample, as in pywt; `high_pass`/`low_pass` crop them back
to the input size. The official BiFSMN code used mode `zero` (pytorch_wavelets), our default; for Haar on
even sizes every mode gives the same result.

HED (Qin et al., IJCAI 2022): for each matched block, enhanced teacher T^ = HF(T)/std(HF(T)) + T/std(T),
loss || S^2/||S^2||_F - T^^2/||T^^2||_F ||_F over the batch tensor, summed over the matched blocks.
`select`: high (the paper), low (LL band instead of the high-frequency part), plain (T^ = T), none (no loss).

Frequency-independent distillation (`select: fid`, BiFSMNv2, Qin et al., TNNLS 2023): the low (LL) and the high
(every other band) parts of student and teacher blocks are matched separately, each with the same normalised-
square distance, || S_lo^2/||S_lo^2|| - T_lo^2/||T_lo^2|| || + the same for the high parts, plus a logit term
MSE(student logits, teacher logits) (`logit_term`), all weighted by alpha as in the official code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pywt
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bifsmn_cli.errors import UserError
from bifsmn_cli.nn.config import HED_MODES, HED_SELECTS, HEDConfig


def _extension_index(n: int, left: int, right: int, mode: str) -> np.ndarray:
    """Source index of every sample of the extended signal; -1 means a zero sample."""
    idx = np.arange(-left, n + right)
    if mode == "zero":
        return np.where((idx >= 0) & (idx < n), idx, -1)
    if mode in ("periodic", "periodization"):
        return idx % n
    if mode == "constant":
        return np.clip(idx, 0, n - 1)
    if mode == "symmetric":
        p = idx % (2 * n)
        return np.where(p < n, p, 2 * n - 1 - p)
    if mode == "reflect":
        if n == 1:
            return np.zeros_like(idx)
        p = idx % (2 * n - 2)
        return np.where(p < n, p, 2 * n - 2 - p)
    raise UserError(f"wavelet mode {mode!r} is unknown; use one of {', '.join(HED_MODES)}")


class Wavelet2D(nn.Module):
    """One-level 2-D DWT/IDWT on the last two axes of a (..., H, W) tensor, differentiable."""

    def __init__(self, wavelet: str = "haar", mode: str = "zero") -> None:
        super().__init__()
        try:
            w = pywt.Wavelet(wavelet)
        except ValueError:
            raise UserError(
                f"wavelet {wavelet!r} is not a pywavelets discrete wavelet (e.g. haar, db2, sym4)"
            ) from None
        if mode not in HED_MODES:
            raise UserError(f"wavelet mode {mode!r} is unknown; use one of {', '.join(HED_MODES)}")
        self.mode, self.length = mode, w.dec_len
        # conv1d correlates, so the analysis filters are reversed; rows are (low, high). Kept in float64 and
        # cast per call, so double-precision inputs get exact filters.
        self.register_buffer(
            "dec", torch.tensor([w.dec_lo[::-1], w.dec_hi[::-1]], dtype=torch.float64)[:, None]
        )
        self.register_buffer("rec", torch.tensor([w.rec_lo, w.rec_hi], dtype=torch.float64)[:, None])
        self._operators: dict[tuple, tuple[Tensor, Tensor]] = {}

    def _dwt_last(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n, ln = x.shape[-1], self.length
        if self.mode == "periodization":
            if n % 2:
                x, n = torch.cat([x, x[..., -1:]], dim=-1), n + 1
            n_out, left = n // 2, ln // 2 - 1
        else:
            n_out, left = (n + ln - 1) // 2, ln - 2
        index = _extension_index(n, left, 2 * n_out + ln - 2 - n - left, self.mode)
        if self.mode == "zero":
            x = torch.cat([x, x.new_zeros(*x.shape[:-1], 1)], dim=-1)  # index -1 reads this zero
        ext = x[..., torch.as_tensor(index, device=x.device)]
        flat = ext.reshape(-1, 1, ext.shape[-1])
        y = F.conv1d(flat, self.dec.to(x.dtype), stride=2)[..., :n_out]
        y = y.reshape(*x.shape[:-1], 2, n_out)
        return y[..., 0, :], y[..., 1, :]

    def _idwt_last(self, lo: Tensor, hi: Tensor) -> Tensor:
        n_out, ln = lo.shape[-1], self.length
        c = torch.stack([lo, hi], dim=-2).reshape(-1, 2, n_out)
        y = F.conv_transpose1d(c, self.rec.to(lo.dtype), stride=2)[:, 0]
        if self.mode == "periodization":
            n = 2 * n_out
            index = torch.as_tensor((np.arange(y.shape[-1]) - (ln // 2 - 1)) % n, device=y.device)
            y = y.new_zeros(y.shape[0], n).index_add_(1, index, y)
        else:
            y = y[:, ln - 2 : 2 * n_out]
        return y.reshape(*lo.shape[:-1], y.shape[-1])

    def forward(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor, Tensor]]:
        """(..., H, W) -> (cA, (cH, cV, cD)) exactly as pywt.dwt2(x, wavelet, mode)."""
        lo_w, hi_w = self._dwt_last(x)
        aa, da = self._dwt_last(lo_w.transpose(-1, -2))
        ad, dd = self._dwt_last(hi_w.transpose(-1, -2))
        return aa.transpose(-1, -2), (da.transpose(-1, -2), ad.transpose(-1, -2), dd.transpose(-1, -2))

    def inverse(
        self, ca: Tensor | None, details: tuple[Tensor | None, Tensor | None, Tensor | None]
    ) -> Tensor:
        """pywt.idwt2((cA, (cH, cV, cD))); None bands are zeros."""
        ref = next(b for b in (ca, *details) if b is not None)
        ca, ch, cv, cd = (torch.zeros_like(ref) if b is None else b for b in (ca, *details))
        lo_w = self._idwt_last(ca.transpose(-1, -2), ch.transpose(-1, -2)).transpose(-1, -2)
        hi_w = self._idwt_last(cv.transpose(-1, -2), cd.transpose(-1, -2)).transpose(-1, -2)
        return self._idwt_last(lo_w, hi_w)

    def axis_operators(self, n: int) -> tuple[Tensor, Tensor]:
        """(n, n) float64 matrices L, H of one axis: the low (high) band of a length-n signal, inverted and
        cropped to n, is L @ x (H @ x). Both are linear in x, so they are the transform applied to the identity."""
        eye = torch.eye(n, dtype=torch.float64, device=self.dec.device)
        lo, hi = self._dwt_last(eye)  # row i: the coefficients of the unit signal e_i
        zero = torch.zeros_like(lo)
        low = self._idwt_last(lo, zero)[:, :n].T
        high = self._idwt_last(zero, hi)[:, :n].T
        return low.contiguous(), high.contiguous()

    def _separable(self, x: Tensor, bands: tuple[tuple[int, int], ...]) -> Tensor:
        """Sum over (row band r, column band c) of R_r @ x @ C_c^T, as one GEMM per axis over the whole batch
        (strided convolutions over every row, as `forward`/`inverse` do, cost a third of a distillation step)."""
        *lead, h, w = x.shape
        key = (h, w, bands, x.dtype, x.device)
        if key not in self._operators:
            (r_lo, r_hi), (c_lo, c_hi) = self.axis_operators(h), self.axis_operators(w)
            rows, cols = (r_lo, r_hi), (c_lo, c_hi)
            # stack the row operators of the bands, and the column operators likewise: one GEMM each
            stacked_rows = torch.cat([rows[r] for r, _ in bands]).to(x.dtype)  # (k*h, h)
            stacked_cols = torch.stack([cols[c] for _, c in bands]).to(x.dtype)  # (k, w, w)
            self._operators[key] = (stacked_rows.to(x.device), stacked_cols.to(x.device))
        stacked_rows, stacked_cols = self._operators[key]
        k = len(bands)
        flat = x.reshape(-1, h, w).transpose(0, 1).reshape(h, -1)  # (h, N*w)
        y = (stacked_rows @ flat).reshape(k, -1, w)  # (k, h*N, w): R_r x for each band
        y = torch.bmm(y, stacked_cols.transpose(1, 2)).sum(0)  # sum over bands of (R_r x) C_c^T
        return y.reshape(h, -1, w).transpose(0, 1).reshape(*lead, h, w)

    def high_pass(self, x: Tensor) -> Tensor:
        """x without its LL band (zero cA, invert), cropped to x's size."""
        return self._separable(x, ((0, 1), (1, 0), (1, 1)))

    def low_pass(self, x: Tensor) -> Tensor:
        """The LL band alone, inverted and cropped to x's size."""
        return self._separable(x, ((0, 0),))


def match_blocks(n_student: int, n_teacher: int) -> list[int]:
    """Teacher block of each student block at the same relative depth: k -> n_teacher * (k + 1) / n_student - 1.

    With 8 teacher blocks, a 0.5x student (4 blocks, which are blocks 1, 3, 5, 7) maps to [1, 3, 5, 7]."""
    return [n_teacher * (k + 1) // n_student - 1 for k in range(n_student)]


def _normalised_square(a: Tensor) -> Tensor:
    """a^2 / ||a^2||_F, computed on a / max|a| first: the ratio is scale-free, and this cannot overflow."""
    a = a / a.detach().abs().amax().clamp_min(1e-20)
    q = a * a
    return q / torch.linalg.vector_norm(q).clamp_min(1e-20)


def _standardised(a: Tensor) -> Tensor:
    return a / a.std().clamp_min(1e-12)


class HED(nn.Module):
    """The HED loss; `targets` prepares the frozen teacher's blocks once per batch, `forward` scores one variant."""

    def __init__(self, cfg: HEDConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or HEDConfig()
        if self.cfg.select not in HED_SELECTS:
            raise UserError(f"hed.select: expected one of {', '.join(HED_SELECTS)}, got {self.cfg.select!r}")
        self.dwt = Wavelet2D(self.cfg.wavelet, self.cfg.mode)

    @property
    def enabled(self) -> bool:
        return self.cfg.select != "none" and self.cfg.alpha > 0

    @property
    def bands(self) -> int:
        """Targets per teacher block: two for fid (low and high parts), one otherwise."""
        return 2 if self.cfg.select == "fid" else 1

    def _parts(self, x: Tensor) -> list[Tensor]:
        """What is matched of one block output: fid's low and high parts, or the (enhanced) output itself."""
        if self.cfg.select == "fid":
            return [self.dwt.low_pass(x), self.dwt.high_pass(x)]
        return [x]

    def enhance(self, t: Tensor) -> Tensor:
        """The enhanced teacher T^ of one block output (B, C, T) (high, low, plain)."""
        if self.cfg.select == "plain":
            return t
        part = self.dwt.high_pass(t) if self.cfg.select == "high" else self.dwt.low_pass(t)
        return _standardised(part) + _standardised(t)

    @torch.no_grad()
    def targets(self, teacher_blocks: Sequence[Tensor]) -> list[list[Tensor]]:
        """Per teacher block, its normalised squared targets (computed once per batch for all variants): the
        enhanced block, or fid's low and high parts."""
        if self.cfg.select == "fid":
            return [[_normalised_square(p) for p in self._parts(t.float())] for t in teacher_blocks]
        return [[_normalised_square(self.enhance(t.float()))] for t in teacher_blocks]

    def forward(self, student_blocks: Sequence[Tensor], targets: Sequence[Sequence[Tensor]]) -> Tensor:
        """Sum over student blocks (and fid's two parts) of || S^2/||S^2|| - target ||_F, each against its
        matched teacher block."""
        matched = match_blocks(len(student_blocks), len(targets))
        losses = [
            torch.linalg.vector_norm(_normalised_square(part) - target)
            for s, j in zip(student_blocks, matched, strict=True)
            for part, target in zip(self._parts(s), targets[j], strict=True)
        ]
        return torch.stack(losses).sum()

    def logit_term(self, logits: Tensor, teacher_logits: Tensor) -> Tensor | None:
        """fid's logit term, MSE(student, teacher) over the batch; None for the other selects (their logit
        distillation is the training section's kd_weight)."""
        return F.mse_loss(logits, teacher_logits) if self.cfg.select == "fid" else None

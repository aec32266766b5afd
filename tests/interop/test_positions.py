import pytest
import torch
from videomae_reference import sinusoid_table

from motionmae.interop import InteropError, infer_layout, interpolate_positions, is_sinusoid_table


def test_infer_layout_prefers_the_expected_slices():
    assert infer_layout(8 * 14 * 14, t_hint=8) == (8, 14, 14)  # 16 frames, 224 px
    assert infer_layout(8 * 7 * 7, t_hint=8) == (8, 7, 7)
    assert infer_layout(2 * 2 * 2, t_hint=8) == (2, 2, 2)  # no 1 x 1 frames
    assert infer_layout(4 * 16 * 16, t_hint=4) == (4, 16, 16)
    with pytest.raises(InteropError, match="source_frames"):
        infer_layout(7, t_hint=8)


def test_sinusoid_table_recognised():
    assert is_sinusoid_table(sinusoid_table(36, 64))
    assert not is_sinusoid_table(sinusoid_table(36, 64) + 0.01)
    assert not is_sinusoid_table(sinusoid_table(37, 64)[1:])  # shifted positions


def _centres(n_out, n_in):
    """Source coordinate of each target cell with align_corners=False, clamped at the edges."""
    scale = n_in / n_out
    return ((torch.arange(n_out) + 0.5) * scale - 0.5).clamp(0, n_in - 1)


def test_trilinear_resampling_reproduces_a_linear_field():
    # f(t, h, w) = a.t + b.h + c.w + d per channel: trilinear interpolation is exact for it,
    # so the resampled table is f at the (clamped) source coordinates of the target centres
    source, target = (2, 3, 4), (4, 5, 3)
    gen = torch.Generator().manual_seed(0)
    a, b, c, d = torch.randn(4, 6, generator=gen)
    t, h, w = torch.meshgrid(*(torch.arange(n).float() for n in source), indexing="ij")
    table = (t[..., None] * a + h[..., None] * b + w[..., None] * c + d).reshape(-1, 6)
    resampled = interpolate_positions(table, source, target)
    tt, hh, ww = torch.meshgrid(*(_centres(o, i) for o, i in zip(target, source, strict=True)),
                                indexing="ij")
    expected = (tt[..., None] * a + hh[..., None] * b + ww[..., None] * c + d).reshape(-1, 6)
    assert resampled.shape == (60, 6)
    torch.testing.assert_close(resampled, expected, atol=1e-5, rtol=1e-5)


def test_same_layout_is_unchanged_and_sizes_checked():
    table = torch.randn(8, 4)
    assert torch.equal(interpolate_positions(table, (2, 2, 2), (2, 2, 2)), table)
    with pytest.raises(InteropError, match="8 rows"):
        interpolate_positions(table, (2, 2, 3), (2, 2, 2))

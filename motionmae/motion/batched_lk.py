"""Pyramidal Lucas-Kanade in PyTorch: OpenCV's ``calcOpticalFlowPyrLK`` for a batch of clips.

One call moves every point of every clip from frame ``a`` to frame ``b`` on any device:
no Python loop over points or clips, no host sync (the loops are over pyramid levels and
iterations). It does what OpenCV's sparse LK does, so that the ``lk`` tracker's settings mean
the same here:

* grey levels: OpenCV's fixed-point luma, then ``pyrDown`` levels (5 x 5 binomial, reflected
  border), each rounded to integers as OpenCV's 8-bit levels are; the pyramid stops below
  the window size as ``buildOpticalFlowPyramid`` does;
* gradients: the 3 x 3 Scharr operator on each level of the first frame (zero outside it);
* windows: ``window`` x ``window`` samples around the point, bilinear (``grid_sample``), grey
  levels in 5-bit fixed point (``x 32``) and gradients rounded to integers as OpenCV keeps
  them; the image padded by the window, reflected;
* a point fails (``ok`` False) when its window leaves the padded frame, when the normalised
  minimum eigenvalue of its gradient matrix is below ``min_eigen`` (OpenCV's
  ``minEigThreshold``) or the matrix is singular, all at the finest level; at a coarser
  level the same conditions skip that level's refinement;
* iterations: at most ``iterations`` Gauss-Newton steps per level, a point stopping when its
  step is at most ``epsilon`` pixels, or when it oscillates (a step undoing the previous
  one: the point goes back half a step), exactly as OpenCV's; stopped points are frozen
  by a mask, the work is done for all of them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from motionmae.motion.lk_config import LKConfig

__all__ = ["Pyramid", "constant_pair", "gray_levels", "lk_step", "pyramid_depth", "to_gray"]

# OpenCV's constants: FLT_SCALE scales sums of (32 x grey level) x (Scharr gradient).
_FLT_SCALE = 2.0 ** -20
_FLT_EPSILON = 1.1920929e-07
_LUMA = (4899.0, 9617.0, 1868.0)  # cvtColor RGB2GRAY, 14-bit fixed point (sum 16384)


def constant_pair(first: float, second: float, device: torch.device) -> torch.Tensor:
    """``[first, second]`` float32 made on ``device`` by a kernel: ``torch.tensor(values,
    device="cuda")`` copies from host memory, which waits for the GPU (a host sync)."""
    return torch.where(torch.arange(2, device=device) == 0, first, second).float()


def to_gray(frames: torch.Tensor) -> torch.Tensor:
    """``[..., 3]`` RGB grey levels 0..255 (uint8 or float) -> ``[...]`` float32 luma, rounded to
    integers as OpenCV's ``cvtColor(RGB2GRAY)`` rounds them."""
    rgb = frames.float()
    weighted = rgb[..., 0] * _LUMA[0] + rgb[..., 1] * _LUMA[1] + rgb[..., 2] * _LUMA[2]
    return torch.floor((weighted + 8192.0) / 16384.0)


def pyramid_depth(height: int, width: int, window: int, levels: int) -> int:
    """The coarsest level OpenCV uses: at most ``levels``, and every level's sides (halved
    rounding up) larger than ``window``."""
    depth = 0
    while depth < levels:
        height, width = (height + 1) // 2, (width + 1) // 2
        if height <= window or width <= window:
            break
        depth += 1
    return depth


def _reflect_index(size: int, pad: int, device: torch.device) -> torch.Tensor:
    """Indices ``-pad .. size + pad - 1`` folded into ``0 .. size - 1`` as OpenCV's
    ``BORDER_REFLECT_101`` folds them (any ``pad``, also wider than the image)."""
    index = torch.arange(-pad, size + pad, device=device)
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = torch.remainder(index, period)
    return torch.where(index > size - 1, period - index, index)


def _pad_reflect(image: torch.Tensor, pad: int) -> torch.Tensor:
    """``[M, C, H, W]`` padded by ``pad`` on every side, reflected (``BORDER_REFLECT_101``)."""
    h, w = image.shape[-2:]
    rows = _reflect_index(h, pad, image.device)
    cols = _reflect_index(w, pad, image.device)
    return image.index_select(-2, rows).index_select(-1, cols)


def _pyr_down(image: torch.Tensor) -> torch.Tensor:
    """OpenCV's ``pyrDown`` of ``[M, 1, H, W]`` integer grey levels: 1-4-6-4-1 binomial blur
    (reflected border) at every second pixel, ``((H + 1) // 2, (W + 1) // 2)``, rounded as the
    8-bit result is. Shifted sums (integers, exact in float32) rather than a convolution,
    which is many times slower on the CPU for one channel."""
    p = _pad_reflect(image, 2)

    def blur(x: torch.Tensor, dim: int) -> torch.Tensor:  # taps 1 4 6 4 1, stride 2
        size = x.shape[dim] - 4
        tap = [x.narrow(dim, i, size) for i in range(5)]
        total = tap[0] + tap[4] + 4.0 * (tap[1] + tap[3]) + 6.0 * tap[2]
        return total.index_select(dim, torch.arange(0, size, 2, device=x.device))

    return torch.floor((blur(blur(p, -1), -2) + 128.0) / 256.0)


def _scharr(image: torch.Tensor) -> torch.Tensor:
    """``[M, 1, H, W]`` -> ``[M, 2, H, W]`` Scharr ``(d/dx, d/dy)`` (3-10-3, unnormalised, 32x
    the slope), reflected at the border as OpenCV's ``calcSharrDeriv``. Written as shifted
    differences: a one-channel convolution is many times slower on the CPU."""
    p = _pad_reflect(image, 1)
    across = p[..., :, 2:] - p[..., :, :-2]  # [M, 1, H + 2, W]
    down = p[..., 2:, :] - p[..., :-2, :]  # [M, 1, H, W + 2]
    dx = 3.0 * (across[..., :-2, :] + across[..., 2:, :]) + 10.0 * across[..., 1:-1, :]
    dy = 3.0 * (down[..., :-2] + down[..., 2:]) + 10.0 * down[..., 1:-1]
    return torch.cat([dx, dy], dim=1)


class Pyramid:
    """Grey-level pyramids of a stack of frames, ready for :func:`lk_step`.

    ``images[level]``: ``[M, 1, H_l + 2 w, W_l + 2 w]`` float32 integer grey levels padded by
    the window ``w`` (reflected); ``sizes[level]``: ``(H_l, W_l)``. Frames are rows ``M``;
    :meth:`select` picks rows (one frame per clip).
    """

    def __init__(self, images: list[torch.Tensor], sizes: list[tuple[int, int]], pad: int):
        self.images, self.sizes, self.pad = images, sizes, pad
        self._templates: dict[int, torch.Tensor] = {}

    def select(self, rows: torch.Tensor) -> Pyramid:
        """The pyramid of frames ``rows`` (``[M']`` long indices)."""
        return Pyramid([im.index_select(0, rows) for im in self.images], self.sizes, self.pad)

    def template(self, level: int) -> torch.Tensor:
        """``[M, 3, H_l + 2 w, W_l + 2 w]``: the level's grey levels and Scharr gradients
        (zero outside the frame, as OpenCV pads them); made once per pyramid."""
        if level not in self._templates:
            p = self.pad
            image = self.images[level]
            gradients = F.pad(_scharr(image[..., p:-p, p:-p]), (p, p, p, p))
            self._templates[level] = torch.cat([image, gradients], dim=1)
        return self._templates[level]


def gray_levels(gray: torch.Tensor, window: int, levels: int) -> Pyramid:
    """:class:`Pyramid` of ``[M, H, W]`` integer grey levels for an LK window of ``window``
    pixels and at most ``levels`` levels above the base."""
    h, w = gray.shape[-2:]
    depth = pyramid_depth(h, w, window, levels)
    level = gray[:, None]
    images, sizes = [], []
    for index in range(depth + 1):
        if index:
            level = _pyr_down(level)
        images.append(_pad_reflect(level, window))
        sizes.append((level.shape[-2], level.shape[-1]))
    return Pyramid(images, sizes, window)


class _Windows:
    """Bilinear ``window`` x ``window`` samples around points of a padded level
    (``[M, C, Hp, Wp]``, padded by ``pad``); zero beyond the padded image."""

    def __init__(self, window: int, pad: int, padded_size: tuple[int, int],
                 device: torch.device):
        hp, wp = padded_size
        r = torch.arange(window, device=device, dtype=torch.float32) - (window - 1) / 2.0
        dy, dx = torch.meshgrid(r, r, indexing="ij")
        # grid_sample's coordinates (align_corners): -1 .. 1 over the padded image
        self.scale = constant_pair(2.0 / (wp - 1), 2.0 / (hp - 1), device)
        self.offsets = (torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=-1)
                        * self.scale).reshape(1, -1)
        self.shift = pad * self.scale - 1.0
        # (x, y) -> (x, y, x, y, ...) by indexing: broadcasting into a last dimension of 2
        # is several times slower on the CPU
        self.spread = torch.arange(2 * window * window, device=device) % 2

    def __call__(self, image: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
        """Samples at ``points [M, N, 2]`` ``(x, y)`` pixels of the unpadded level:
        ``[M, C, N, window * window]``."""
        m, n = points.shape[:2]
        centre = (points * self.scale + self.shift).reshape(m * n, 2)
        grid = (centre.index_select(1, self.spread) + self.offsets).view(m, n, -1, 2)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=True)


def lk_step(first: Pyramid, second: Pyramid, points: torch.Tensor, guess: torch.Tensor,
            config: LKConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Pyramidal LK of ``points`` from the frames of ``first`` to those of ``second``.

    Args:
        first, second: pyramids of ``M`` frames each (row ``m`` of ``first`` is matched in
            row ``m`` of ``second``).
        points: ``[M, N, 2]`` float32 ``(x, y)`` pixels in ``first``.
        guess: ``[M, N, 2]`` where to start looking in ``second`` (``points`` for none).
        config: window, iterations, epsilon and min_eigen as OpenCV's arguments.

    Returns:
        ``(found [M, N, 2] float32 pixels in second, ok [M, N] bool)``: OpenCV's ``status``.
    """
    win, pad = config.window, first.pad
    half = (win - 1) / 2.0
    eps2 = min(max(config.epsilon, 0.0), 10.0) ** 2
    iterations = min(max(config.iterations, 0), 100)
    depth = len(first.images) - 1
    m, n = points.shape[:2]
    found = guess / 2.0 ** depth
    ok = torch.ones((m, n), dtype=torch.bool, device=points.device)
    for level in range(depth, -1, -1):
        if level != depth:
            found = found * 2.0
        h, w = first.sizes[level]
        # OpenCV's bounds: the window's integer corner floor(p - half) in [-win, size)
        low = constant_pair(half - win, half - win, points.device)
        high = constant_pair(w + half, h + half, points.device)
        windows = _Windows(win, pad, first.images[level].shape[-2:], points.device)
        prev = points / 2.0 ** level
        samples = windows(first.template(level), prev)  # [M, 3, N, P]
        # OpenCV keeps grey levels x 32 and gradients as integers (fixed point)
        ival = torch.floor(samples[:, 0] * 32.0 + 0.5).reshape(m * n, 1, -1)
        grad = torch.floor(samples[:, 1:] + 0.5).movedim(1, 2).reshape(m * n, 2, -1)
        # products and sums written out (not bmm): a point's result must not depend on how
        # many points share the call (batch invariance)
        gram = (grad[:, :, None, :] * grad[:, None, :, :]).sum(-1).view(m, n, 2, 2) * _FLT_SCALE
        a11, a12, a22 = gram[..., 0, 0], gram[..., 0, 1], gram[..., 1, 1]
        det = a11 * a22 - a12 * a12
        min_eig = (a22 + a11 - torch.sqrt((a11 - a22) ** 2 + 4.0 * a12 * a12)) / (2 * win * win)
        usable = (((prev >= low) & (prev < high)).all(-1) & (min_eig >= config.min_eigen)
                  & (det >= _FLT_EPSILON))
        if level == 0:
            ok = ok & usable
        # OpenCV's step is delta = G b, G the inverse gradient matrix and b = sum over the
        # window of grad (32 J - ival) / 2**20: folded into delta = K J - k0 per point
        inverse = torch.stack([-a22, a12, a12, -a11], dim=-1).view(m * n, 2, 2)
        inverse = inverse / torch.where(usable, det, torch.ones_like(det)).view(-1, 1, 1)
        gain = (inverse[..., None] * grad[:, None]).sum(2) * (32.0 * _FLT_SCALE)  # [M N, 2, P]
        weighted = (grad * ival).sum(-1)  # [M N, 2]
        bias = (inverse * weighted[:, None, :]).sum(-1).view(m, n, 2) * _FLT_SCALE
        active = usable
        last = torch.zeros_like(found)
        for step in range(iterations):
            inside = ((found >= low) & (found < high)).all(-1)
            if level == 0:
                ok = ok & (inside | ~active)
            active = active & inside
            jval = windows(second.images[level], found).view(m * n, 1, -1)
            delta = (gain * jval).sum(-1).view(m, n, 2) - bias
            moving = (delta * delta).sum(-1) > eps2  # else: converged, stops after this step
            if step:  # oscillating: a step undoing the last one ends half way back
                back = ((delta + last).abs() < 0.01).all(-1) & moving
                delta = torch.where(back[..., None], 0.5 * delta, delta)
                moving = moving & ~back
            found = torch.where(active[..., None], found + delta, found)
            active, last = active & moving, delta
    return found, ok

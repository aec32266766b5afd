"""How fast a decoder learns to find "the same place at another time", by position table.

Pixel MAE with random masking (ST-MAE's) can explain a hidden tubelet by the visible tubelets at
its place in other time slices: on the suite's clips, their mean explains half the norm-pix
target's variance. A model has to learn that routing from the positions alone. This isolates
it: a ``TokenDecoder`` (2 blocks, width 128) gets the visible tokens of a ``16x112`` grid
(2x16x16 tubelets, 392 tokens, 75% hidden) whose content is a random vector per place,
constant over time, and must output each hidden token's content. The trivial answer (zero)
explains 0; copying from a visible token at the same place explains up to the share of hidden
tokens that have one (1 - 0.75^7 = 87%). Printed: the explained fraction every ``--every``
steps, per ``model.positions`` kind, trained with the same seeds.

    nice .venv/bin/python benchmarks/position_copy.py --steps 1800
"""

from __future__ import annotations

import argparse

import torch

from motionmae.models.config import POSITION_TABLES
from motionmae.models.vit import TokenDecoder
from motionmae.tokens import TokenGrid, gather_tokens

GRID = TokenGrid(frames=16, height=112, width=112)
CONTENT, WIDTH, DEPTH, HEADS, BATCH, HIDDEN = 32, 128, 2, 4, 16, 0.75


def copy_batch(generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """Visible content, visible and hidden indices, and the hidden tokens' content."""
    places = torch.randn(BATCH, 1, GRID.spatial, CONTENT, generator=generator)
    content = places.expand(-1, GRID.t, -1, -1).reshape(BATCH, GRID.num_tokens, CONTENT)
    order = torch.rand(BATCH, GRID.num_tokens, generator=generator).argsort(1)
    visible = round(GRID.num_tokens * (1 - HIDDEN))
    shown, hidden = order[:, :visible], order[:, visible:]
    return gather_tokens(content, shown), shown, hidden, gather_tokens(content, hidden)


def learning_curve(kind: str, steps: int, every: int) -> list[tuple[int, float]]:
    torch.manual_seed(0)
    decoder = TokenDecoder(CONTENT, WIDTH, DEPTH, HEADS, CONTENT, GRID, positions=kind)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=3e-4)
    generator = torch.Generator().manual_seed(0)
    curve = []
    for step in range(steps + 1):
        shown_content, shown, hidden, target = copy_batch(generator)
        loss = (decoder(shown_content, shown, hidden) - target).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % every == 0:
            curve.append((step, 1 - loss.item() / target.pow(2).mean().item()))
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument("--every", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    curves = {kind: learning_curve(kind, args.steps, args.every) for kind in POSITION_TABLES}
    print("explained fraction of the hidden tokens' content, by step")
    print(f"{'step':>6} " + " ".join(f"{kind:>8}" for kind in curves))
    for row in zip(*curves.values(), strict=True):
        print(f"{row[0][0]:>6} " + " ".join(f"{value:>8.3f}" for _, value in row))


if __name__ == "__main__":
    main()

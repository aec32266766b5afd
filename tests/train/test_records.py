"""The window a logged record averages: named parts first, then loss and gradient norm, each a
mean over the steps not skipped; the skip count stays out of the means."""

import pytest
import torch

from motionmae.train.distributed import DistInfo
from motionmae.train.step import Window


def test_window_means_skip_bad_steps_and_keep_the_order_of_first_use():
    window = Window()
    window.add("loss/pixel", torch.tensor(3.0))
    window.add_step(torch.tensor(3.0), torch.tensor(1.5), torch.tensor(0.0), clips=4)
    window.add("loss/pixel", torch.tensor(float("nan")))
    window.add_step(torch.tensor(float("nan")), torch.tensor(float("nan")), torch.tensor(1.0),
                    clips=4)
    window.add("loss/pixel", torch.tensor(1.0))
    window.add_step(torch.tensor(1.0), torch.tensor(0.5), torch.tensor(0.0), clips=4)
    assert window.steps == 3 and window.clips == 12
    bad = int(window.sums.pop("bad"))
    assert bad == 1
    means = window.means(bad, DistInfo())
    assert list(means) == ["loss/pixel", "loss", "grad_norm", "clips_per_s"]
    assert means["loss"] == pytest.approx(2.0)  # the skipped step's NaN counts as 0
    assert means["grad_norm"] == pytest.approx(1.0)
    assert means["clips_per_s"] > 0

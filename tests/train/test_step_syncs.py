"""A training step waits for the device nowhere: no tensor read back to the host
(``.item()``, ``bool()``, ``int()``, ``float()`` of a tensor: ``aten._local_scalar_dense``) and
no operation whose output shape depends on the data (``nonzero``, ``masked_select``,
``unique``, ...), in the pixel mode and in the default motion mode, with tracks from the
loader workers or made in the step (``tracking.where=step``).

Counted while ``Trainer._step`` runs the second step (not a log step: the loop reads the
device on purpose once per logging interval), the loader's work excluded (``data.workers=0``
runs it in this process; in a run it is in the worker processes). On the CPU a read of host
memory counts the same as a read of a device tensor, so a count of zero here is a count of
zero on a GPU; a copy of a device tensor to the host (``.cpu()``, ``.tolist()``) is not an
operation the CPU can see, which ``torch.cuda.set_sync_debug_mode`` checks on a GPU."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from motionmae.config import PretrainConfig, load_config
from motionmae.data import make_synthetic_dataset
from motionmae.data.stream import BatchStream
from motionmae.motion.step_tracks import StepTracks
from motionmae.train import loop
from motionmae.train.pretrain import pretrain

# Reads of a tensor's value on the host, and ops whose output size is known only after
# running them (each needs the host to wait for the device).
SYNCING_OPS = {"_local_scalar_dense", "equal", "nonzero", "nonzero_static", "argwhere",
               "masked_select", "unique", "_unique", "_unique2", "unique_dim",
               "unique_consecutive", "repeat_interleave", "bincount", "histc"}
# Indexing by a boolean mask has a data-dependent shape too (``x[mask]``, ``x[mask] = v``).
MASK_INDEXING_OPS = {"index", "index_put", "index_put_", "_index_put_impl_"}


class SyncCounter(TorchDispatchMode):
    """Counts :data:`SYNCING_OPS` by name while active and not ``paused``."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name.split("::")[-1]
        syncing = name in SYNCING_OPS or (name in MASK_INDEXING_OPS and _by_mask(args[1]))
        if syncing and not self.paused:
            self.counts[name] += 1
        return func(*args, **(kwargs or {}))


def _by_mask(indices) -> bool:
    return any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
               for i in indices)


def test_the_counter_sees_host_reads_and_data_dependent_shapes():
    x = torch.arange(6.0)
    with SyncCounter() as counter:
        x.sum().item()
        bool(x.max() > 2)
        x[x > 2]  # a boolean index
        torch.nonzero(x)
        torch.unique(x)
        x[torch.tensor([0, 2])] * x.cumsum(0)[1:3]  # none of them
    assert counter.counts == {"_local_scalar_dense": 2, "index": 1, "nonzero": 1,
                              "_unique2": 1}


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("step-syncs")
    return make_synthetic_dataset(root, num_train=4, num_val=0, frames=8, size=32, seed=0)


def _count_second_step(monkeypatch) -> tuple[SyncCounter, Counter[str]]:
    """The counter of the second ``Trainer._step`` and the calls of the step's tracker in
    it."""
    counter = SyncCounter()
    calls = {"steps": 0}
    tracked: Counter[str] = Counter()
    inner_step, inner_next = loop.Trainer._step, BatchStream.__next__
    inner_track = StepTracks.__call__

    def step(self):
        calls["steps"] += 1
        if calls["steps"] != 2:
            return inner_step(self)
        with counter:
            return inner_step(self)

    def next_batch(self):
        counter.paused = True  # the loader's work (a worker process's in a run)
        try:
            return inner_next(self)
        finally:
            counter.paused = False

    def track(self, clip):
        tracked["calls"] += 1
        return inner_track(self, clip)

    monkeypatch.setattr(loop.Trainer, "_step", step)
    monkeypatch.setattr(BatchStream, "__next__", next_batch)
    monkeypatch.setattr(StepTracks, "__call__", track)
    return counter, tracked


@pytest.mark.parametrize("mode, tracked_in_step", [
    (["targets.names=[pixel]", "masking.kind=tube"], 0),
    (["targets.names=[pixel,tracks]", "masking.kind=motion", "tracking.where=workers"], 0),
    (["targets.names=[pixel,tracks]", "masking.kind=motion", "tracking.where=step"], 1),
], ids=["pixel", "motion-tracks-from-workers", "motion-tracks-in-step"])
def test_a_training_step_has_no_host_sync(videos, tmp_path, monkeypatch, mode,
                                          tracked_in_step):
    cfg = load_config(PretrainConfig, overrides=[
        f"data.train={videos.train_list}", f"run.out={tmp_path / 'run'}", "data.frames=4",
        "data.stride=2", "data.size=32", "data.workers=0", "model.depth=1",
        "model.decoder_depth=1", "run.batch_size=2", "run.steps=3", "run.log_every=3", *mode])
    counter, tracked = _count_second_step(monkeypatch)
    pretrain(cfg)
    assert dict(counter.counts) == {}
    # the tracker ran in the step (once a step) exactly when the config says so
    assert tracked["calls"] == 3 * tracked_in_step

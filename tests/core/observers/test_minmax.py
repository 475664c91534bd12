"""Min / max observers: the envelope over batches, or the average of per-batch ranges."""
from __future__ import annotations

import torch

from rdoq_plugins.observers import AvgMinMaxObserver, MinMaxObserver

BITS4 = torch.tensor([4])


def test_minmax_envelope_and_average() -> None:
    a, b = torch.tensor([-1.0, 2.0]), torch.tensor([-3.0, 1.0])
    env, avg = MinMaxObserver(), AvgMinMaxObserver()
    for x in (a, b):
        env(x, BITS4)
        avg(x, BITS4)
    assert (env.lo.item(), env.hi.item()) == (-3.0, 2.0)
    assert (avg.lo.item(), avg.hi.item()) == (-2.0, 1.5)


def test_empty_batches_change_nothing_and_reset_forgets() -> None:
    obs = AvgMinMaxObserver()
    obs(torch.tensor([-1.0, 1.0]), BITS4)
    obs(torch.empty(0), BITS4)
    assert int(obs.num_batches) == 1 and (obs.lo.item(), obs.hi.item()) == (-1.0, 1.0)
    obs.reset()
    assert int(obs.num_batches) == 0
    obs(torch.tensor([-4.0, 2.0]), BITS4)
    assert (obs.lo.item(), obs.hi.item()) == (-4.0, 2.0)  # the first batch after a reset is taken as it is
    assert MinMaxObserver().averaging is False and obs.averaging is True

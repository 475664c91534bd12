"""A toy quantized CNN with every kind of weight quantizer and mixed per-group bits (2..8, one pruned
group), calibrated on random data: the test bed of the export tests."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rdoq_plugins.granularity import PerChannel, PerGroup, PerTensor
from rdoq_plugins.modules.quant_layer import QuantConv2d, QuantLinear
from rdoq_plugins.quant.adaround import AdaRoundFakeQuantize
from rdoq_plugins.quant.fake_quantize import FakeQuantize
from rdoq_plugins.quant.lsq import LSQFakeQuantize, LSQPlusFakeQuantize


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 24, 3, stride=2, padding=1)
        self.conv3 = nn.Conv2d(24, 24, 1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(x)) + x
        return self.fc(x.mean(dim=(2, 3)))


def _wq(cls: type[FakeQuantize], layer: nn.Module, g: object, bits: list[int] | int, sym: bool) -> FakeQuantize:
    out = layer.weight.shape[0]
    q = cls(observer="MinMaxObserver", bit=8, symmetric=sym, granularity=g, num_channels=out, is_weight=True)
    q.set_bits(torch.tensor(bits) if isinstance(bits, list) else bits)
    return q


def toy_model(seed: int = 0, act_bits: int = 4) -> tuple[nn.Module, Tensor]:
    """The quantized toy (calibrated, AdaRound hardened from random α) and a batch of inputs."""
    torch.manual_seed(seed)
    m = Toy().eval()

    def aq(cls: type[FakeQuantize] = FakeQuantize) -> FakeQuantize:
        return cls(observer="MinMaxObserver", bit=act_bits, symmetric=False)

    m.conv1 = QuantConv2d.from_float(m.conv1, _wq(FakeQuantize, m.conv1, PerChannel(0), 8, True),
                                     aq(FakeQuantize))
    m.conv2 = QuantConv2d.from_float(m.conv2, _wq(AdaRoundFakeQuantize, m.conv2, PerGroup(0, 4),
                                                  [2, 3, 4, 5, 8, 0], True), aq(LSQFakeQuantize))
    act_groups = LSQPlusFakeQuantize(observer="MinMaxObserver", bit=act_bits, symmetric=False,
                                     granularity=PerGroup(1, 8), num_channels=24)
    act_groups.set_bits(torch.tensor([3, 8, 5]))  # RDOQ-both: activation bits per channel group
    m.conv3 = QuantConv2d.from_float(m.conv3, _wq(LSQPlusFakeQuantize, m.conv3, PerGroup(0, 8), [6, 3, 7], False),
                                     act_groups)
    m.fc = QuantLinear.from_float(m.fc, _wq(FakeQuantize, m.fc, PerTensor(), 4, False), aq(FakeQuantize))
    x = torch.randn(4, 3, 16, 16)
    quantizers = [q for q in m.modules() if isinstance(q, FakeQuantize)]
    for q in quantizers:
        q.enable_observer(True)
        q.enable_fake_quant(True)
    m(x)
    for q in quantizers:
        q.enable_observer(False)
    with torch.no_grad():  # learned steps that differ from the observer's
        m.conv2.input_quantizer.scale.mul_(0.93)
        m.conv3.weight_quantizer.scale.mul_(1.07)
        m.conv3.weight_quantizer.zero_point.add_(0.3)
    m.conv2.weight_quantizer.init_rounding(m.conv2.weight)
    with torch.no_grad():
        m.conv2.weight_quantizer.alpha.normal_()
    m.conv2.weight_quantizer.harden()
    return m, x

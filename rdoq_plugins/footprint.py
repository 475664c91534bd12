"""What a quantized model costs: average bits, deployed size, peak memory (for ``report.json``)."""
from __future__ import annotations

import resource

import torch
from torch import nn

from rdoq_plugins.granularity import unit_index
from rdoq_plugins.modules import quantizers
from rdoq_plugins.modules.quant_layer import QuantLayer

# Per quantization unit: its step (float32), zero point (float32) and bits (uint8).
UNIT_BYTES = 9


def _elements_per_unit(layer: QuantLayer) -> torch.Tensor:
    q = layer.weight_quantizer
    assert q is not None
    weight: torch.Tensor = layer.weight  # type: ignore[assignment]
    axis = getattr(q.granularity, "axis", None)
    if axis is None:
        return torch.tensor([float(weight.numel())])
    idx = unit_index(q.granularity, weight.shape[axis])
    per_channel = torch.full((weight.shape[axis],), weight.numel() / weight.shape[axis])
    return torch.zeros(q.bits.numel()).index_add_(0, idx, per_channel)


def bit_stats(model: nn.Module) -> dict[str, float]:
    """Element-weighted average weight bits over quantized weights, and mean activation bits."""
    w_bits = w_elems = 0.0
    for layer in model.modules():
        if isinstance(layer, QuantLayer) and layer.weight_quantizer is not None:
            elems = _elements_per_unit(layer)
            w_bits += float((layer.weight_quantizer.bits.float() * elems).sum())
            w_elems += float(elems.sum())
    acts = [float(q.bits.float().mean()) for q in quantizers(model, weight=False)]
    return {"weight_avg": w_bits / w_elems if w_elems else 32.0,
            "act_avg": sum(acts) / len(acts) if acts else 32.0}


def size_bytes(model: nn.Module) -> dict[str, int]:
    """fp32 size of all parameters, and the deployed size: quantized weights at their bits, every
    other parameter at 32 bits, and :data:`UNIT_BYTES` per unit of each weight quantizer and each
    switched-on activation quantizer (what ``weights.packed`` stores besides its header and the
    quantizers' switches)."""
    quantized: set[int] = set()
    quant = 0.0
    for layer in model.modules():
        if isinstance(layer, QuantLayer) and layer.weight_quantizer is not None:
            q = layer.weight_quantizer
            quant += float((q.bits.float() * _elements_per_unit(layer)).sum()) / 8 + UNIT_BYTES * q.bits.numel()
            quantized.add(id(layer.weight))
    quant += sum(UNIT_BYTES * q.bits.numel() for q in quantizers(model, weight=False) if bool(q.fake_quant_enabled))
    params = [p for n, p in model.named_parameters() if "quantizer" not in n]
    fp32 = sum(p.numel() for p in params) * 4
    quant += sum(p.numel() * 4 for p in params if id(p) not in quantized)
    return {"fp32": int(fp32), "quant": int(round(quant))}


def peak_rss_mb() -> float:
    """Peak resident memory of this process, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0

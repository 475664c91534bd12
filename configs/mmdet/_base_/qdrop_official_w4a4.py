# QDrop's own detection protocol (Wei et al., ICLR 2022; the official qdrop_coco code), for
# comparing with the paper: only the backbone and the FPN are quantized, every head stays FP (so the
# FPN outputs the heads read stay FP too); the first conv has 8-bit weights and reads the FP image;
# 2-image batches from the train pipeline drawn with seed 1005; W4A4, 20k iterations per unit.
# Our default configs (qdrop_w4a4.py) quantize the heads too.
_base_ = ['./qdrop_w4a4.py']
quant = dict(heads=False, calib=dict(split='train', samples_per_gpu=2, seed=1005))

# QDrop (Wei et al., ICLR 2022) with the official detection branch's hyper-parameters: W4A4,
# 256 calibration images from the train pipeline, 20k iterations per unit.
# Beyond the official code, the heads are quantized too (set quant.heads to keep one FP).
# Weights start from the official 2-D range x zero-point search (GridMSEObserver): +0.003 to +0.009 box
# AP on the bundled Faster R-CNN W4A4, for 100 x 17 quantization passes over every weight at 4 bits
# (about 20x the 1-D search: a few CPU minutes for an R50, seconds on a GPU).
custom_imports = dict(imports=['mmdet_ext'], allow_failed_imports=False)
quant = dict(
    a_qconfig=dict(quantizer='LSQFakeQuantize', observer='AvgMSEFastObserver', bit=4, symmetric=False, ch_axis=-1),
    w_qconfig=dict(quantizer='AdaRoundFakeQuantize', observer='GridMSEObserver', bit=4, symmetric=False, ch_axis=0),
    calibrate=256,
    calib=dict(split='train', samples_per_gpu=2),
    recon=dict(iters=20000, batch_size=2, scale_lr=4.0e-5, warm_up=0.2, weight=0.01, b_range=[20, 2],
               keep_gpu=True, round_mode='learned_hard_sigmoid', drop_prob=0.5),
    # The first conv: 8-bit weights, and the image stays FP, as in the official code.
    overrides={'backbone.conv1': dict(w_qconfig=dict(bit=8), a_qconfig=None)},
    hooks=[dict(type='QuantCalibHook'), dict(type='QDropReconHook')])

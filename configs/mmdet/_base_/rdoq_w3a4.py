# RDOQ (Wang et al., ECCV 2022): weights at an average of 3 bits, allocated per group of 8 output
# channels from second-order RD curves with the exact DP; activations uniform A4 (QDrop's LSQ +
# AvgMSEFast). Allocations for 2, 3 and 4 bits are written to work_dir/rd_alloc; 3 is applied.
# The first conv keeps 8-bit weights and an FP image, as in QDrop.
custom_imports = dict(imports=['mmdet_ext'], allow_failed_imports=False)
quant = dict(
    a_qconfig=dict(quantizer='LSQFakeQuantize', observer='AvgMSEFastObserver', bit=4, symmetric=False, ch_axis=-1),
    w_qconfig=dict(quantizer='FixedFakeQuantize', observer='MSEObserver', bit=4, symmetric=False, ch_axis=0),
    calibrate=256,
    calib=dict(split='train', samples_per_gpu=2),
    recon=None,
    rdoq=dict(estimator='second_order', target='weight', target_rates=[2, 3, 4], apply_rate=3, solver='dp',
              weight_group=8, calib_images=64, projections=4),
    overrides={'backbone.conv1': dict(w_qconfig=dict(bit=8), a_qconfig=None)},
    hooks=[dict(type='QuantCalibHook'), dict(type='RDCurvesHook'), dict(type='BitAllocHook')])

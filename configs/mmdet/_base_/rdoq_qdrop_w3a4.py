# RDOQ + QDrop: the RDOQ allocation (average 3-bit weights, A4) followed by QDrop reconstruction
# (AdaRound + LSQ with dropping) on the allocated mixed-precision grids, with QDrop's
# hyper-parameters.
_base_ = ['./rdoq_w3a4.py']
quant = dict(
    w_qconfig=dict(quantizer='AdaRoundFakeQuantize', observer='MSEObserver', bit=4, symmetric=False, ch_axis=0),
    recon=dict(_delete_=True, iters=20000, batch_size=2, scale_lr=4.0e-5, warm_up=0.2, weight=0.01, b_range=[20, 2],
               keep_gpu=True, round_mode='learned_hard_sigmoid', drop_prob=0.5),
    hooks=[dict(type='QuantCalibHook'), dict(type='RDCurvesHook'), dict(type='BitAllocHook'),
           dict(type='QDropReconHook')])

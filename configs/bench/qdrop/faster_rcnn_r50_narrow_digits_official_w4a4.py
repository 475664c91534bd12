# QDrop W4A4 of the bundled narrow Faster R-CNN under QDrop's own protocol (heads FP, backbone +
# FPN quantized), at the bench settings: 64 calibration images, 500 iterations per unit.
#   python tools/test.py configs/bench/qdrop/faster_rcnn_r50_narrow_digits_official_w4a4.py \
#       checkpoints/faster_rcnn_r50_narrow_digits.pth --eval bbox --work-dir work_dirs/official
_base_ = ['../faster_rcnn_r50_narrow_digits.py', '../../mmdet/_base_/qdrop_official_w4a4.py']
quant = dict(calibrate=64, recon=dict(iters=500, keep_gpu=False))

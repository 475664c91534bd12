# QDrop W4A4 of the bundled narrow Faster R-CNN, sized for 2 CPU cores (make demo).
#   python tools/test.py configs/bench/qdrop/faster_rcnn_r50_narrow_digits_w4a4.py \
#       checkpoints/faster_rcnn_r50_narrow_digits.pth --eval bbox --work-dir work_dirs/demo
_base_ = ['../faster_rcnn_r50_narrow_digits.py', '../../mmdet/_base_/qdrop_w4a4.py']
quant = dict(calibrate=32, recon=dict(iters=200, keep_gpu=False))

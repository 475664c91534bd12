# RDOQ of the bundled narrow faster_rcnn at average 3-bit weights and average 4-bit activations (both
# allocated), sized for 2 CPU cores.
#   python tools/test.py configs/bench/rdoq/faster_rcnn_r50_narrow_digits_rdoq_both_w3a4.py \
#       checkpoints/faster_rcnn_r50_narrow_digits.pth --eval bbox --work-dir work_dirs/faster_rcnn_rdoq_both_w3a4
_base_ = ['../faster_rcnn_r50_narrow_digits.py', '../../mmdet/_base_/rdoq_both_w3a4.py']
quant = dict(calibrate=64, rdoq=dict(calib_images=8))

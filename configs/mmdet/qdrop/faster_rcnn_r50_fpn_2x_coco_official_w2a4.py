# QDrop W2A4 PTQ under QDrop's own protocol (heads FP, backbone + FPN quantized) of mmdet's faster_rcnn_r50_fpn_2x_coco.
# No COCO box AP was measured here (COCO is not available to this project): docs/benchmark.md
# has the box AP of the bundled small detectors, docs/scale.md the cost at COCO size.
#   tools/dist_test.sh configs/mmdet/qdrop/faster_rcnn_r50_fpn_2x_coco_official_w2a4.py CKPT 8 --eval bbox --work-dir DIR
from mmdet_ext.mmdet_configs import mmdet_config

_base_ = [mmdet_config('faster_rcnn/faster_rcnn_r50_fpn_2x_coco.py'), '../_base_/qdrop_official_w2a4.py']

# QDrop W2A4 PTQ of mmdet's faster_rcnn_r50_fpn_2x_coco (COCO box AP: see README).
#   tools/dist_test.sh configs/mmdet/qdrop/faster_rcnn_r50_fpn_2x_coco_w2a4.py CKPT 8 --eval bbox --work-dir DIR
from mmdet_ext.mmdet_configs import mmdet_config

_base_ = [mmdet_config('faster_rcnn/faster_rcnn_r50_fpn_2x_coco.py'), '../_base_/qdrop_w2a4.py']

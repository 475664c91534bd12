# RDOQ + QDrop PTQ of mmdet's faster_rcnn_r101_fpn_2x_coco: average 3-bit weights per channel group, A4.
#   tools/dist_test.sh configs/mmdet/rdoq/faster_rcnn_r101_fpn_2x_coco_rdoq_qdrop_w3a4.py CKPT 8 --eval bbox --work-dir DIR
from mmdet_ext.mmdet_configs import mmdet_config

_base_ = [mmdet_config('faster_rcnn/faster_rcnn_r101_fpn_2x_coco.py'), '../_base_/rdoq_qdrop_w3a4.py']

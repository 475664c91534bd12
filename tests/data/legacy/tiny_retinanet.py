# A RetinaNet of a few thousand parameters: the structure the legacy quantized checkpoint was saved from.
model = dict(
    type="RetinaNet",
    backbone=dict(type="ResNet", depth=18, base_channels=8, num_stages=4, out_indices=(1, 2, 3), frozen_stages=-1,
                  norm_cfg=dict(type="BN", requires_grad=True), norm_eval=True, style="pytorch", init_cfg=None),
    neck=dict(type="FPN", in_channels=[16, 32, 64], out_channels=16, start_level=0, add_extra_convs="on_input",
              num_outs=4),
    bbox_head=dict(type="RetinaHead", num_classes=3, in_channels=16, stacked_convs=1, feat_channels=16,
                   anchor_generator=dict(type="AnchorGenerator", octave_base_scale=4, scales_per_octave=1,
                                         ratios=[1.0], strides=[16, 32, 64, 128]),
                   bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0],
                                   target_stds=[1.0, 1.0, 1.0, 1.0]),
                   loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
                   loss_bbox=dict(type="L1Loss", loss_weight=1.0)),
    train_cfg=None,
    test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5),
                  max_per_img=10))

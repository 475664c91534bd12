"""The embedded benchmark of rdoq-plugins: generated data, toy models and the bench runners.

Nothing heavy is imported here (no mmdet, mmcv or spconv); import the module you need:

* ``rdoq_bench.digits_coco``: the digits COCO detection set (``digits_spec`` what it is,
  ``digits_render`` how an image is drawn), ``python -m rdoq_bench.digits_coco OUT_DIR``;
* ``rdoq_bench.coco_scale``: a few random COCO-format images at 1333x800;
* ``rdoq_bench.voxelnext_toy``: the VoxelNeXt-shaped spconv toy detector (``voxelnext_model``),
  its synthetic LiDAR scenes (``voxelnext_scenes``), training (``voxelnext_train``) and BEV metric
  (``voxelnext_eval``);
* ``rdoq_bench.nuscenes_format``: a small nuScenes-format LiDAR set in OpenPCDet's layout
  (``write_nuscenes``), ``python -m rdoq_bench.nuscenes_format OUT``, with the nuScenes devkit
  tables of ``rdoq_bench.nuscenes_tables`` (``write_devkit_tables``) so the official metric runs;
* the runners, each ``python -m rdoq_bench.<name> --help``: ``run_mmdet`` (the mmdet detectors,
  ``bench/results.json``), ``run_sparse`` (the sparse toy, ``bench/results_sparse.json``; its
  per-row work is in ``sparse_rows``), ``run_alloc`` (the bit allocators, ``bench/alloc.json``),
  ``run_scale`` (the shipped COCO configs at 1333x800, ``bench/scale.json``) and ``train`` (the
  bundled FP checkpoints).
"""

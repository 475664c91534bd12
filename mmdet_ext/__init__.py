"""mmdetection 2.x adapter of rdoq-plugins: hooks and adapters registered into mmcv's registries.

Add ``custom_imports = dict(imports=['mmdet_ext'], allow_failed_imports=False)`` to a config.
So far it holds the digits COCO benchmark generator (``mmdet_ext.datasets.digits_coco``).
"""

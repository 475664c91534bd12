"""Calibration data (``pcdet_ext.calib_data``): frames of the configured split, without augmentation."""
from __future__ import annotations

import pytest

pytest.importorskip("spconv.pytorch", reason="spconv is not installed")

from pcdet_ext.calib_data import calib_dataset_cfg, check_calib_size
from rdoq_plugins import ConfigError


def test_calibration_frames_come_from_the_train_split_without_augmentation() -> None:
    data_cfg = {"INFO_PATH": {"train": ["a_train.pkl"], "test": ["a_val.pkl"]},
                "DATA_SPLIT": {"train": "train", "test": "val"}}
    cfg, training = calib_dataset_cfg(data_cfg, "train", augment=False)
    assert not training and cfg["INFO_PATH"]["test"] == ["a_train.pkl"] and cfg["DATA_SPLIT"]["test"] == "train"
    assert data_cfg["INFO_PATH"]["test"] == ["a_val.pkl"]  # the test config is untouched
    assert calib_dataset_cfg(data_cfg, "train", augment=True) == (data_cfg, True)
    assert calib_dataset_cfg(data_cfg, "test", augment=False) == (data_cfg, False)
    with pytest.raises(ConfigError, match="calibrate"):
        check_calib_size(10, 9)

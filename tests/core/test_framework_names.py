"""The core's sources name no detection framework or sparse convolution library, not even in
docstrings and comments: adapters bring those, the core stays generic."""
from __future__ import annotations

import re
from pathlib import Path

import rdoq_plugins

NAMES = re.compile(r"mmdet|mmcv|pcdet|openpcdet|spconv|voxelnext|coco", re.IGNORECASE)
CORE = Path(rdoq_plugins.__file__).parent


def framework_mentions(root: Path) -> list[str]:
    """``path:line: text`` for every line under ``root`` that names a framework."""
    hits = []
    for path in sorted(root.rglob("*.py")):
        for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if NAMES.search(line):
                hits.append(f"{path.relative_to(root.parent)}:{no}: {line.strip()}")
    return hits


def test_the_scan_finds_a_name(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "clean.py").write_text('"""Generic."""\nx = 1  # an adapter\n')
    (pkg / "sub" / "dirty.py").write_text("import torch\n\n# like MMDet's hooks\n")
    assert framework_mentions(pkg) == ["pkg/sub/dirty.py:3: # like MMDet's hooks"]


def test_core_names_no_framework() -> None:
    hits = framework_mentions(CORE)
    assert len(list(CORE.rglob("*.py"))) > 10  # the scan sees the sources
    assert not hits, "framework names in the core:\n" + "\n".join(hits)

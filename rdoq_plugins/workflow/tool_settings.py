"""The RDOQ settings the tools of one work dir share, so that ``gen_rd_curves`` -> ``dp_alloc`` ->
``test`` reuse one curve set.

The curve tool records the ``rdoq`` keys its flags set (``--testsize 4``: ``calib_images``), its
whole curve settings and the curve folder in ``work_dir/rd_curves/settings.json``; the allocation
tool records the allocation keys its flags set in ``work_dir/rd_alloc/settings.json``. A later tool
runs with the config's ``rdoq`` section (or the defaults), then the flags stored by the earlier
tools, then its own flags: a value given on an earlier tool's command line stays with the work
dir until a flag says otherwise. Where a stored flag differs from the config, one warning line
names the key and both values; where this run's curve folder is not the stored one, one line says
which curve settings differ before the new curves are computed.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rdoq_plugins.config import ConfigError, RDOQConfig
from rdoq_plugins.errors import InputError
from rdoq_plugins.files import atomic_write_text
from rdoq_plugins.workflow.allocate import ALLOC_DIR
from rdoq_plugins.workflow.curves import CURVE_DIR, CURVE_SETTINGS, curve_store, rdoq_section
from rdoq_plugins.workflow.session import Session

logger = logging.getLogger("rdoq_plugins")
SETTINGS_FILE = "settings.json"
# The rdoq keys each tool records of its flags.
CURVE_KEYS = (*CURVE_SETTINGS, "target", "act_rate")
ALLOC_KEYS = ("target", "target_rates", "act_rate", "solver", "min_bits")
# The flag behind each key, for the messages.
FLAG = {"calib_images": "--testsize", "weight_group": "--nchannelbatch", "act_group": "--nchannelbatch",
        "weight_bits": "--maxrates", "act_bits": "--maxrates", "target_rates": "--target_rates",
        "min_bits": "--min_bits", "act_rate": "--act_rate"}


@dataclass(frozen=True)
class ToolRole:
    """What a tool reads of the work dir's stored settings (``reads``: ``curves``, ``alloc``),
    what it records (``records``), and whether it runs RDOQ without an ``rdoq`` section."""

    name: str
    reads: tuple[str, ...] = ()
    records: str | None = None
    required: bool = True


GEN_RD_CURVES = ToolRole("gen_rd_curves.py", records="curves")
DP_ALLOC = ToolRole("dp_alloc.py", reads=("curves",), records="alloc")
TEST = ToolRole("test.py", reads=("curves", "alloc"), required=False)


def settings_path(work_dir: Path, which: str) -> Path:
    """``work_dir/rd_curves/settings.json`` (``curves``) or ``work_dir/rd_alloc/settings.json``."""
    return Path(work_dir) / (CURVE_DIR if which == "curves" else ALLOC_DIR) / SETTINGS_FILE


def read_stored(work_dir: Path, which: str) -> dict[str, Any] | None:
    """The settings a tool recorded in the work dir, or None."""
    path = settings_path(work_dir, which)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: unreadable RDOQ tool settings ({err}); delete the file to start over") from None
    if not isinstance(data, dict) or not isinstance(data.get("flags"), dict):
        raise InputError(f"{path}: not the RDOQ tool settings this version writes; delete the file to start over")
    return data


def _plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples as lists), for comparisons with stored values."""
    return json.loads(json.dumps(value))


def _carried(base: Mapping[str, Any], flags: Mapping[str, Any], work_dir: Path,
             reads: Sequence[str]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The stored flags the tool's own ``flags`` leave, where each came from, and one line per
    stored flag that differs from the config."""
    carried: dict[str, Any] = {}
    source: dict[str, str] = {}
    notes: list[str] = []
    for which in reads:
        stored = read_stored(work_dir, which) or {"flags": {}}
        for key, value in stored["flags"].items():
            if key in flags:
                continue
            where = f"{stored.get('tool')}'s {FLAG.get(key, '--' + key)} (stored in {settings_path(work_dir, which)})"
            if _plain(base.get(key)) != _plain(value):
                notes.append(f"rdoq.{key}: {value!r} from {where}, not the config's {base.get(key)!r}")
            carried[key], source[key] = value, where
    return carried, source, notes


def tool_rdoq(base: RDOQConfig | None, flags: Mapping[str, Any], work_dir: Path, role: ToolRole) -> RDOQConfig | None:
    """The ``rdoq`` section ``role``'s tool runs with: ``base`` (the config's, or the defaults),
    then the flags the tools it reads stored in ``work_dir``, then its own ``flags`` (the keys
    :func:`~rdoq_plugins.cli_flags.rdoq_overrides` gives). None when the role needs no section
    and there is none; flags without a section are then an :class:`InputError`."""
    if base is None and not role.required:
        if flags:
            raise InputError(f"{role.name}: the RDOQ flags ({', '.join(sorted(flags))}) need an rdoq section "
                             "in the quant config")
        return None
    data = (base or RDOQConfig()).to_dict()
    carried, source, notes = _carried(data, flags, work_dir, role.reads)
    overrides = {**carried, **flags}
    rates = overrides.get("target_rates", data["target_rates"])
    if "apply_rate" not in overrides and data["apply_rate"] not in rates:
        overrides["apply_rate"] = rates[0]  # the config's rate is not among the stored ones: the first
        notes.append(f"rdoq.apply_rate: {rates[0]!r} (the first stored target rate), not the config's "
                     f"{data['apply_rate']!r}, which is not among {list(rates)}")
    merged = {**data, **overrides}
    if merged.get("target") != "both" and "act_rate" not in flags:
        merged.pop("act_rate", None)  # a config's or stored act_rate belongs to target: both
    try:
        cfg = RDOQConfig.from_dict(merged)
    except ConfigError as err:
        if not carried:
            raise
        keys = ", ".join(f"{k} from {v}" for k, v in source.items())
        raise InputError(f"{err} (with {keys})") from None
    for note in notes:
        logger.warning(note)
    return cfg


def record_curve_flags(session: Session, flags: Mapping[str, Any]) -> None:
    """Records the curve tool's flags, its curve settings and its curve folder (rank 0)."""
    if session.dist.rank != 0:
        return
    settings = {k: v for k, v in rdoq_section(session).to_dict().items() if k in CURVE_SETTINGS}
    data = {"tool": GEN_RD_CURVES.name, "flags": {k: v for k, v in flags.items() if k in CURVE_KEYS},
            "rdoq": settings, "folder": curve_store(session).dir.name}
    atomic_write_text(json.dumps(_plain(data), indent=2) + "\n", settings_path(session.work_dir, "curves"))


def record_alloc_flags(work_dir: Path, flags: Mapping[str, Any], rank: int = 0) -> None:
    """Records the allocation tool's flags (rank 0)."""
    if rank != 0:
        return
    data = {"tool": DP_ALLOC.name, "flags": {k: v for k, v in flags.items() if k in ALLOC_KEYS}}
    atomic_write_text(json.dumps(_plain(data), indent=2) + "\n", settings_path(work_dir, "alloc"))


def other_curves_note(session: Session) -> str | None:
    """One line when the curve tool stored curves in another folder than this run's: which curve
    settings differ (key, stored value, this run's value), or that the model or data do."""
    stored = read_stored(session.work_dir, "curves")
    store = curve_store(session)
    if stored is None or stored.get("folder") == store.dir.name:
        return None
    now = _plain({k: v for k, v in rdoq_section(session).to_dict().items() if k in CURVE_SETTINGS})
    before = stored.get("rdoq", {})
    diff = [f"rdoq.{k}: {before.get(k)!r} there, {now[k]!r} here" for k in CURVE_SETTINGS if before.get(k) != now[k]]
    why = "; ".join(diff) if diff else "same curve settings, another model, checkpoint, calibration data or target"
    return (f"the RD curves {stored.get('tool')} stored in {store.dir.parent / str(stored.get('folder'))} do not "
            f"fit this run ({why}): computing a new curve set in {store.dir}")

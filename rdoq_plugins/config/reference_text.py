"""The hand-written text of the config reference (``docs/config.md``).

Everything else in the reference is generated from the schema by :mod:`rdoq_plugins.config.reference`:
this module holds only prose, the one-line meaning of each key in :data:`DESCRIPTIONS`, and the
paragraphs that open the page and its sections.
"""
from __future__ import annotations

# What each key means, per schema dataclass. Tests fail when a key has no line here or a line names a
# key that no longer exists.
DESCRIPTIONS: dict[str, dict[str, str]] = {
    "QuantConfig": {
        "w_qconfig": "How weights are quantized (QDrop's `w_qconfig`).",
        "a_qconfig": "How activations are quantized (QDrop's `a_qconfig`), and where (`position`).",
        "calibrate": "Calibration images (or frames): ranges, RD curves and reconstruction use them.",
        "recon": "QDrop block reconstruction; `null` gives plain PTQ (calibration only).",
        "overrides": "Per-layer settings, keyed by exact module name or `re:` + a regular expression.",
        "rdoq": "Mixed precision from rate-distortion curves (RDOQ); `null` keeps uniform bits.",
        "version": "Schema version, stored with saved configs.",
    },
    "QuantizerConfig": {
        "quantizer": "Fake quantizer: `Fixed` keeps calibrated steps, `LSQ` / `LSQPlus` learn the step "
                     "(and offset) in reconstruction, `AdaRound` learns weight rounding (weights only).",
        "observer": "How calibration sets the range: min-max, or the Lp-optimal clipping (`MSE`: grid "
                    "of 100 ratios, `MSEFast`: golden-section search; `GridMSE`: the official weight "
                    "search, 100 widths × every zero point on every element); `Avg`: averaged over batches.",
        "bit": "Bit-width; RDOQ replaces it per channel group in the layers it allocates.",
        "symmetric": "A grid symmetric around zero (no zero point).",
        "ch_axis": "Axis with one step per channel; `-1` is one step per tensor (QDrop's convention).",
        "group_size": "Channels of `ch_axis` sharing one step (RDOQ channel groups); `null`: one each.",
        "position": "Top-level `a_qconfig` only (`null` for weights). `input`: every quantized layer quantizes "
                    "its input. `output`: quantizers on the tensors layers produce, where the official QDrop "
                    "code puts them, each step learned in the unit that produces it; layers whose input no "
                    "such quantizer covers keep an input quantizer. The adapter places them (the 2-D "
                    "detection adapter: ResNet + FPN, see its guide; the sparse adapter refuses `output`); used through the core alone, "
                    "each layer quantizes its output. With no input quantizer in a unit, both `recon.mix` "
                    "rules give the paper's. Output "
                    "quantizers use the top-level `a_qconfig`; an override's `a_qconfig` still means the "
                    "layer's input. Not with `rdoq.target` act / joint / both. Measured: bundled Faster "
                    "R-CNN QDrop W4A4 0.696 with `output`, 0.717 with `input` (docs/benchmark.md).",
    },
    "ReconConfig": {
        "iters": "Optimisation steps per reconstruction unit.",
        "batch_size": "Cached images drawn per step (the official QDrop code ignores it).",
        "scale_lr": "Adam learning rate of the LSQ steps.",
        "lr": "Adam learning rate of AdaRound's rounding variables.",
        "warm_up": "Fraction of `iters` before the rounding regulariser starts.",
        "weight": "Weight of the rounding regulariser in the loss.",
        "b_range": "The regulariser's exponent β, decaying linearly from the first value to the second.",
        "keep_gpu": "Keep a unit's cache on the GPU while it fits (then pinned CPU memory, then disk).",
        "round_mode": "`learned_hard_sigmoid`: AdaRound; `nearest`: weights round to nearest.",
        "drop_prob": "QDrop's probability of *keeping* the quantized activation (`1.0`: no dropping).",
        "mix": "How a unit's input mixes the two paths. `element` (the paper): each element is Q(x_q) with "
               "probability `drop_prob`, else x_fp, one mask shared by every quantizer reading it. `twice`: "
               "x_q / x_fp mixed, then each quantizer mixes Q(.) with its input again (own masks).",
        "early_stop": "Stop a unit when its loss plateaus; `null` runs every iteration.",
        "exclude": "Unit names (regular expressions, full match) not reconstructed: weights round to "
                   "nearest, steps stay calibrated. A pattern that matches no unit is an error.",
        "bias_lr": "Adam learning rate of the unit's biases (bias correction); `0` keeps them fixed.",
    },
    "EarlyStopConfig": {
        "window": "Iterations per loss window.",
        "min_rel_improvement": "Stop when a window's mean loss beats the previous one by less than this.",
    },
    "RDOQConfig": {
        "estimator": "`second_order`: every candidate priced from gradient projections; `measured`: one "
                     "calibration pass per candidate (the reference, slow).",
        "target": "What gets allocated bits: `weight`, `act` (layer inputs), `joint` (one budget for "
                  "both) or `both` (weights at the target rate, inputs at `act_rate`, two budgets).",
        "target_rates": "Average bits per element to allocate; the allocation tools allocate each.",
        "apply_rate": "The rate a run applies; one of `target_rates`, by default the first.",
        "act_rate": "With `target: both`: the inputs' average bits (required there, refused elsewhere).",
        "solver": "`dp`: exact multiple-choice knapsack; `lagrangian`: slope bisection on the convex "
                  "hulls; `greedy`: the baseline.",
        "min_bits": "Fewest bits a group may get (`0` lets a weight group be zeroed).",
        "weight_group": "Output channels per weight group (RDOQ's `nchannelbatch`).",
        "act_group": "Input channels per activation group.",
        "weight_bits": "Candidate weight bit-widths, increasing (RDOQ's `maxrates` m: 0 .. m-1).",
        "weight_ratios": "Candidate clipping ratios of each weight group's range.",
        "act_bits": "Candidate activation bit-widths, increasing.",
        "act_ratios": "Candidate clipping ratios of each activation group's range.",
        "projections": "Random output projections per batch (second-order estimator).",
        "kappa": "RDOQ's isotropic term ½κ‖Δ‖² added to weight distortions.",
        "seed": "Seed of the random projections.",
        "calib_images": "Images the curves use (RDOQ's `testsize`); `null`: all `calibrate` images.",
        "passes": "`second_order`: passes over the images, each over its share of the layers, whose curves "
                  "it stores when done (a killed run resumes with the next); each adds a forward and backward "
                  "per batch. `measured` stores every layer when done.",
        "additivity": "Measure each allocation's output distortion beside the predicted sum.",
    },
    "LayerQConfig": {
        "w_qconfig": "Keys laid over the top-level `w_qconfig` for this layer; `null` keeps its weights FP.",
        "a_qconfig": "Keys laid over the top-level `a_qconfig` for this layer; `null` keeps its input FP.",
    },
}

# The paragraph under each section's heading, per schema dataclass.
INTROS: dict[str, str] = {
    "QuantConfig": "The keys of the quantization config itself.",
    "QuantizerConfig": "One quantizer each: weights, activations (layer inputs unless `position: output`). "
                       "A partial mapping keeps the other defaults.",
    "ReconConfig": "QDrop / BRECQ block reconstruction, unit by unit in forward order.",
    "EarlyStopConfig": "Off (`null`) by default; a mapping turns it on, its keys defaulting as below.",
    "RDOQConfig": "Off (`null`) by default; a mapping, even `{}`, turns RDOQ on with the defaults below.",
    "LayerQConfig": "`overrides` maps a module name (exact) or `re:` + a regular expression (full match) to "
                    "`null`, which keeps the whole layer FP, or to a mapping of the keys below. An exact "
                    "name wins over patterns; among patterns the first match wins. When the model is "
                    "quantized (before calibration and before the FP evaluation), a name that is no "
                    "quantizable layer of the model, or a pattern that fully matches none, raises "
                    "`ConfigError` naming the key, its value and the closest layer names.",
}

# The last section: a file laid over a framework config's section, and QDrop's own file layout
# (:mod:`rdoq_plugins.config.load`).
MERGING_TITLE = "A file over a section"
MERGING: tuple[str, ...] = (
    "A `--quant-config` / `--quant_cfg` file is merged into the framework config's quant section:",
    "",
    "- a mapping in the file is merged into the section's mapping of the same key, key by key, at any",
    "  depth; any other value (number, string, list) replaces the section's;",
    "- `overrides` merge by layer name: the file's entry for a name replaces the section's entry for",
    "  that name whole, the section's other entries are kept (the shipped configs' 8-bit",
    "  `backbone.conv1` stays); the file's entries come first, so its patterns are tried first;",
    "- `null` at the top level is the value, read as the schema reads it: `recon: null` turns",
    "  reconstruction off, `rdoq: null` turns RDOQ off, `overrides: null` drops every override of the",
    "  section;",
    "- `null` inside a mapping deletes the section's key, so its default applies (e.g.",
    "  `recon: {early_stop: null}`, `calib: {seed: null}`); inside an `overrides` entry it keeps its",
    "  meaning, an FP layer (or FP weights, or an FP input). `{}` gives a layer the section's settings.",
    "",
    "A file may also be in the layout of QDrop's ImageNet configs (`exp/w2a4/*/config.yaml`): the",
    "section under a top-level `quant:` key, beside `model`, `data` and `process`. The `quant` mapping",
    "is read as the section; one warning names the other top-level keys and why they are ignored (the",
    "framework config gives the model and the data, the checkpoint the weights; the calibration seed",
    "is `calib.seed`). A quant section key beside `quant:` is an error, as it would be ignored.",
)

# The page's opening paragraphs, between the generated-file notice and the defaults block.
PREAMBLE: tuple[str, ...] = (
    "Every key of the quantization config: a YAML file, or the quant section of a framework config.",
    "All keys are optional. Values are checked when the config is read, before any work starts: a",
    "wrong key or value raises `ConfigError` naming the key, the value given and what the *allowed*",
    "column below says.",
    "",
    "Adapters accept a few keys of their own beside these; their guides list them (see the",
    "[README](../README.md)).",
)

# The paragraph above the defaults block.
DEFAULTS_NOTE: tuple[str, ...] = (
    "Written out in full, the empty config `{}` is the one below, except that `rdoq` is `null` (RDOQ",
    "off) unless given; it is shown at its defaults.",
)

"""What ``gpedge export`` is asked to do (torch-free, so the CLI can build it before importing torch)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gpedge.errors import GpedgeError
from gpedge.export.int8 import Int8Settings
from gpedge.graph.contract import DEFAULT_MASK_RULE, parse_mask_rule
from gpedge.tensorrt.engines import HARDWARE_LEVELS

DEFAULT_MAX_BATCH = 32
DEFAULT_OPSET = 18
#: The export's operating point: the most validation healthy slices the graph may call tumour
#: (:mod:`gpedge.export.class_bias`).
DEFAULT_MAX_HEALTHY_FP = 0.03
#: The operating point's default floor on validation sensitivity: none (it may lower it as far as the target needs).
DEFAULT_MAX_SENSITIVITY_LOSS = 1.0


@dataclass
class ExportOptions:
    """Options of one export (the ``gpedge export`` flags).

    ``engine``: ``"auto"`` builds a TensorRT engine when TensorRT and a GPU are present, ``True``
    requires one, ``False`` skips it. ``mask_rule`` and ``offset``: the mask rule and parameter the package
    starts with (``mask_rule`` None: :data:`~gpedge.graph.contract.DEFAULT_MASK_RULE`; ``offset`` None: the
    rule's default, :data:`gpedge.graph.contract.DEFAULT_OFFSETS`). ``tune_mask``: choose the rule and
    offset on up to ``tune_slices`` slices of the run's validation patients (:mod:`gpedge.export.tuning`);
    ``"auto"`` does when neither ``mask_rule`` nor ``offset`` is given and those patients are reachable,
    ``True`` requires them.
    ``parity_samples``: slices the parity checks run on. ``int8``: also write ``model.int8.onnx``,
    calibrated on ``calibration_slices`` slices of ``calibration`` (a data-set folder or ``.npy``; default
    the run's training patients) and gated on ``gate_slices`` slices of the run's validation patients;
    ``enforce_int8_gate`` False records the gate without refusing (untrained benchmark packages).
    ``flip_average``: the graph averages each slice with its left-right mirror image
    (:class:`gpedge.graph.fused.FusedModel`; twice the network's cost). ``class_bias``: True chooses the graph's
    class bias on the run's validation patients when they are reachable (:mod:`gpedge.export.class_bias`),
    False exports none, a tuple (one value per class) bakes in those values. ``max_healthy_fp``: with the chosen
    bias, the no-tumour class's value is the smallest at which at most this share of the validation patients'
    healthy slices are called tumour (1 leaves the tumour-versus-healthy odds as trained). ``max_sensitivity_loss``:
    the most that value may lower the share of validation tumour slices called tumour (1: no floor); when the
    target needs more, the largest value within it is taken and the target recorded as not reached.
    """

    image_size: int | None = None
    max_batch: int = DEFAULT_MAX_BATCH
    opset: int = DEFAULT_OPSET
    fp16: bool = True
    engine: bool | Literal["auto"] = "auto"
    workspace_gb: float = 4.0
    version_compatible: bool = False
    hardware_compatibility: str = "NONE"
    mask_rule: str | None = None
    offset: float | None = None
    tune_mask: bool | Literal["auto"] = "auto"
    tune_slices: int = 128
    parity_samples: int = 8
    overwrite: bool = False
    int8: bool = False
    calibration: Path | None = None
    calibration_slices: int = 64
    gate_slices: int = 128
    enforce_int8_gate: bool = True
    int8_settings: Int8Settings = field(default_factory=Int8Settings)
    flip_average: bool = True
    class_bias: bool | tuple[float, ...] = True
    max_healthy_fp: float = DEFAULT_MAX_HEALTHY_FP
    max_sensitivity_loss: float = DEFAULT_MAX_SENSITIVITY_LOSS

    @property
    def rule(self) -> str:
        """The mask rule the package starts with."""
        return DEFAULT_MASK_RULE if self.mask_rule is None else self.mask_rule

    @property
    def tunes(self) -> bool | None:
        """Whether the export chooses the rule on the validation patients: True (required), None (when reachable), False."""
        if self.tune_mask == "auto":
            return None if self.mask_rule is None and self.offset is None else False
        return bool(self.tune_mask)

    def rule_offset(self) -> float:
        """The package's starting mask-rule parameter; a clear error for an unknown rule or an offset out of its range."""
        rule = parse_mask_rule(self.rule)
        return rule.check_offset(rule.default_offset if self.offset is None else self.offset)

    def check(self) -> None:
        """Raise ``GpedgeError`` naming the first option out of range."""
        if self.max_batch < 1:
            raise GpedgeError(f"--max-batch must be >= 1, got {self.max_batch}")
        self.rule_offset()
        if self.tune_mask is True and (self.mask_rule is not None or self.offset is not None):
            raise GpedgeError("--tune-mask chooses the mask rule and offset itself: drop --mask-rule and --offset, or --tune-mask")
        if self.tune_slices < 1:
            raise GpedgeError(f"--tune-slices must be >= 1, got {self.tune_slices}")
        if self.parity_samples < 1:
            raise GpedgeError(f"--parity-samples must be >= 1, got {self.parity_samples}")
        if self.hardware_compatibility.upper() not in HARDWARE_LEVELS:
            raise GpedgeError(
                f"--hardware-compatibility {self.hardware_compatibility!r} is not one of {', '.join(HARDWARE_LEVELS)}"
            )
        if self.int8 and (self.calibration_slices < 1 or self.gate_slices < 1):
            raise GpedgeError("--calibration-slices and --gate-slices must be >= 1")
        if self.calibration is not None and not self.int8:
            raise GpedgeError("--calibration is for the INT8 graph: add --int8")
        if not 0.0 <= self.max_healthy_fp <= 1.0:
            raise GpedgeError(f"--max-healthy-fp is a share of the healthy slices, from 0 to 1; got {self.max_healthy_fp}")
        if not 0.0 <= self.max_sensitivity_loss <= 1.0:
            raise GpedgeError(
                f"--max-sensitivity-loss is a share of the tumour slices, from 0 to 1; got {self.max_sensitivity_loss}"
            )
        if self.engine is True and not self.fp16:
            raise GpedgeError("--engine needs the FP16 graph: drop --no-fp16")

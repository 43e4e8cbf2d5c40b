"""Compression recipes: the schema of `recipes/*.yaml` and lookup by name or path.

A recipe is an ordered list of steps, each one technique key with its typed configuration,
then the exports, the evaluation and the constraints the report checks. Steps apply in order;
where two steps' layer scopes overlap, the later step works on the result of the earlier one
("later steps win").
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import Field, model_validator

from .builtin import Catalog
from .data.prepare import DEFAULT_CALIBRATION_SAMPLES
from .yamlio import Strict, load_model_file  # noqa: F401 (re-exported)


class Optimizer(str, Enum):
    adam = "adam"
    sgd = "sgd"
    rmsprop = "rmsprop"


class LRSchedule(str, Enum):
    constant = "constant"
    cosine = "cosine"


class Schedule(str, Enum):
    polynomial = "polynomial"
    constant = "constant"


class CentroidInit(str, Enum):
    kmeans_plus_plus = "kmeans++"
    linear = "linear"
    density_based = "density-based"
    random = "random"


class Quantization(str, Enum):
    float32 = "float32"
    dynamic = "dynamic"
    float16 = "float16"
    int8 = "int8"
    int16x8 = "int16x8"


class IOType(str, Enum):
    float32 = "float32"
    int8 = "int8"
    uint8 = "uint8"


class ExportFormat(str, Enum):
    tflite = "tflite"
    onnx = "onnx"


class Target(str, Enum):
    cpu = "cpu"
    gpu = "gpu"
    edgetpu = "edgetpu"


class Metric(str, Enum):
    accuracy = "accuracy"
    mse = "mse"
    mae = "mae"


class Split(str, Enum):
    test = "test"
    val = "val"


class LayerSelector(Strict):
    """Layers picked by name (regular expressions, full match) or by class name."""

    names: list[str] = Field(default_factory=list)
    classes: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _regexes_compile(self):
        import re

        for pattern in self.names:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"invalid regular expression {pattern!r}: {err}") from None
        return self


class Scope(Strict):
    """Which layers a step touches: those included (all when empty) minus those excluded."""

    include: LayerSelector = Field(default_factory=LayerSelector)
    exclude: LayerSelector = Field(default_factory=LayerSelector)


class Augment(Strict):
    """Random changes to each training image (NHWC input), drawn afresh every epoch.

    In a distill step the teacher sees the same changed image as the student, so it labels
    inputs the dataset does not hold ("consistent teaching").
    """

    horizontal_flip: bool = Field(False, description="mirror half the images left to right")
    shift: int = Field(0, ge=0, description="translate by up to this many pixels each way "
                                             "(zero padding, then a random crop)")


class Training(Strict):
    """How a step that trains does it."""

    epochs: float = Field(2, gt=0)
    batch_size: int = Field(64, gt=0)
    optimizer: Optimizer = Optimizer.adam
    learning_rate: float = Field(1e-4, gt=0)
    lr_schedule: LRSchedule = Field(
        LRSchedule.constant, description="'cosine' decays the learning rate to 0 over the step")
    augment: Augment | None = Field(None, description="image augmentation of the training batches")
    scope: Scope = Field(default_factory=Scope)


class SelfDistill(Strict):
    """While a step trains, also match the input model's softened outputs (it is the teacher)."""

    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.5, ge=0, le=1, description="weight of the label loss; 1 - alpha on the teacher")


class PruneStep(Training):
    target_sparsity: float = Field(0.5, gt=0, lt=1)
    initial_sparsity: float = Field(0.0, ge=0, lt=1)
    schedule: Schedule = Schedule.polynomial
    begin_step: int = Field(0, ge=0)
    end_step: int | None = Field(None, gt=0, description="default: the last fine-tune step")
    frequency: int = Field(100, gt=0)
    structure: str | None = Field(None, description="m-by-n sparsity such as '2:4'")
    block_size: list[int] | None = Field(
        None, description="[rows, cols] blocks pruned together in Dense kernels (tfmot block sparsity)")
    distill: SelfDistill | None = Field(
        None, description="distil from the unpruned input model while pruning (classification)")
    freeze_rest: bool = Field(
        False, description="train only the layers the step prunes; the rest keep their weights "
                           "and BatchNorm statistics (faster: no gradient flows into them)")

    @model_validator(mode="after")
    def _check(self):
        if self.initial_sparsity >= self.target_sparsity:
            raise ValueError(
                f"initial_sparsity ({self.initial_sparsity}) must be below target_sparsity "
                f"({self.target_sparsity})"
            )
        if self.structure is not None:
            parts = self.structure.split(":")
            if len(parts) != 2 or not all(p.isdigit() for p in parts) or int(parts[0]) >= int(parts[1]):
                raise ValueError(
                    f"structure must be 'M:N' with M < N (e.g. '2:4'); received {self.structure!r}"
                )
        if self.block_size is not None:
            if len(self.block_size) != 2 or min(self.block_size) < 1:
                raise ValueError(f"block_size must be two positive integers [rows, cols]; "
                                 f"received {self.block_size}")
            if self.structure is not None:
                raise ValueError("block_size and structure (m:n) cannot be combined")
        if self.end_step is not None and self.end_step <= self.begin_step:
            raise ValueError(f"end_step ({self.end_step}) must be after begin_step ({self.begin_step})")
        return self


class ClusterStep(Training):
    clusters: int = Field(16, ge=2, le=256)
    freeze_rest: bool = Field(
        False, description="train only the layers the step clusters; the rest keep their "
                           "weights and BatchNorm statistics (faster)")
    init: CentroidInit = CentroidInit.kmeans_plus_plus
    preserve_sparsity: bool = False


class QuantizeStep(Training):
    """Quantization-aware training; preserves sparsity or clusters of earlier steps when asked."""

    preserve: list[str] | None = Field(
        None, description="'prune' and/or 'cluster'; default: whatever earlier steps did"
    )
    freeze_batch_norm: bool = Field(
        False, description="run BatchNormalization in inference mode with its statistics and "
                           "scale fixed, so QAT trains the graph the int8 model computes")

    @model_validator(mode="after")
    def _check(self):
        for item in self.preserve or []:
            if item not in ("prune", "cluster"):
                raise ValueError(f"preserve takes 'prune' and/or 'cluster'; received {item!r}")
        return self


class DistillStep(Training):
    student: str = Field("builtin:width=0.5", description="a model file or builtin:width=F")
    temperature: float = Field(4.0, gt=0)
    alpha: float = Field(0.1, ge=0, le=1)
    learning_rate: float = Field(1e-3, gt=0)

    @model_validator(mode="after")
    def _check(self):
        if self.student.startswith("builtin:"):
            spec = self.student[len("builtin:"):]
            key, _, value = spec.partition("=")
            try:
                width = float(value)
            except ValueError:
                width = -1.0
            if key != "width" or not 0 < width <= 1:
                raise ValueError(
                    f"student must be a model path or 'builtin:width=F' with 0 < F <= 1; "
                    f"received {self.student!r}"
                )
        return self


class FinetuneStep(Training):
    pass


class Step(Strict):
    """One technique key with its configuration, e.g. ``- prune: {target_sparsity: 0.8}``."""

    prune: PruneStep | None = None
    cluster: ClusterStep | None = None
    quantize: QuantizeStep | None = None
    distill: DistillStep | None = None
    finetune: FinetuneStep | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_key(cls, data):
        if isinstance(data, str):  # `- finetune` alone means its defaults
            data = {data: {}}
        if isinstance(data, dict):
            if len(data) != 1:
                raise ValueError(
                    f"a step is one technique key ({', '.join(cls.model_fields)}); "
                    f"received {len(data)} keys: {', '.join(map(str, data))}"
                )
            data = {k: ({} if v is None else v) for k, v in data.items()}
        return data

    @property
    def technique(self) -> str:
        return next(name for name in type(self).model_fields if getattr(self, name) is not None)

    @property
    def config(self) -> Training:
        return getattr(self, self.technique)


class Export(Strict):
    format: ExportFormat = ExportFormat.tflite
    quantization: Quantization = Quantization.float32
    io: IOType | None = Field(
        None, description="input/output type of an int8 model; default: int8 for the Edge TPU, "
                          "float32 elsewhere")
    target: Target = Target.cpu
    calibration_samples: int = Field(DEFAULT_CALIBRATION_SAMPLES, gt=0)
    calibration: Literal["minmax", "percentile", "entropy"] = Field(
        "minmax", description="static int8 activation ranges: the calibration samples' min/max, "
                              "or clipped to their 99.999th percentiles; entropy: ONNX only")
    fused_lstm: bool = Field(
        True, description="LSTMs as TFLite's fused kernel (stateful: reset between sequences); "
                          "false: a stateless WHILE loop")
    keep_float: list[str] = Field(
        default_factory=list, description="Keras layer names left in float in an int8 TFLite "
                                          "model (selective quantization; see convert --explain)")
    sparse_weights: bool = Field(
        False, description="store pruned weights in TFLite's sparse format (a smaller file): "
                           "int8 Dense kernels pruned in [16, 1] blocks, float ones in [4, 1]")

    @model_validator(mode="after")
    def _check(self):
        if self.io not in (None, IOType.float32) and self.quantization is not Quantization.int8:
            raise ValueError(
                f"io {self.io.value} needs quantization int8; received quantization "
                f"{self.quantization.value}"
            )
        if self.target is Target.edgetpu and self.quantization is not Quantization.int8:
            raise ValueError("target edgetpu needs quantization int8 (full integer)")
        if self.sparse_weights and self.format is not ExportFormat.tflite:
            raise ValueError("sparse_weights is a TFLite storage format; drop it for "
                             f"{self.format.value}")
        if self.sparse_weights and self.target is Target.edgetpu:
            raise ValueError("the Edge TPU compiler takes dense weights only; drop sparse_weights "
                             "for target edgetpu")
        return self


class Evaluate(Strict):
    metric: Metric | None = Field(
        None, description="accuracy or mse/mae; unset, the model's output decides: accuracy for "
                          "class scores, mse for a reconstruction, multi-label or regression "
                          "output")
    split: Split = Split.test


class Constraints(Strict):
    max_bytes: int | None = Field(None, gt=0)
    max_gzip_bytes: int | None = Field(None, gt=0)
    max_accuracy_drop: float | None = Field(None, ge=0, description="percentage points")
    max_latency_ms: float | None = Field(None, gt=0)


class Recipe(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    steps: list[Step] = Field(default_factory=list)
    export: list[Export] = Field(default_factory=lambda: [Export()])
    evaluate: Evaluate = Field(default_factory=Evaluate)
    threads: int | None = Field(
        None, ge=1, le=1024,
        description="TensorFlow's threads per op while the recipe runs. Training gives the same "
                    "model for the same seed only at the same thread count: pin it to "
                    "reproduce a run exactly (edgenn fit writes the count its trials used)")
    constraints: Constraints = Field(default_factory=Constraints)

    @model_validator(mode="before")
    @classmethod
    def _export_may_be_one(cls, data):
        if isinstance(data, dict) and isinstance(data.get("export"), dict):
            data = {**data, "export": [data["export"]]}
        return data


CATALOG = Catalog("recipes", "recipe", Recipe)
builtin_recipes = CATALOG.builtin
resolve = CATALOG.resolve
load = CATALOG.load

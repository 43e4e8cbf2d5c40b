"""Quantization-aware training with tfmot, preserving earlier pruning or clustering."""

from __future__ import annotations

from ..recipe import QuantizeStep
from .prune import _nothing_in_scope
from .registry import StepContext, StepResult, register
from .scope import apply_to_layers
from .train import fit


def _scheme(preserve: set[str]):
    import tensorflow_model_optimization as tfmot

    combine = tfmot.experimental.combine
    if "cluster" in preserve:
        return combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity="prune" in preserve)
    if "prune" in preserve:
        return combine.Default8BitPrunePreserveQuantizeScheme()
    return tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()


@register("quantize")
def quantize(model, config: QuantizeStep, ctx: StepContext) -> StepResult:
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    qk = tfmot.quantization.keras
    preserve = set(config.preserve) if config.preserve is not None else (
        {"prune", "cluster"} & set(ctx.done))
    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    skipped: list[str] = []

    def wants(layer) -> bool:
        if type(layer).__name__ == "InputLayer":
            return False
        if registry.supports(layer):
            return True
        skipped.append(f"{layer.name} ({type(layer).__name__})")
        return False

    annotated, wrapped = apply_to_layers(model, config.scope, wants, qk.quantize_annotate_layer)
    if not wrapped:
        raise _nothing_in_scope("quantize", model)
    with qk.quantize_scope():
        qat_model = qk.quantize_apply(annotated, _scheme(preserve))
    fit(qat_model, ctx.splits, config, ctx, "quantization-aware training")
    notes = []
    if skipped:
        notes.append("not quantization-aware (no tfmot support, stays float until export): "
                      + ", ".join(skipped))
    return StepResult(qat_model, {"quantized_layers": wrapped, "preserve": sorted(preserve)}, notes)

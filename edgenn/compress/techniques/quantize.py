"""Quantization-aware training with tfmot, preserving earlier pruning or clustering."""

from __future__ import annotations

from ...models.describe import inbound_layers
from ...recipe import QuantizeStep
from ..registry import register
from ..scope import apply_to_layers, in_scope, nothing_in_scope
from ..step import StepContext, StepResult
from ..train import fit, is_batch_norm


def _scheme(preserve: set[str], kept_float: frozenset = frozenset()):
    import tensorflow_model_optimization as tfmot

    combine = tfmot.experimental.combine
    if "cluster" in preserve:
        scheme = combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity="prune" in preserve)
    elif "prune" in preserve:
        scheme = combine.Default8BitPrunePreserveQuantizeScheme()
    else:
        scheme = tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()
    registry = scheme.get_quantize_registry
    scheme.get_quantize_registry = lambda: _EmulableOnly(registry(), kept_float)
    return scheme


class _EmulableOnly:
    """A tfmot registry that does not claim layers whose activation it cannot emulate.

    quantize_apply also quantizes the output of a layer left unannotated when the layer after
    it is annotated, through the registry's config for it, which raises for such an activation
    (and would put back the fake-quant a concatenation of float inputs is kept float to avoid:
    ``kept_float``, layer names).
    """

    def __init__(self, inner, kept_float: frozenset = frozenset()):
        self._inner = inner
        self._kept_float = kept_float

    def supports(self, layer) -> bool:
        return (_unsupported_activation(layer) is None and layer.name not in self._kept_float
                and self._inner.supports(layer))

    def __getattr__(self, name):
        return getattr(self._inner, name)


# tfmot's layout transforms fold a BatchNormalization into the linear Conv2D/DepthwiseConv2D/Dense
# before it, so no fake-quant sits between them, as in the int8 TFLite where the converter folds
# the two into one op. A transform only matches layers that are annotated, and the registry does
# not list BatchNormalization, so such a BN is annotated here; left out, QAT would quantize the
# conv's pre-BN output, which the int8 model never computes, and train for the wrong ranges.
_FOLDS_AFTER = {"Conv2D", "DepthwiseConv2D", "Dense"}


def _folds_into(layer, config: QuantizeStep, registry) -> bool:
    if not is_batch_norm(layer):
        return False
    inbound = inbound_layers(layer)
    if len(inbound) != 1:
        return False
    prev = inbound[0]
    return (type(prev).__name__ in _FOLDS_AFTER and in_scope(prev, config.scope)
            and registry.supports(prev)
            and prev.get_config().get("activation") in ("linear", None))


# The activations tfmot's 8-bit scheme can emulate: QuantizeAwareActivation's for a layer's own
# activation (Dense, Conv...), Default8BitActivationQuantizeConfig's for an Activation layer.
# NoOpActivation: what tfmot's own fold transforms put in place of an activation they moved.
_QAT_ACTIVATIONS = frozenset({"linear", "relu", "swish", "gelu", "softmax", "sigmoid", "tanh",
                              "NoOpActivation"})
_QAT_ACTIVATION_LAYER = _QAT_ACTIVATIONS | {"relu6"}


# Layers whose int8 TFLite op needs one scale on every input and its output.
_SAME_SCALE = {"Concatenate"}


def _unsupported_activation(layer) -> str | None:
    """The name of ``layer``'s activation if tfmot's QAT cannot emulate it (hard_silu, elu...)."""
    fn = getattr(layer, "activation", None)
    if fn is None or not callable(fn):
        return None
    name = getattr(fn, "__name__", type(fn).__name__)
    allowed = _QAT_ACTIVATION_LAYER if type(layer).__name__ == "Activation" else _QAT_ACTIVATIONS
    return None if name in allowed else name


@register("quantize", needs_tf_keras=True)
def quantize(model, config: QuantizeStep, ctx: StepContext) -> StepResult:
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    qk = tfmot.quantization.keras
    preserve = set(config.preserve) if config.preserve is not None else (
        {"prune", "cluster"} & set(ctx.done))
    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    decided: dict[str, str | None] = {}  # layer name -> why it stays float (None: annotated)
    same_scale: set[str] = set()  # kept float for an input that stays float

    def why_float(layer) -> str | None:
        if layer.name in decided:
            return decided[layer.name]
        name = type(layer).__name__
        reason = None
        activation = _unsupported_activation(layer)
        if name == "InputLayer" or not in_scope(layer, config.scope):
            reason = "outside"
        elif activation:  # tfmot raises on it when it wraps the layer (exit 1 before)
            reason = f"{layer.name} ({name}, activation {activation})"
        elif not (registry.supports(layer) or _folds_into(layer, config, registry)):
            reason = f"{layer.name} ({name})"
        elif name in _SAME_SCALE and any(why_float(prev) for prev in inbound_layers(layer)):
            # tfmot would put a fake-quant of its own on each float input, and TFLite's int8
            # concatenation needs one scale for all of them and its output: the conversion
            # fails ("violate the same scale constraint"); float, the converter calibrates it
            reason = f"{layer.name} ({name}, an input stays float)"
            same_scale.add(layer.name)
        decided[layer.name] = reason
        return reason

    copy_notes: list[str] = []
    annotated, wrapped = apply_to_layers(model, config.scope, lambda layer: not why_float(layer),
                                         qk.quantize_annotate_layer, copy_notes)
    skipped = [r for r in decided.values() if r and r != "outside"]
    if not wrapped:
        raise nothing_in_scope("quantize", model)
    frozen = _freeze_batch_norm(annotated) if config.freeze_batch_norm else []
    from ..._tf import tf_keras

    # tfmot rebuilds the model from its config: a user's layers (--custom-objects) must be in
    # scope, or their deserialization gave a string where a layer belongs (textgenrnn's
    # attention layer: exit 1, "'str' object is not callable")
    with qk.quantize_scope(), tf_keras().utils.custom_object_scope(ctx.custom_objects or {}):
        qat_model = qk.quantize_apply(annotated, _scheme(preserve, frozenset(same_scale)))
    if frozen:
        _check_frozen(qat_model, frozen)
    ranged = init_ranges(qat_model, ctx.splits.x_train)
    fit(qat_model, ctx.splits, config, ctx, "quantization-aware training")
    for module in _layers(qat_model):  # frozen for this step only: a later step may train them
        if is_batch_norm(module) and module.name in frozen:
            module.trainable = True
    notes = copy_notes
    if skipped:
        notes.append("not quantization-aware (no tfmot support, stays float until export): "
                      + ", ".join(skipped))
    details = {"quantized_layers": wrapped, "preserve": sorted(preserve),
               "ranges_from_data": ranged}
    if config.freeze_batch_norm:
        details["frozen_batch_norm"] = sorted(frozen)
    return StepResult(qat_model, details, notes)


RANGE_SAMPLES = 512


def init_ranges(qat_model, x, samples: int = RANGE_SAMPLES, batch: int = 64) -> int:
    """Start every activation range of a tfmot QAT model at the min/max it sees on ``x``.

    tfmot starts each range at [-6, 6] and moves it by an exponential average with decay 0.999
    per training step, so a QAT run of a few hundred steps (a small data set, or a fine-tuning
    budget) trains and exports with ranges still near [-6, 6]: a 1,850-parameter digits CNN lost
    44 points that way. This runs the model on up to ``samples`` training inputs in inference
    mode (BatchNormalization's moving statistics, no dropout), with tfmot's moving-average
    quantizer taking each batch's range whole, and keeps the extremes over the batches: the ranges
    TFLite's post-training calibration would give, which training then refines. Returns how many
    ranges were set.
    """
    import numpy as np
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    from ...data.multi import count, take

    n = min(count(x), samples)
    if n == 0:
        return 0
    seen: dict[int, tuple] = {}  # id(variable) -> (variable, extreme so far)

    def patched(original, moving: bool):
        def run(inputs, min_var, max_var, **kwargs):
            kwargs["is_training"] = True
            if moving:
                kwargs["ema_decay"] = 0.0
            out = original(inputs, min_var, max_var, **kwargs)
            for var, pick in ((min_var, np.minimum), (max_var, np.maximum)):
                value = var.numpy()
                old = seen.get(id(var))
                seen[id(var)] = (var, value if old is None else pick(old[1], value))
            return out
        return run

    # activations (moving average from [-6, 6]), inputs (all values from [0, 0]) and kernels
    # (the last value: the weights as they are)
    originals = {name: getattr(quant_ops, name) for name in
                 ("MovingAvgQuantize", "AllValuesQuantize", "LastValueQuantize")}
    for name, fn in originals.items():
        setattr(quant_ops, name, patched(fn, name == "MovingAvgQuantize"))
    try:
        for start in range(0, n, batch):
            chunk = take(x, np.arange(start, min(n, start + batch)))
            qat_model(chunk, training=False)  # eager: the patched functions run on every call
    finally:
        for name, fn in originals.items():
            setattr(quant_ops, name, fn)
    for var, value in seen.values():
        var.assign(value)
    return len(seen) // 2


def _layers(model):
    """Every layer inside ``model``, wrappers' and nested models' too.

    Not ``tf.Module.submodules``: that walks every attribute, and an LSTM with dropout that
    ran in a traced loop caches its masks keyed by graphs, which it cannot sort (int8-qat of
    ethnicolr's census LSTM: exit 1, "Error processing property '_dropout_mask_cache'").
    """
    return model._flatten_layers(include_self=False)  # noqa: SLF001


def _freeze_batch_norm(model) -> list[str]:
    """Make every BatchNormalization run in inference mode during QAT; returns their names.

    In training mode a BN normalises with each batch's statistics while the int8 model folds
    the moving statistics into the conv, so the fake-quant ranges learn a tensor the int8
    model never computes, and the moving statistics drift with the fine-tuning batches. A
    non-trainable tf_keras BN uses its moving statistics even when called with training=True.
    This runs on the annotated model, before ``quantize_apply``: QuantizeWrapperV2 copies its
    layer's trainable weights when it is built, so freezing the layer afterwards would leave
    gamma and beta training.
    """
    frozen = []
    for module in _layers(model):  # also a BN inside an annotation or a nested model
        if is_batch_norm(module) and module.name not in frozen:
            module.trainable = False
            frozen.append(module.name)
    return frozen


def _check_frozen(qat_model, frozen: list[str]) -> None:
    trainable = {id(w) for w in qat_model.trainable_weights}
    for module in _layers(qat_model):
        if is_batch_norm(module) and module.name in frozen:
            if module.trainable or any(id(w) in trainable for w in module.weights):
                raise RuntimeError(f"freeze_batch_norm: {module.name} is still trainable after "
                                   "quantize_apply (a tfmot change?)")

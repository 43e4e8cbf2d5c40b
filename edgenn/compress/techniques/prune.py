"""Magnitude pruning (unstructured or m-by-n) with tfmot; wrappers stripped after training."""

from __future__ import annotations

import numpy as np

from ...data.multi import count
from ...recipe import PruneStep, Schedule
from ..distiller import fit_distilled
from ..measure import kernel_sparsity, kernels
from ..registry import register
from ..scope import apply_to_layers, frozen_outside, nothing_in_scope
from ..step import StepContext, StepResult
from ..train import fit, schedule


@register("prune", needs_tf_keras=True)
def prune(model, config: PruneStep, ctx: StepContext) -> StepResult:
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.sparsity.keras import prune_registry

    sparsity = tfmot.sparsity.keras
    _, _, total = schedule(count(ctx.splits.x_train), config, ctx.epochs_scale)
    frequency = min(config.frequency, max(1, total // 8))
    if config.end_step is not None:
        end = config.end_step
    else:
        # Reach the target by 3/4 of the run; the last quarter recovers at full sparsity.
        span = max(frequency, int(total * 0.75) - config.begin_step)
        end = config.begin_step + (span // frequency) * frequency
    if config.schedule is Schedule.polynomial:
        sched = sparsity.PolynomialDecay(config.initial_sparsity, config.target_sparsity,
                                         config.begin_step, end, frequency=frequency)
    else:
        sched = sparsity.ConstantSparsity(config.target_sparsity, config.begin_step,
                                          frequency=frequency)
    m_by_n = tuple(int(v) for v in config.structure.split(":")) if config.structure else None
    m_by_n_classes = ("Conv2D", "Dense")

    skipped: list[str] = []
    unsupported: list[str] = []
    dense_kept: list[str] = []

    def wants(layer) -> bool:
        # Only layers with a kernel (Dense, Conv, DepthwiseConv2D's depthwise_kernel,
        # SeparableConv2D's two): tfmot also "supports" BatchNormalization, with nothing to prune.
        found = kernels(layer)
        if not found:
            return False
        if not prune_registry.PruneRegistry.supports(layer):
            unsupported.append(f"{layer.name} ({type(layer).__name__})")
            return False
        weights_map = getattr(prune_registry.PruneRegistry, "_LAYERS_WEIGHTS_MAP", {})
        if weights_map.get(type(layer)) == []:  # e.g. DepthwiseConv2D: tfmot keeps it dense
            dense_kept.append(f"{layer.name} ({type(layer).__name__})")
            return False
        if m_by_n:
            if type(layer).__name__ not in m_by_n_classes:
                skipped.append(f"{layer.name} ({type(layer).__name__}: m:n blocks need a Conv2D "
                               "or Dense kernel)")
                return False
            channels = int(found[0].shape[-2])
            if channels % m_by_n[1]:
                # m-by-n blocks run along the input channels; 1-channel stems cannot be split.
                skipped.append(f"{layer.name} ({channels} input channels)")
                return False
        return True

    blocked: list[str] = []

    def wrap(layer):
        kwargs = {"pruning_schedule": sched}
        if m_by_n:
            kwargs["sparsity_m_by_n"] = m_by_n
        # tfmot prunes blocks only in 2-D kernels (Dense); other layers prune weight by weight.
        # It squeezes the kernel, pools it in blocks and squeezes the pooled mask again, so a
        # kernel that is a vector (a binary head) or that one block covers along an axis (4
        # inputs, blocks of 16) leaves a vector, and tfmot raises: such a layer prunes weight
        # by weight.
        found = kernels(layer)
        if config.block_size and len(found) == 1 and len(found[0].shape) == 2 \
                and all(-(-dim // block) > 1 for dim, block in zip(found[0].shape,
                                                                   config.block_size)):
            kwargs["block_size"] = tuple(config.block_size)
            blocked.append(layer.name)
        return sparsity.prune_low_magnitude(layer, **kwargs)

    copy_notes: list[str] = []
    wrapped_model, wrapped = apply_to_layers(model, config.scope, wants, wrap, copy_notes)
    if not wrapped:
        raise nothing_in_scope("prune", model)
    # distillation learns softened class scores: a model scored by MSE prunes on its labels
    distilled = config.distill is not None and ctx.task == "classification"
    if config.distill is not None and not distilled:
        copy_notes.append("prune.distill skipped: it learns softened class scores, and this "
                          "model's output is scored by MSE; pruned on the labels alone")
    with frozen_outside(wrapped_model, wrapped, config.freeze_rest):
        if not distilled:
            fit(wrapped_model, ctx.splits, config, ctx, "pruning",
                callbacks=[sparsity.UpdatePruningStep()])
        else:
            _fit_distilled(model, wrapped_model, config, ctx, sparsity.UpdatePruningStep())
    stripped = sparsity.strip_pruning(wrapped_model)
    per_layer = {name: s for name, s in kernel_sparsity(stripped).items() if name in wrapped}
    details = {"pruned_layers": wrapped, "sparsity": per_layer,
               "target_sparsity": config.target_sparsity, "end_step": end, "frequency": frequency}
    if distilled:
        details["distilled_from_input"] = config.distill.model_dump()
    if config.freeze_rest:
        details["trained_layers"] = "the pruned layers only (freeze_rest)"
    if config.block_size:
        details["block_size"] = config.block_size
        details["block_pruned_layers"] = blocked
    if m_by_n:
        details["structure"] = config.structure
        details["m_by_n_ok"] = {name: check_m_by_n(stripped.get_layer(name), m_by_n)
                                for name in wrapped}
    notes = [f"not {config.structure}-pruned: {', '.join(skipped)}"] if skipped else []
    notes += copy_notes
    if unsupported:
        notes.append(f"not pruned (tfmot cannot prune the layer): {', '.join(unsupported)}")
    if dense_kept:
        notes.append("not pruned (tfmot prunes no weight of these layers: a depthwise kernel "
                     f"has few, sensitive weights): {', '.join(dense_kept)}")
    return StepResult(stripped, details, notes)


def _fit_distilled(teacher, student, config: PruneStep, ctx: StepContext, update_step) -> None:
    """Prune ``student`` while it learns from the labels and from ``teacher``, the input model.

    The distill step's loss and teacher. The pruning wrappers sit inside the distiller, where
    tfmot's UpdatePruningStep finds them (it walks nested models).
    """
    fit_distilled(teacher, student, config, ctx, config.distill.alpha, config.distill.temperature,
                  "pruning (distilled)", callbacks=[update_step])


def check_m_by_n(layer, m_by_n: tuple[int, int]) -> bool:
    """True if every block of n weights along the input axis holds at least n - m zeros."""
    m, n = m_by_n
    kernel = np.asarray(layer.kernel)
    # tfmot groups blocks along the input-channel axis: move it last, then chunk by n.
    w = np.moveaxis(kernel, -1, 0).reshape(kernel.shape[-1], -1)
    if w.shape[1] % n:
        return False
    blocks = w.reshape(w.shape[0], -1, n)
    return bool(np.all(np.count_nonzero(blocks, axis=-1) <= m))

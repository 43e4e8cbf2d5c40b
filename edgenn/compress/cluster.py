"""Weight clustering with tfmot (optionally sparsity-preserving); wrappers stripped after."""

from __future__ import annotations

import numpy as np

from ..recipe import CentroidInit, ClusterStep
from .prune import _nothing_in_scope, kernel_sparsity
from .registry import StepContext, StepResult, register
from .scope import apply_to_layers
from .train import fit


def unique_weights(model, names) -> dict[str, int]:
    """Number of distinct values in each named layer's kernel(s)."""
    out = {}
    for name in names:
        layer = model.get_layer(name)
        kernels = [np.asarray(w).ravel() for w in layer.weights if "kernel" in w.name]
        if kernels:
            out[name] = int(np.unique(np.concatenate(kernels)).size)
    return out


@register("cluster")
def cluster(model, config: ClusterStep, ctx: StepContext) -> StepResult:
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.clustering.keras import clustering_registry

    clustering = tfmot.clustering.keras
    init = {
        CentroidInit.kmeans_plus_plus: clustering.CentroidInitialization.KMEANS_PLUS_PLUS,
        CentroidInit.linear: clustering.CentroidInitialization.LINEAR,
        CentroidInit.density_based: clustering.CentroidInitialization.DENSITY_BASED,
        CentroidInit.random: clustering.CentroidInitialization.RANDOM,
    }[config.init]

    def wants(layer) -> bool:
        has_kernel = any("kernel" in w.name for w in layer.weights)
        return has_kernel and clustering_registry.ClusteringRegistry.supports(layer)

    def wrap(layer):
        return clustering.cluster_weights(layer, number_of_clusters=config.clusters,
                                          cluster_centroids_init=init,
                                          preserve_sparsity=config.preserve_sparsity)

    wrapped_model, wrapped = apply_to_layers(model, config.scope, wants, wrap)
    if not wrapped:
        raise _nothing_in_scope("cluster", model)
    fit(wrapped_model, ctx.splits, config, ctx, "clustering")
    stripped = clustering.strip_clustering(wrapped_model)
    details = {"clustered_layers": wrapped, "clusters": config.clusters,
               "unique_weights": unique_weights(stripped, wrapped)}
    if config.preserve_sparsity:
        details["sparsity"] = {n: s for n, s in kernel_sparsity(stripped).items() if n in wrapped}
    return StepResult(stripped, details)

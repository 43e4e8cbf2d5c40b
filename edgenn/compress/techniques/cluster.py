"""Weight clustering with tfmot (optionally sparsity-preserving); wrappers stripped after."""

from __future__ import annotations

from ...recipe import CentroidInit, ClusterStep
from ..measure import kernel_sparsity, kernels, unique_weights
from ..registry import register
from ..scope import apply_to_layers, frozen_outside, nothing_in_scope
from ..step import StepContext, StepResult
from ..train import fit


@register("cluster", needs_tf_keras=True)
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
        has_kernel = bool(kernels(layer))
        return has_kernel and clustering_registry.ClusteringRegistry.supports(layer)

    def wrap(layer):
        return clustering.cluster_weights(layer, number_of_clusters=config.clusters,
                                          cluster_centroids_init=init,
                                          preserve_sparsity=config.preserve_sparsity)

    notes: list[str] = []
    wrapped_model, wrapped = apply_to_layers(model, config.scope, wants, wrap, notes)
    if not wrapped:
        raise nothing_in_scope("cluster", model)
    with frozen_outside(wrapped_model, wrapped, config.freeze_rest):
        fit(wrapped_model, ctx.splits, config, ctx, "clustering")
    stripped = clustering.strip_clustering(wrapped_model)
    details = {"clustered_layers": wrapped, "clusters": config.clusters,
               "unique_weights": unique_weights(stripped, wrapped)}
    if config.freeze_rest:
        details["trained_layers"] = "the clustered layers only (freeze_rest)"
    if config.preserve_sparsity:
        details["sparsity"] = {n: s for n, s in kernel_sparsity(stripped).items() if n in wrapped}
    return StepResult(stripped, details, notes)

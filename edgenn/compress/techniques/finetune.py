"""Plain fine-tuning epochs, to recover accuracy after another step."""

from __future__ import annotations

from ...recipe import FinetuneStep
from ..registry import register
from ..step import StepContext, StepResult
from ..train import fit


@register("finetune")
def finetune(model, config: FinetuneStep, ctx: StepContext) -> StepResult:
    history = fit(model, ctx.splits, config, ctx, "fine-tuning")
    return StepResult(model, {"final_loss": float(history["loss"][-1])})

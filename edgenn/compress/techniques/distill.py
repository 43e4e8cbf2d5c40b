"""Knowledge distillation: the incoming model teaches a smaller student (``distiller.py``)."""

from __future__ import annotations

from ..._tf import is_keras3
from ...errors import UsageError
from ...recipe import DistillStep
from ..distiller import fit_distilled, kept_width, width_student
from ..registry import register
from ..step import StepContext, StepResult


def _load_student(spec: str, teacher, ctx: StepContext):
    if spec.startswith("builtin:"):
        width = float(spec.split("=", 1)[1])
        return width_student(teacher, width, ctx.splits.x_train)
    from ...models.load import load_keras

    loaded = load_keras(spec, allow_unsafe=ctx.allow_unsafe)
    student = loaded.original
    if is_keras3(student) != is_keras3(teacher):  # the distiller trains in one Keras
        student = loaded.as_tf_keras("a tf_keras teacher's student")
    s_in, t_in = tuple(student.inputs[0].shape)[1:], tuple(teacher.inputs[0].shape)[1:]
    s_out, t_out = tuple(student.outputs[0].shape)[1:], tuple(teacher.outputs[0].shape)[1:]
    if s_in != t_in:
        raise UsageError(f"the student {spec} takes input {list(s_in)} but the teacher takes "
                         f"{list(t_in)}", "use a student built for the same input")
    if s_out != t_out:
        raise UsageError(f"the student {spec} outputs {list(s_out)} but the teacher outputs "
                         f"{list(t_out)}", "use a student with the same classes")
    return student


@register("distill")
def distill(model, config: DistillStep, ctx: StepContext) -> StepResult:
    if ctx.task != "classification":
        raise UsageError("distillation learns softened class scores, and this model's output "
                         "is scored by MSE (a regression, reconstruction or multi-label output)",
                         "use a recipe without the distill step (prune, cluster, quantize)")
    student = _load_student(config.student, model, ctx)
    history = fit_distilled(model, student, config, ctx, config.alpha, config.temperature,
                            "distilling")
    return StepResult(student, {
        "student": config.student,
        "teacher_params": int(model.count_params()),
        "student_params": int(student.count_params()),
        "param_ratio": round(student.count_params() / model.count_params(), 4),
        "temperature": config.temperature, "alpha": config.alpha,
        "final_loss": float(history["loss"][-1]),
        **({"kept_width": kept} if (kept := kept_width(model, student))
           and config.student.startswith("builtin:") else {}),
    })

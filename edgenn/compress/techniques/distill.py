"""Knowledge distillation: the incoming model teaches a smaller student (``distiller.py``)."""

from __future__ import annotations

from ...errors import UsageError
from ...recipe import DistillStep
from ..distiller import fit_distilled, width_student
from ..registry import register
from ..step import StepContext, StepResult


def _load_student(spec: str, teacher, ctx: StepContext):
    if spec.startswith("builtin:"):
        width = float(spec.split("=", 1)[1])
        return width_student(teacher, width)
    from ...models.load import load_keras

    loaded = load_keras(spec, allow_unsafe=ctx.allow_unsafe)
    student = loaded.tf_keras_model
    if tuple(student.input_shape[1:]) != tuple(teacher.input_shape[1:]):
        raise UsageError(f"the student {spec} takes input {student.input_shape} but the teacher "
                         f"takes {teacher.input_shape}", "use a student built for the same input")
    if tuple(student.output_shape[1:]) != tuple(teacher.output_shape[1:]):
        raise UsageError(f"the student {spec} outputs {student.output_shape} but the teacher "
                         f"outputs {teacher.output_shape}", "use a student with the same classes")
    return student


@register("distill")
def distill(model, config: DistillStep, ctx: StepContext) -> StepResult:
    if ctx.task != "classification":
        raise UsageError("distillation needs a classification model (metric accuracy)",
                         "remove the distill step or set evaluate.metric: accuracy")
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
    })

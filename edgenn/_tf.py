"""The one place that imports TensorFlow, tf_keras and Keras 3 for the workstation side.

tensorflow-model-optimization needs the legacy Keras (tf_keras); TensorFlow reads
``TF_USE_LEGACY_KERAS`` when it is first imported, so it is set here, never by the user.
"""

from __future__ import annotations

import contextlib
import os
import sys

from .errors import MissingDependencyError

_INSTALL_HINT = "install the TensorFlow extra: pip install 'edgenn[tf]'"


def _prepare_env() -> None:
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    # TensorFlow's C++ runtime logs harmless "errors" (graph attributes, CUDA probing) during
    # ordinary training; problems that matter surface as Python exceptions. --debug shows all.
    level = "0" if os.environ.get("EDGENN_DEBUG") == "1" else "3"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", level)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # Deterministic kernels make the same seed give the same model.
    os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")


def _quiet_start():
    # TensorFlow's C++ start-up lines (oneDNN, CUDA probing, CPU features) ignore
    # TF_CPP_MIN_LOG_LEVEL; hide them the first time only.
    from .quiet import quiet_stderr

    return contextlib.nullcontext() if "tensorflow" in sys.modules else quiet_stderr()


def tf():
    """Return the ``tensorflow`` module, configured for edgenn."""
    _prepare_env()
    try:
        with _quiet_start():
            import tensorflow

            # Device discovery logs (e.g. a failed cuInit) happen here, inside the quiet window.
            tensorflow.config.list_physical_devices()
            with contextlib.suppress(ImportError):  # tf_keras() reports it if missing
                import tf_keras  # noqa: F401  (its import logs too)
    except ImportError as err:
        raise MissingDependencyError(f"TensorFlow is not installed ({err})", _INSTALL_HINT) from None
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TensorFlow
        pass
    tensorflow.get_logger().setLevel("ERROR")
    _guard_strided_pointwise_gradient()
    return tensorflow


def _guard_strided_pointwise_gradient() -> None:
    """Compute the filter gradient of 1x1 strided convolutions without oneDNN's kernel.

    oneDNN's backward-weights kernel for a 1x1 convolution with stride 2 crashes the process
    (SIGSEGV or a heap abort, no message) for some channel counts: 8 or 12 input channels into
    16 with its AVX-512 kernels, 4 into 8 with its AVX2 ones (the shortcut convolutions of a
    Keras 2 mini-Xception and of its half-width student). Every training step of such a model
    died: prune, cluster, QAT, distill, finetune, fit. Capping oneDNN's instruction set only
    moved the crash to other channel counts, and turning oneDNN off doubled training time.

    A 1x1 kernel never pads (SAME and VALID agree), so that convolution is a matrix product of
    the input's every stride-th pixel: its filter gradient is that product's, computed as a
    MatMul. Every other convolution keeps TensorFlow's gradient. Installed once, in place of
    TensorFlow's registered Conv2D gradient.
    """
    try:
        from tensorflow.python.framework import ops
        from tensorflow.python.ops import array_ops, gen_nn_ops, math_ops
    except ImportError:  # pragma: no cover - TensorFlow moved its internals: keep its gradient
        return
    entry = getattr(ops, "_gradient_registry", None)
    entry = getattr(entry, "_registry", {}).get("Conv2D")
    if not entry or getattr(entry.get("type"), "_edgenn", False):
        return
    original = entry["type"]

    def conv2d_grad(op, grad):
        x, w = op.inputs[0], op.inputs[1]
        strides = list(op.get_attr("strides"))
        kernel = w.shape.as_list() if w.shape.rank == 4 else None
        if (op.get_attr("data_format") not in (b"NHWC", "NHWC")
                or op.get_attr("padding") not in (b"SAME", b"VALID", "SAME", "VALID")
                or kernel is None or kernel[:2] != [1, 1] or max(strides) == 1
                or x.shape.rank != 4 or x.shape[-1] != kernel[2]):  # grouped: as before
            return original(op, grad)
        dx = gen_nn_ops.conv2d_backprop_input(
            array_ops.shape(x), w, grad, dilations=op.get_attr("dilations"), strides=strides,
            padding=op.get_attr("padding"), explicit_paddings=op.get_attr("explicit_paddings"),
            use_cudnn_on_gpu=op.get_attr("use_cudnn_on_gpu"), data_format="NHWC")
        picked = x[:, ::strides[1], ::strides[2], :]
        dw = math_ops.matmul(array_ops.reshape(picked, [-1, kernel[2]]),
                             array_ops.reshape(grad, [-1, kernel[3]]), transpose_a=True)
        return [dx, array_ops.reshape(dw, kernel)]

    conv2d_grad._edgenn = True
    entry["type"] = conv2d_grad


def pin_threads(threads: int | None) -> None:
    """Run TensorFlow's ops on ``threads`` threads (None: its default, one per core).

    Must happen before TensorFlow runs its first op; a process that already ran ops with
    another count is refused, since the count changes what training computes.
    """
    if threads is None:
        return
    from .errors import UsageError

    t = tf()
    if t.config.threading.get_intra_op_parallelism_threads() == threads:
        return
    try:
        t.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:
        raise UsageError(f"the recipe pins threads: {threads}, but TensorFlow already runs in "
                         "this process with another count",
                         "run it in a new process (edgenn compress), or drop threads from the "
                         "recipe") from None


def tf_keras():
    """Return the ``tf_keras`` module (Keras 2, what tfmot works on)."""
    tf()
    try:
        import tf_keras
    except ImportError as err:
        raise MissingDependencyError(f"tf-keras is not installed ({err})", _INSTALL_HINT) from None
    return tf_keras


def keras3():
    """Return the Keras 3 module (``import keras``), or raise if only Keras 2 is present."""
    tf()
    try:
        import keras
    except ImportError as err:
        raise MissingDependencyError(f"Keras 3 is not installed ({err})", _INSTALL_HINT) from None
    if not keras.__version__.startswith("3."):
        raise MissingDependencyError(
            f"`import keras` gives Keras {keras.__version__}, not Keras 3",
            "pip install 'keras>=3' (it installs beside tf-keras)",
        )
    return keras


def keras_of(model):
    """The Keras a model belongs to: Keras 3 (``keras``) or tf_keras.

    edgenn works on Keras 3 models as they are (inspect, convert, PTQ, distillation,
    fine-tuning); only tfmot's steps need the tf_keras copy the bridge makes.
    """
    return keras3() if is_keras3(model) else tf_keras()


def is_keras3(model) -> bool:
    """Whether ``model`` is a Keras 3 object (not a tf_keras one), subclasses included."""
    return not any(cls.__module__.startswith("tf_keras") for cls in type(model).__mro__)

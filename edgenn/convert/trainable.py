"""Export a Keras model as a .tflite that trains itself with builtin ops only.

TFLite on-device training normally needs Select TF (Flex) ops for gradients (ReluGrad,
TanhGrad...), which stock ai-edge-litert and tflite-runtime lack. Here the Dense head is
written out by hand: custom gradients for the activations (relu, tanh, sigmoid), softmax
cross-entropy through log-sum-exp, SGD with optional momentum as variable updates, and a static
batch size. Signatures: ``train(x, y, lr, mu) -> loss``, ``infer(x) -> output``,
``get_weights() -> w0, b0, ...`` and ``set_weights(w0, b0, ...) -> ok``.

``set_weights`` also stores the weights as the anchor of FedProx's proximal term: ``train`` adds
``mu / 2 * sum ||w - anchor||^2`` to the loss (``mu = 0`` is plain SGD). A federated client sets
the global model, trains, and so stays near it.

Layers before the trainable Dense stack (convolutions...) are frozen and traced as constants
(``train_layers="head"``): their gradients would need Flex ops.
"""

from __future__ import annotations

import numpy as np

from .._tf import tf
from ..errors import UsageError
from ..quiet import quiet_stderr

_PASS_THROUGH = {"Flatten", "Dropout", "InputLayer"}


def _activation_name(layer) -> str:
    act = getattr(layer, "activation", None)
    return getattr(act, "__name__", "linear") if act is not None else "linear"


def split_head(model, train_layers: str):
    """(frozen prefix model or None, list of trainable Dense layers)."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    head = []
    for layer in reversed(layers):
        name = type(layer).__name__
        if name == "Dense":
            head.insert(0, layer)
        elif name in _PASS_THROUGH - {"InputLayer"} and head:
            continue  # a Flatten/Dropout between Dense layers
        else:
            break
    if not head:
        raise UsageError("the trainable export needs the model to end in Dense layers",
                         "add a Dense classifier head")
    first = layers.index(head[0])
    prefix_layers = [layer for layer in layers[:first] if type(layer).__name__ not in _PASS_THROUGH]
    if prefix_layers and train_layers == "all":
        names = ", ".join(f"{layer.name} ({type(layer).__name__})" for layer in prefix_layers[:4])
        raise UsageError(
            f"--train-layers all needs a Dense-only network; {names} would need Flex gradient ops",
            "use --train-layers head (the layers before the Dense head stay frozen)")
    for layer in head[:-1]:
        if _activation_name(layer) not in ("relu", "tanh", "sigmoid", "linear"):
            raise UsageError(f"layer {layer.name} uses activation {_activation_name(layer)}, which "
                             "the trainable export has no builtin gradient for",
                             "use relu, tanh, sigmoid or linear in hidden Dense layers")
    prefix = None
    if prefix_layers:  # anything but Flatten/Dropout before the head is frozen and traced
        from .._tf import keras_of

        prefix = keras_of(model).Model(model.inputs, head[0].input)
    return prefix, head


def _activations(tensorflow):
    @tensorflow.custom_gradient
    def relu(x):
        def grad(dy):
            return dy * tensorflow.cast(x > 0.0, dy.dtype)
        return tensorflow.maximum(x, 0.0), grad

    @tensorflow.custom_gradient
    def tanh(x):
        y = tensorflow.tanh(x)

        def grad(dy):
            return dy * (1.0 - y * y)
        return y, grad

    @tensorflow.custom_gradient
    def sigmoid(x):
        y = 1.0 / (1.0 + tensorflow.exp(-x))

        def grad(dy):
            return dy * y * (1.0 - y)
        return y, grad

    return {"relu": relu, "tanh": tanh, "sigmoid": sigmoid, "linear": lambda x: x}


def export_trainable(model, batch_size: int = 32, train_layers: str = "all",
                     momentum: float = 0.0) -> bytes:
    """The trainable .tflite for a tf_keras classifier ending in Dense layers."""
    tensorflow = tf()
    if train_layers not in ("all", "head"):
        raise UsageError(f"--train-layers must be all or head; received {train_layers!r}",
                         "use --train-layers all or head")
    prefix, head = split_head(model, train_layers)
    acts = _activations(tensorflow)
    final_softmax = _activation_name(head[-1]) == "softmax"
    n_classes = int(head[-1].units)
    in_shape = tuple(int(d) for d in model.input_shape[1:])

    class Trainable(tensorflow.Module):
        def __init__(self):
            super().__init__()
            self.w = [tensorflow.Variable(np.asarray(layer.kernel), name=f"w{i}")
                      for i, layer in enumerate(head)]
            self.b = [tensorflow.Variable(np.asarray(layer.bias) if layer.use_bias else
                                          np.zeros(layer.units, np.float32), name=f"b{i}")
                      for i, layer in enumerate(head)]
            self.v = [tensorflow.Variable(tensorflow.zeros_like(p)) for p in self.w + self.b]
            self.anchor = [tensorflow.Variable(tensorflow.identity(p)) for p in self.w + self.b]
            self.prefix = prefix  # tracked, so its (frozen) variables are saved with it
            # Keras 3 wraps each tf.Variable; track the tf.Variables themselves, or the
            # SavedModel (and so the .tflite) is written without the prefix's weights
            self.prefix_variables = [getattr(v, "value", v) for v in prefix.weights] \
                if prefix is not None else []

        def features(self, x):
            h = x
            if self.prefix is not None:
                h = tensorflow.stop_gradient(self.prefix(x, training=False))
            return tensorflow.reshape(h, [tensorflow.shape(h)[0], -1])

        def logits(self, x):
            h = self.features(x)
            for i, layer in enumerate(head):
                h = tensorflow.matmul(h, self.w[i]) + self.b[i]
                if i < len(head) - 1:
                    h = acts[_activation_name(layer)](h)
            return h

        @tensorflow.function(input_signature=[
            tensorflow.TensorSpec([batch_size, *in_shape], tensorflow.float32),
            tensorflow.TensorSpec([batch_size], tensorflow.int32),
            tensorflow.TensorSpec([], tensorflow.float32),
            tensorflow.TensorSpec([], tensorflow.float32)])
        def train(self, x, y, lr, mu):
            params = self.w + self.b
            with tensorflow.GradientTape() as tape:
                z = self.logits(x)
                top = tensorflow.reduce_max(z, axis=1, keepdims=True)
                lse = tensorflow.math.log(tensorflow.reduce_sum(tensorflow.exp(z - top), axis=1,
                                                                keepdims=True)) + top
                loss = tensorflow.reduce_mean(tensorflow.reduce_sum(
                    tensorflow.one_hot(y, n_classes) * (lse - z), axis=1))
                proximal = tensorflow.add_n([tensorflow.reduce_sum(tensorflow.square(p - a))
                                             for p, a in zip(params, self.anchor)])
                objective = loss + 0.5 * mu * proximal
            grads = tape.gradient(objective, params)
            for p, v, g in zip(params, self.v, grads):
                if momentum:
                    v.assign(momentum * v + g)
                    p.assign_sub(lr * v)
                else:
                    p.assign_sub(lr * g)
            return {"loss": loss}

        @tensorflow.function(input_signature=[
            tensorflow.TensorSpec([batch_size, *in_shape], tensorflow.float32)])
        def infer(self, x):
            z = self.logits(x)
            return {"output": tensorflow.nn.softmax(z) if final_softmax else z}

        @tensorflow.function(input_signature=[])
        def get_weights(self):
            return {p.name.split(":")[0]: tensorflow.identity(p) for p in self.w + self.b}

    module = Trainable()
    specs = [tensorflow.TensorSpec(p.shape, tensorflow.float32, name=p.name.split(":")[0])
             for p in module.w + module.b]

    @tensorflow.function(input_signature=specs)
    def set_weights(*values):
        for p, a, value in zip(module.w + module.b, module.anchor, values):
            p.assign(value)
            a.assign(value)
        return {"ok": tensorflow.constant(True)}

    module.set_weights = set_weights
    import tempfile

    with tempfile.TemporaryDirectory(prefix="edgenn-trainable-") as tmp, quiet_stderr():
        tensorflow.saved_model.save(module, tmp, signatures={
            "train": module.train.get_concrete_function(),
            "infer": module.infer.get_concrete_function(),
            "get_weights": module.get_weights.get_concrete_function(),
            "set_weights": set_weights.get_concrete_function()})
        converter = tensorflow.lite.TFLiteConverter.from_saved_model(tmp)
        converter.target_spec.supported_ops = [tensorflow.lite.OpsSet.TFLITE_BUILTINS]
        converter.experimental_enable_resource_variables = True
        return converter.convert()

"""A SavedModel without Keras metadata, seen through its serving signature.

What ``model.export`` and ``tf.saved_model.save`` write (and many published models are) has no
Keras layers to train, but it converts: the exporter traces a callable with ``inputs``, and a
signature is one. ``SignatureModel`` gives the exporter and the fidelity check what they use
of a Keras model (inputs, outputs, a call, predict) and nothing more, so PTQ-only recipes and
every `convert` target work on it; steps that train refuse it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UsageError


@dataclass(frozen=True)
class TensorInfo:
    """Shape and dtype of one input or output, as the exporter reads them off Keras tensors."""

    name: str
    shape: tuple
    dtype: str
    batched: bool = True  # False: an input without a batch axis, one value for all samples


def load_failure(path, err: Exception):
    """The one-line error for a SavedModel TensorFlow would not load, with what to do."""
    from ..errors import InputFileError

    text = " ".join(str(err).split())
    hint = ("it is a TensorFlow 1 graph with reference variables (float_ref), which TensorFlow 2 "
            "cannot load: export it again after tf.compat.v1.enable_resource_variables(), or "
            "from TensorFlow 2" if "reference type" in text else "save or copy it again")
    return InputFileError(f"{path} could not be loaded as a SavedModel "
                          f"({type(err).__name__}: {text[:200]})", hint)


def dims(shape) -> list | None:
    """A TensorShape as a list (None per open size), or None when even its rank is unknown."""
    return shape.as_list() if shape.rank is not None else None


class SignatureModel:
    """The serving signature of a SavedModel, callable like a Keras model."""

    layers: list = []  # no Keras layers: nothing to scope, nothing recurrent to special-case

    def __init__(self, path: Path, signature: str | None = None):
        from .._tf import tf

        tensorflow = tf()
        self.path = Path(path)
        self._loaded = tensorflow.saved_model.load(str(path))  # kept: it owns the variables
        # TensorFlow 1 wrote no object graph: its signatures capture the variables' values,
        # and its reference variables are nothing a converter can lift from the loaded object
        from .graphscan import read_savedmodel

        self.tf1 = not any(len(m.object_graph_def.nodes) for m in read_savedmodel(self.path).meta_graphs)
        signatures = dict(self._loaded.signatures)
        if not signatures:
            raise UsageError(f"{path} has no serving signature to convert",
                             "save the model with a signature (model.export, or "
                             "tf.saved_model.save with signatures=...)")
        key = signature or ("serving_default" if "serving_default" in signatures
                            else sorted(signatures)[0])
        self.key = key
        self.fn = signatures[key]
        _, kwargs = self.fn.structured_input_signature
        self.input_names = sorted(kwargs)
        unknown = [n for n in self.input_names if kwargs[n].shape.rank is None]
        if unknown:
            raise UsageError(f"{path}'s {key} signature takes {unknown[0]!r} of unknown rank (a "
                             "TF1 placeholder without a shape), which no converter can size",
                             "export the model again with a shaped signature, e.g. "
                             "tf.TensorSpec([None, 1])"
                             + (f"; its signatures: {', '.join(sorted(signatures))}"
                                if len(signatures) > 1 else ""))
        self.inputs = [TensorInfo(n, tuple(dims(kwargs[n].shape)), kwargs[n].dtype.name)
                       for n in self.input_names]
        outputs = self.fn.structured_outputs
        self.output_names = sorted(outputs)
        self.outputs = [TensorInfo(n, tuple(dims(outputs[n].shape) or ()), outputs[n].dtype.name)
                        for n in self.output_names]
        self.name = self.path.name

    @property
    def trackable(self):
        """The loaded SavedModel: what owns the variables the signature reads.

        None for a TensorFlow 1 graph: its signature captured its variables' values, and its
        reference variables are nothing a converter can lift from the loaded object.
        """
        return None if self.tf1 else self._loaded

    def own_function(self, batch_size: int | None = None):
        """The signature function as the converters must take it, or None to trace the call.

        A TensorFlow 1 signature goes as it is: wrapped in another function it becomes a call
        into the pruned graph, which still holds the reference variables (VariableV2) that
        neither converter takes; its own graph has their values. A fixed batch (the Edge TPU's)
        is set on a fresh load's placeholders, so this model keeps its open batch.
        """
        if not self.tf1:
            return None
        if batch_size is None:
            return self.fn
        from .._tf import tf

        fn = tf().saved_model.load(str(self.path)).signatures[self.key]
        for tensor in fn.inputs:
            if tensor.shape.rank and tensor.shape[0] is None:
                tensor.set_shape([batch_size, *tensor.shape.as_list()[1:]])
        return fn

    def __call__(self, x, training: bool = False):
        xs = x if isinstance(x, (list, tuple)) else [x]
        result = self.fn(**dict(zip(self.input_names, xs)))
        outs = [result[n] for n in self.output_names]
        return outs[0] if len(outs) == 1 else outs

    def predict(self, x, batch_size: int = 256, verbose: int = 0):
        from .._tf import tf

        tensorflow = tf()
        xs = x if isinstance(x, (list, tuple)) else [x]
        chunks = []
        for start in range(0, len(xs[0]), batch_size):
            feed = [tensorflow.constant(a[start:start + batch_size]) for a in xs]
            out = self(feed if len(feed) > 1 else feed[0])
            chunks.append([np.asarray(o) for o in (out if isinstance(out, list) else [out])])
        joined = [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]
        return joined[0] if len(joined) == 1 else joined

    def count_params(self) -> int:
        return int(sum(int(np.prod(v.shape)) for v in getattr(self._loaded, "variables", [])))

    def looks_like_probabilities(self, x: np.ndarray) -> bool:
        """Whether the first output's rows are distributions (a classifier with a softmax)."""
        from ..data.multi import take

        y = self.predict(take(x, slice(0, 16)))
        y = np.asarray(y[0] if isinstance(y, list) else y)
        return bool(y.ndim == 2 and y.shape[1] > 1 and (y >= 0).all()
                    and np.allclose(y.sum(1), 1, atol=1e-3))

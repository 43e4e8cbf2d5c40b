"""Build the tiny real models the tests use, each saved in the format a user would have.

Run in a subprocess by the session fixture, so the pytest process stays free of TensorFlow
(tests of the device side check that nothing imports it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def randomize(model, seed: int = 0) -> None:
    """Give every weight (batch-norm statistics included) non-trivial random values."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if hasattr(layer, "layers"):
            randomize(layer, seed + 1)
            continue
        new = [rng.normal(0, 0.3, size=w.shape).astype(w.dtype) for w in layer.get_weights()]
        # Keep batch-norm variances positive.
        if type(layer).__name__ == "BatchNormalization":
            new[-1] = np.abs(new[-1]) + 0.5
        if new:
            layer.set_weights(new)


def keras3_models(out: Path) -> dict:
    import keras
    from keras import layers

    made = {}
    # The acceptance model: residual Add, SeparableConv2D, DepthwiseConv2D, BN, GAP, Dropout.
    inp = keras.Input((16, 16, 3), name="img")
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inp)
    y = layers.SeparableConv2D(8, 3, padding="same", name="sep")(x)
    y = layers.BatchNormalization(name="bn")(y)
    y = layers.DepthwiseConv2D(3, padding="same", name="dw")(y)
    x = layers.Add(name="residual")([x, y])
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dropout(0.3, name="drop")(x)
    out_ = layers.Dense(5, activation="softmax", name="head")(x)
    m = keras.Model(inp, out_, name="residual_cnn")
    randomize(m)
    m.save(out / "k3_residual.keras")
    m.save(out / "k3_residual.h5")
    made["k3_residual"] = {"params": m.count_params()}

    # Every layer class the bridge promises, in one functional graph.
    inp = keras.Input((8, 8, 3), name="zoo_in")
    a = layers.Rescaling(1 / 2.0, offset=0.1, name="rescale")(inp)
    a = layers.ZeroPadding2D(1, name="pad")(a)
    a = layers.Conv2D(6, 3, kernel_regularizer=keras.regularizers.L2(1e-4),
                      kernel_constraint=keras.constraints.MaxNorm(3.0), name="conv")(a)
    a = layers.BatchNormalization(name="bn")(a)
    a = layers.ReLU(max_value=6.0, name="relu6")(a)
    b = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(a)
    b = layers.Conv2D(6, 1, name="pw")(b)
    c = layers.SeparableConv2D(6, 3, padding="same", name="sep")(a)
    m1 = layers.Multiply(name="mul")([b, c])
    cat = layers.Concatenate(name="cat")([m1, a])
    p = layers.MaxPooling2D(2, name="maxpool")(cat)
    p = layers.UpSampling2D(2, name="up")(p)
    p = layers.Conv2DTranspose(4, 3, strides=1, padding="same", name="deconv")(p)
    p = layers.AveragePooling2D(2, name="avgpool")(p)
    p = layers.LayerNormalization(name="ln")(p)
    p = layers.Activation("tanh", name="act")(p)
    g = layers.GlobalMaxPooling2D(name="gmp")(p)
    g2 = layers.GlobalAveragePooling2D(name="gap")(p)
    f = layers.Flatten(name="flat")(p)
    f = layers.Reshape((16, 4), name="reshape")(f)
    f = layers.Conv1D(3, 2, name="conv1d")(f)
    f = layers.Flatten(name="flat2")(f)
    h = layers.Concatenate(name="cat2")([f, g, g2])
    h = layers.Dense(8, activation="relu", name="dense")(h)
    h = layers.Dropout(0.5, name="dropout")(h)
    h = layers.Dense(4, name="logits")(h)
    h = layers.Softmax(name="softmax")(h)
    tok = keras.Input((5,), dtype="int32", name="tokens")
    e = layers.Embedding(20, 4, name="embed")(tok)
    e = layers.GlobalAveragePooling1D(name="gap1d")(e)
    e = layers.Dense(4, name="tok_dense")(e)
    both = layers.Add(name="merge")([h, e])
    zoo = keras.Model([inp, tok], both, name="zoo")
    randomize(zoo, 3)
    zoo.save(out / "k3_zoo.keras")
    made["k3_zoo"] = {"params": zoo.count_params()}

    seq = keras.Sequential([keras.Input((10,)), layers.Dense(16, activation="relu"),
                            layers.Dense(3, activation="softmax")], name="seq")
    randomize(seq, 5)
    seq.save(out / "k3_seq.keras")
    made["k3_seq"] = {"params": seq.count_params()}

    # A recurrent classifier: TFLite runs it with builtin ops (no Flex).
    rnn = keras.Sequential([keras.Input((6, 4)), layers.GRU(5, name="gru"), layers.Dense(2)],
                           name="rnn")
    rnn.save(out / "k3_gru.keras")
    np.savez(out / "steps.npz", x=np.random.default_rng(5).random((120, 6, 4), dtype=np.float32),
             y=np.zeros(120, np.int64))

    # Every recurrent layer and wrapper the bridge translates, stacked.
    inp = keras.Input((6, 4), name="steps")
    x = layers.Bidirectional(layers.LSTM(5, return_sequences=True), name="bilstm")(inp)
    x = layers.TimeDistributed(layers.Dense(3), name="per_step")(x)
    x = layers.SimpleRNN(4, return_sequences=True, name="srnn")(x)
    x = layers.Bidirectional(layers.GRU(4), backward_layer=layers.GRU(4, go_backwards=True),
                             merge_mode="sum", name="bigru")(x)
    rnns = keras.Model(inp, layers.Dense(2, activation="softmax", name="head")(x), name="rnns")
    randomize(rnns, 17)
    rnns.save(out / "k3_rnns.keras")
    made["k3_rnns"] = {"params": rnns.count_params()}

    # An LSTM classifier, trained: which of three channels rises over the sequence.
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 360)
    seqs = rng.standard_normal((360, 12, 3)).astype("float32") * 0.5
    seqs[np.arange(360), :, labels] += np.linspace(0, 2, 12, dtype="float32")
    np.savez(out / "seq.npz", x=seqs, y=labels)
    lstm = keras.Sequential([keras.Input((12, 3), name="signal"), layers.LSTM(16, name="lstm"),
                             layers.Dense(3, activation="softmax", name="head")], name="lstm_clf")
    keras.utils.set_random_seed(4)
    lstm.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    lstm.fit(seqs, labels, epochs=15, batch_size=32, verbose=0)
    lstm.save(out / "k3_lstm.keras")
    made["k3_lstm"] = {"params": lstm.count_params()}

    # Two inputs (an image and a vector), two heads (a score and a class), trained.
    rng = np.random.default_rng(6)
    xa = rng.random((240, 8, 8, 1)).astype("float32")
    xb = rng.random((240, 5)).astype("float32")
    score, cls = xa.mean((1, 2, 3)) + xb.sum(1), np.minimum((xb[:, 0] * 3).astype(int), 2)
    a, b = keras.Input((8, 8, 1), name="image"), keras.Input((5,), name="meta")
    h = layers.Concatenate(name="join")([layers.Flatten(name="flat")(
        layers.Conv2D(4, 3, activation="relu", name="conv")(a)), b])
    h = layers.Dense(16, activation="relu", name="shared")(h)
    two = keras.Model([a, b], [layers.Dense(1, name="score")(h),
                               layers.Dense(3, activation="softmax", name="cls")(h)], name="two_io")
    keras.utils.set_random_seed(6)
    two.compile(keras.optimizers.Adam(1e-2), ["mse", "sparse_categorical_crossentropy"])
    two.fit([xa, xb], [score, cls], epochs=25, batch_size=32, verbose=0)
    two.save(out / "k3_two_io.keras")
    np.savez(out / "two_io.npz", x_image=xa, x_meta=xb, y_cls=cls)
    made["k3_two_io"] = {"params": two.count_params()}

    # A transformer block normalized by RMSNormalization, a Keras 3 layer tf_keras has no
    # counterpart for: the bridge cannot translate it, so only the tfmot steps are closed to it.
    inp = keras.Input((8, 16), name="tokens")
    att = layers.MultiHeadAttention(2, 8, name="attn")(inp, inp)
    x = layers.RMSNormalization(name="rms")(layers.Add(name="residual")([inp, att]))
    x = layers.GlobalAveragePooling1D(name="pool")(x)
    attention = keras.Model(inp, layers.Dense(3, activation="softmax", name="head")(x),
                            name="attention")
    randomize(attention, 13)
    attention.save(out / "k3_attention.keras")
    tokens = np.random.default_rng(2).standard_normal((120, 8, 16)).astype("float32")
    np.savez(out / "tokens.npz", x=tokens, y=np.argmax(attention.predict(tokens, verbose=0), 1))
    made["k3_attention"] = {"params": attention.count_params()}

    # A token classifier: integer ids (an int32 input) through an Embedding, and exact GELU
    # (TF's Erfc, which tf2onnx has no handler for). Label: which third of the vocabulary the
    # ids fall in most often.
    ids = np.random.default_rng(3).integers(0, 21, size=(300, 12))
    id_labels = np.argmax([(ids < 7).sum(1), ((ids >= 7) & (ids < 14)).sum(1), (ids >= 14).sum(1)],
                          axis=0)
    inp = keras.Input((12,), dtype="int32", name="ids")
    x = layers.Dense(16, activation="gelu", name="mix")(layers.Embedding(21, 8, name="embed")(inp))
    tokens_model = keras.Model(inp, layers.Dense(3, activation="softmax", name="head")(
        layers.GlobalAveragePooling1D(name="pool")(x)), name="token_classifier")
    keras.utils.set_random_seed(7)
    tokens_model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    tokens_model.fit(ids, id_labels, epochs=40, batch_size=32, verbose=0)
    tokens_model.save(out / "k3_ids.keras")
    np.savez(out / "ids.npz", x=ids, y=id_labels)  # int64 ids 0..20, as a user stores them
    made["k3_ids"] = {"params": tokens_model.count_params()}

    # A Lambda layer whose code writes a file when it runs.
    marker = out / "lambda_ran.txt"

    # A real `lambda` (a named function would be stored by name only): Keras stores its
    # bytecode, which runs when the model is rebuilt.
    writes_file = eval(f"lambda t: (open({str(marker)!r}, 'w').write('the Lambda ran'), t)[1]")

    inp = keras.Input((4,))
    lam = keras.Model(inp, layers.Dense(2)(layers.Lambda(writes_file, name="evil")(inp)))
    if marker.exists():
        marker.unlink()
    lam.save(out / "k3_lambda.keras")
    if marker.exists():
        marker.unlink()

    # A plain SavedModel (no Keras metadata), as Keras 3's model.export writes it.
    seq.export(str(out / "k3_export_savedmodel"), verbose=False)

    made.update(zoo_models(out))
    return made


def zoo_models(out: Path) -> dict:
    """Real architectures nobody here wrote, small: what the Keras 3 native road must carry."""
    import keras
    from keras import layers

    made = {}
    keras.utils.set_random_seed(3)  # weights=None draws its initial weights: the same every run
    rng = np.random.default_rng(1)
    # Four classes a small network learns in a few epochs: which colour channel is brightest,
    # or none (grey); noise on top so no two images are alike.
    labels = rng.integers(0, 4, 400)
    images = rng.random((400, 32, 32, 3)) * 0.6
    for i, c in enumerate(labels):
        if c < 3:
            images[i, ..., c] += 0.4
    images = (np.clip(images, 0, 1) * 255).astype("uint8")
    np.savez(out / "rgb32.npz", x=images, y=labels)
    # MobileNetV3's building blocks (Rescaling and Normalization stem, hard_silu, a depthwise
    # conv, a squeeze-and-excite gate with hard_sigmoid): layers the bridge lacks. Trained for
    # a few seconds, so its answers depend on the input and its margins are a classifier's.
    inp = keras.Input((32, 32, 3), name="image")
    x = layers.Rescaling(1 / 255.0, name="rescale")(inp)
    x = layers.Normalization(mean=[0.5, 0.5, 0.5], variance=[0.08, 0.08, 0.08], name="norm")(x)
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem")(x)
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.Activation("hard_silu", name="stem_act")(x)
    y = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)
    y = layers.BatchNormalization(name="dw_bn")(y)
    y = layers.Activation("hard_silu", name="dw_act")(y)
    gate = layers.GlobalAveragePooling2D(keepdims=True, name="se_pool")(y)
    gate = layers.Conv2D(8, 1, activation="hard_sigmoid", name="se_gate")(gate)
    y = layers.Multiply(name="se")([y, gate])
    x = layers.Add(name="residual")([x, y])
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    out_ = layers.Dense(4, activation="softmax", name="head")(x)
    mnv3 = keras.Model(inp, out_, name="mnv3_blocks")
    mnv3.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy")
    mnv3.fit(images, labels, epochs=30, batch_size=32, verbose=0)
    mnv3.save(out / "k3_mobilenetv3.keras")
    made["k3_mobilenetv3"] = {"params": mnv3.count_params()}

    # A DS-CNN keyword-spotting shape (depthwise-separable blocks) on 8x8 digits.
    inp = keras.Input((8, 8, 1), name="mfcc")
    x = layers.Conv2D(12, 3, padding="same", use_bias=False, name="conv")(inp)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.ReLU(name="relu")(x)
    for i in (1, 2):
        x = layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{i}")(x)
        x = layers.BatchNormalization(name=f"dw{i}_bn")(x)
        x = layers.ReLU(name=f"dw{i}_relu")(x)
        x = layers.Conv2D(12, 1, use_bias=False, name=f"pw{i}")(x)
        x = layers.BatchNormalization(name=f"pw{i}_bn")(x)
        x = layers.ReLU(name=f"pw{i}_relu")(x)
    x = layers.SeparableConv2D(12, 3, padding="same", name="sep")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    ds = keras.Model(inp, layers.Dense(10, activation="softmax", name="head")(x), name="dscnn")
    randomize(ds, 11)
    ds.save(out / "k3_dscnn.keras")
    made["k3_dscnn"] = {"params": ds.count_params()}

    # Transfer learning as users build it: a Functional backbone nested as a layer (called with
    # training=False), a nested Sequential block, and a head.
    b_in = keras.Input((8, 8, 1))
    b = layers.ReLU()(layers.BatchNormalization(name="b_bn")(layers.Conv2D(8, 3, padding="same",
                                                                            name="b_conv")(b_in)))
    b = layers.DepthwiseConv2D(3, padding="same", activation="relu", name="b_dw")(b)
    backbone = keras.Model(b_in, layers.Conv2D(12, 1, activation="relu", name="b_pw")(b),
                           name="backbone")
    neck = keras.Sequential([layers.Conv2D(12, 3, activation="relu", name="n_conv"),
                             layers.GlobalAveragePooling2D(name="n_gap")], name="neck")
    inp = keras.Input((8, 8, 1), name="image")
    tl = keras.Model(inp, layers.Dense(10, activation="softmax", name="head")(
        neck(backbone(inp, training=False))), name="transfer")
    randomize(tl, 19)
    tl.save(out / "k3_transfer.keras")
    made["k3_transfer"] = {"params": tl.count_params()}

    # An FC autoencoder: 640 reconstructed values, where top-1 agreement means nothing.
    inp = keras.Input((640,))
    code = layers.Dense(64, activation="relu", name="encode")(inp)
    recon = layers.Dense(640, activation="sigmoid", name="decode")(code)
    ae = keras.Model(inp, recon, name="autoencoder")
    randomize(ae, 7)
    ae.save(out / "k3_autoencoder.keras")
    recon_x = rng.random((300, 640)).astype("float32")
    np.savez(out / "ae.npz", x=recon_x, y=recon_x)  # an autoencoder's target is its input
    made["k3_autoencoder"] = {"params": ae.count_params()}
    return made


def tf_keras_models(out: Path) -> dict:
    import tensorflow as tf
    import tf_keras

    made = {}
    m = tf_keras.Sequential([
        tf_keras.Input((8, 8, 1)),
        tf_keras.layers.Conv2D(4, 3, activation="relu", name="conv"),
        tf_keras.layers.Flatten(),
        tf_keras.layers.Dense(3, activation="softmax", name="out"),
    ], name="tfk_cnn")
    randomize(m, 7)  # non-zero biases, so the converter keeps every weight tensor
    m.save(out / "tfk_cnn.keras")
    m.save(out / "tfk_cnn.h5")
    m.save(out / "tfk_savedmodel", save_format="tf")
    made["tfk_cnn"] = {"params": m.count_params()}

    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    (out / "tfk_cnn.tflite").write_bytes(conv.convert())

    rng = np.random.default_rng(0)

    def rep():
        for _ in range(16):
            yield [rng.random((1, 8, 8, 1), dtype=np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(m)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    (out / "tfk_cnn_int8.tflite").write_bytes(conv.convert())

    # A model that needs a Select TF (Flex) op.
    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def flex_fn(x):
        return tf.raw_ops.Cumprod(x=x, axis=1, exclusive=False, reverse=False) + tf.math.lgamma(x)

    conv = tf.lite.TFLiteConverter.from_concrete_functions([flex_fn.get_concrete_function()],
                                                           flex_fn)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    conv.allow_custom_ops = True
    try:
        (out / "flex.tflite").write_bytes(conv.convert())
    except Exception as err:  # pragma: no cover - recorded for the test to report
        (out / "flex_error.txt").write_text(str(err))

    # A Keras model whose conversion needs a Select TF (Flex) op (no builtin CUMPROD).
    x_in = tf_keras.Input((6,))
    cp = tf.math.cumprod(tf_keras.layers.Dense(6, name="pre")(x_in), axis=1)
    needs_flex = tf_keras.Model(x_in, tf_keras.layers.Dense(3, activation="softmax", name="out")(cp),
                                name="needs_flex")
    randomize(needs_flex, 11)
    needs_flex.save(out / "tfk_needs_flex.keras")

    # A registered custom layer, and a file that defines it for --custom-objects.
    custom_src = '''
import tf_keras


@tf_keras.utils.register_keras_serializable(package="Demo")
class Scale(tf_keras.layers.Layer):
    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}
'''
    (out / "custom_layers.py").write_text(custom_src)
    namespace: dict = {}
    exec(compile(custom_src, "custom_layers.py", "exec"), namespace)
    cm = tf_keras.Sequential([tf_keras.Input((3,)), namespace["Scale"](3.0, name="scale"),
                              tf_keras.layers.Dense(2)], name="custom")
    cm.save(out / "tfk_custom.keras")
    return made


def onnx_model(out: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((4, 3), dtype=np.float32), "W")
    b = numpy_helper.from_array(np.zeros((3,), dtype=np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Add", ["h", "B"], ["z"]),
         helper.make_node("Relu", ["z"], ["y"])],
        "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])], [w, b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="edgenn-tests")
    model.metadata_props.add(key="edgenn.test", value="1")
    onnx.checker.check_model(model)
    onnx.save(model, out / "tiny.onnx")


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    made = {}
    made.update(keras3_models(out))
    made.update(tf_keras_models(out))
    onnx_model(out)
    (out / "manifest.json").write_text(json.dumps(made))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""Training and inference time with oneDNN on or off (why edgenn does not turn it off).

    TF_ENABLE_ONEDNN_OPTS=1 python bench/onednn_speed.py cnn|mbv2|resnet
    TF_ENABLE_ONEDNN_OPTS=0 python bench/onednn_speed.py cnn|mbv2|resnet

One epoch of random data after a warm-up epoch; figures in bench/RESULTS.md ("Session 10").
"""

import os
import sys
import time

os.environ["TF_DETERMINISTIC_OPS"] = "1"

import keras  # noqa: E402
import numpy as np  # noqa: E402

keras.utils.set_random_seed(0)
which = sys.argv[1] if len(sys.argv) > 1 else "cnn"
if which == "cnn":
    inp = keras.Input((28, 28, 1))
    h = keras.layers.MaxPooling2D()(keras.layers.Conv2D(32, 3, activation="relu")(inp))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(64, 3, activation="relu")(h))
    model = keras.Model(inp, keras.layers.Dense(10, activation="softmax")(h))
    x = np.random.rand(2048, 28, 28, 1).astype("float32")
elif which == "mbv2":
    model = keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None, classes=10)
    x = np.random.rand(512, 96, 96, 3).astype("float32")
else:
    model = keras.applications.ResNet50(input_shape=(64, 64, 3), weights=None, classes=10)
    x = np.random.rand(256, 64, 64, 3).astype("float32")
y = np.random.randint(0, 10, len(x))
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(x[:64], y[:64], epochs=1, batch_size=32, verbose=0)
start = time.time()
model.fit(x, y, epochs=1, batch_size=32, verbose=0)
fit = time.time() - start
start = time.time()
model.predict(x, verbose=0, batch_size=64)
print(f"{which} TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')}: "
      f"fit {fit:.2f} s, predict {time.time() - start:.2f} s")

"""Reference models that edgenn trains itself (demo, tests, benchmarks), built in Keras 3.

Keras 3 is what users have today, so the demo goes through the same bridge their models do.
"""

from __future__ import annotations

import math

from .._tf import keras3


def reference_cnn(input_shape: tuple, num_classes: int, width: float = 1.0, name: str = "refcnn",
                  seed: int = 0, fc_units: int = 64):
    """A small image classifier: two conv blocks with batch norm, then a softmax head."""
    keras = keras3()
    keras.utils.set_random_seed(seed)  # the initial weights come from this seed
    layers = keras.layers

    def units(n: int) -> int:
        return max(4, int(round(n * width)))

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    spatial = min(input_shape[0], input_shape[1])
    for i, filters in enumerate((16, 32)):
        x = layers.Conv2D(units(filters), 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.ReLU(name=f"relu{i + 1}")(x)
        if spatial >= 8:
            x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)
            spatial //= 2
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(units(fc_units), activation="relu", name="fc")(x)
    x = layers.Dropout(0.2, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def train(model, splits, epochs: int, batch_size: int = 64, learning_rate: float = 1e-3,
          seed: int = 0, on_epoch=None, augment=None):
    """Train a Keras 3 classifier on prepared splits; return the history dict.

    ``augment`` (recipe.Augment) flips/shifts the training images with compress's seeded
    pipeline; without it the arrays are fed as they are.
    """
    keras = keras3()
    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = []
    if on_epoch is not None:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: on_epoch(epoch, logs or {})))
    if augment is None:
        data = dict(x=splits.x_train, y=splits.y_train, batch_size=batch_size, shuffle=True)
    else:  # compress's seeded pipeline, which shuffles and repeats itself
        from ..data.augment import dataset

        data = dict(x=dataset(splits.x_train, splits.y_train, batch_size, seed, augment),
                    steps_per_epoch=math.ceil(len(splits.x_train) / batch_size), shuffle=False)
    history = model.fit(**data, epochs=epochs, validation_data=(splits.x_val, splits.y_val),
                        verbose=0, callbacks=callbacks)
    return history.history

"""Training batches: a seeded, shuffled, repeating tf.data pipeline, optionally augmented.

TensorFlow is imported when a pipeline is built, so importing this module stays light.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError


def dataset(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int, augment=None):
    """A shuffled, repeating tf.data pipeline (deterministic for a seed).

    ``augment`` (recipe.Augment) flips and shifts each image with stateless random ops whose
    seeds come from a seeded stream, so an augmented run is as reproducible as a plain one.
    """
    from .._tf import tf

    tensorflow = tf()
    several = isinstance(x, (list, tuple))  # several inputs (and a label array per output)
    if several and changes(augment):
        raise UsageError("augment applies to a model with one image input; this one has "
                         f"{len(x)} inputs", "remove the step's augment key")
    ds = tensorflow.data.Dataset.from_tensor_slices((tuple(x), tuple(y)) if several else (x, y))
    ds = ds.shuffle(len(x[0]) if several else len(x), seed=seed,
                    reshuffle_each_iteration=True).repeat()
    if not several and check_augment(augment, x.shape):
        seeds = tensorflow.data.Dataset.random(seed=seed).batch(4)
        ds = tensorflow.data.Dataset.zip((ds, seeds)).map(
            lambda xy, s: (_augment_image(xy[0], s, augment), xy[1]),
            num_parallel_calls=tensorflow.data.AUTOTUNE, deterministic=True)
    return ds.batch(batch_size).prefetch(2)


def changes(augment) -> bool:
    """Whether ``augment`` (recipe.Augment or None) changes any image."""
    return augment is not None and bool(augment.horizontal_flip or augment.shift)


def check_augment(augment, shape: tuple, step: str = "a training") -> bool:
    """Whether ``augment`` changes anything; raises UsageError if it would on non-image data."""
    if not changes(augment):
        return False
    if len(shape) != 4:
        raise UsageError(f"{step} step's augment needs image input (N, H, W, C) but the "
                         f"training data has shape {tuple(shape)}", "remove the step's augment key")
    return True


def _augment_image(image, seeds, augment):
    from .._tf import tf

    tensorflow = tf()
    if augment.horizontal_flip:
        image = tensorflow.image.stateless_random_flip_left_right(image, seed=seeds[:2])
    if augment.shift:
        k = augment.shift
        padded = tensorflow.pad(image, [[k, k], [k, k], [0, 0]])
        image = tensorflow.image.stateless_random_crop(padded, tensorflow.shape(image),
                                                       seed=seeds[2:])
    return image

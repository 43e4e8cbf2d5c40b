"""The dataset flags shared by every command that reads data."""

from __future__ import annotations

import math

import click


def _floats(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers; received {value!r}") from None


def _size(ctx, param, value):
    if value is None:
        return None
    parts = value.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise click.BadParameter(f"expected HEIGHTxWIDTH such as 224x224; received {value!r}")
    return int(parts[0]), int(parts[1])


def _scale(ctx, param, value):
    if value in ("auto", "none"):
        return value
    try:
        number = float(value)
    except ValueError:
        raise click.BadParameter(f"expected auto, none or a number; received {value!r}") from None
    if number <= 0:
        raise click.BadParameter(f"must be positive; received {value!r}")
    return number


def data_options(default: str | None = None):
    """Add --data and its preprocessing flags; the command receives ``data_spec`` (or None)."""

    def decorate(func):
        options = [
            click.option("--data", "data", default=default, show_default=bool(default),
                         help="Dataset: digits, fashion-mnist, a .npz file, an IDX folder or an "
                              "image folder with a sub-folder per class."),
            click.option("--seed", type=int, default=0, show_default=True,
                         help="Seed for the data splits (and training)."),
            click.option("--scale", default="auto", callback=_scale, show_default=True,
                         help="auto (uint8 images to [0,1]), none, or a divisor."),
            click.option("--mean", default=None, callback=_floats,
                         help="Per-channel mean to subtract, e.g. 0.485,0.456,0.406."),
            click.option("--std", default=None, callback=_floats, help="Per-channel std to divide by."),
            click.option("--resize", default=None, callback=_size, help="Resize images to HxW."),
            click.option("--channels", type=click.Choice(["1", "3"]), default=None,
                         help="Force grayscale (1) or RGB (3)."),
            click.option("--limit", type=click.IntRange(min=1), default=None,
                         help="Use at most this many training samples."),
        ]
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def make_spec(data, seed, scale, mean, std, resize, channels, limit, calibration: int | None = None):
    """A DataSpec from the flags, or None when --data was not given."""
    if data is None:
        return None
    from ..data import DataSpec, check

    check(data)
    extra = {"calibration_samples": calibration} if calibration else {}
    return DataSpec(source=data, seed=seed, scale=scale, mean=mean, std=std, resize=resize,
                    channels=int(channels) if channels else None, limit=limit, **extra)


def parse_input_shapes(ctx, param, value):
    """--input-shape as [(input name or None, shape)]: ``1x224x224x3,1x8`` or ``audio=1x512``."""
    if value is None:
        return None
    shapes = []
    for part in value.split(","):
        name, _, text = part.rpartition("=")
        text = text.strip().lower()
        try:
            shape = [] if text == "scalar" else [int(d) for d in text.split("x")]
        except ValueError:
            raise click.BadParameter(f"expected shapes such as 1x224x224x3 (one per input, "
                                     f"comma-separated) or NAME=1x512 (by input name); "
                                     f"received {value!r}") from None
        shapes.append((name.strip() or None, shape))
    if any(d < 1 for _, shape in shapes for d in shape):
        raise click.BadParameter(f"every dimension must be at least 1; received {value!r}")
    if any(math.prod(shape) > 2**28 for _, shape in shapes):  # 1 GB of float32 per input
        raise click.BadParameter(f"a shape of more than {2**28:,} values per input is no input "
                                 f"a device takes; received {value!r}")
    named = {name is None for name, _ in shapes}
    if len(named) > 1:
        raise click.BadParameter(f"give every shape by input name or none; received {value!r}")
    return shapes

"""`edgenn profile --calibrate`: turn measurements into a device profile's throughput."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..artifacts import write_text
from ..devices import DeviceProfile, builtin_devices
from ..errors import UsageError
from ..yamlio import read_yaml, validate
from .estimate import tflite_costs


def calibrate_device(device: str | None, results: list) -> dict:
    """Write sustained GMAC/s per dtype (MACs / p50 latency) into the device's YAML file.

    Only a device file the user names by path is written (built-in profiles are part of the
    package); the file is validated again after the update and written atomically.
    """
    if not device:
        raise UsageError("--calibrate writes into a device file", "pass --device path/to/device.yaml")
    path = Path(device)
    if not path.is_file() or path.resolve() in {p.resolve() for p in builtin_devices().values()}:
        raise UsageError(f"--calibrate needs a device YAML file of yours; received {device!r}",
                         "copy a built-in profile (edgenn devices show NAME > mine.yaml) and pass it")
    rates: dict[str, list[float]] = {}
    for m in results:  # result.Measurement
        if not m.model.endswith(".tflite"):
            continue
        costs = tflite_costs(m.model, [(None, list(shape)) for shape in m.input_shapes] or None)
        if len(costs.macs) != 1:
            continue  # mixed-precision models cannot separate the two rates
        (dtype, macs), = costs.macs.items()
        rates.setdefault(dtype, []).append(macs / (m.latency_ms.p50 / 1000) / 1e9)
    if not rates:
        raise UsageError("--calibrate needs at least one single-precision .tflite result",
                         "profile a float32 and/or an int8 .tflite model")
    data, lines = read_yaml(path)
    validate(DeviceProfile, data, lines, str(path), "device profile")  # valid before the update
    throughput = data.setdefault("throughput", {})
    measured = {}
    for dtype, values in rates.items():
        measured[f"{dtype}_gmacs"] = round(sum(values) / len(values), 3)
        throughput[f"{dtype}_gmacs"] = measured[f"{dtype}_gmacs"]
    throughput["source"] = "measured"
    validate(DeviceProfile, data, {}, str(path), "device profile")  # and after, before writing
    write_text(path, yaml.safe_dump(data, sort_keys=False))
    return {"device_file": str(path), "throughput": measured}

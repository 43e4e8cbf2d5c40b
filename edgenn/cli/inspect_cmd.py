"""`edgenn inspect MODEL`."""

from __future__ import annotations

import click

from .data_options import parse_input_shapes
from .model_options import bridge_option, model_options
from .output import common_options, console, emit, guarded_stdout


def _fmt_int(n) -> str:
    return "?" if n is None else f"{n:,}"


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@click.command("inspect")
@click.argument("model", type=click.Path())
@model_options
@click.option("--no-bridge", is_flag=True,
              help="For a Keras 3 model, skip building and checking the tf_keras copy.")
@bridge_option
@click.option("--input-shape", "input_shapes", callback=parse_input_shapes, default=None,
              help="For a Keras model whose input size is open: shapes and MACs at this size, "
                   "e.g. 1x11000x4 (comma-separated, one per input, or NAME=SHAPE).")
@common_options
@guarded_stdout
def inspect_cmd(model: str, allow_unsafe: bool, custom_objects: str | None, no_bridge: bool,
                bridge_tolerance: float | None, input_shapes: list | None) -> None:
    """Facts about MODEL (.keras, .h5, SavedModel, .tflite, .onnx) before you compress it.

    Keras: layers with class, output shape, parameters and MACs, totals and weight bytes; for a
    Keras 3 model, whether it bridges to tf_keras (what compression needs). TFLite and ONNX: ops,
    tensor types, quantization, signatures, custom and Flex ops. These two need no TensorFlow.
    """
    from ..models.formats import ModelFormat, detect

    info = detect(model)
    if info.format is ModelFormat.tflite:
        from ..runtime.tflite_info import describe

        doc = describe(info.path)
        emit(doc, lambda: _human_artifact(doc))
        return
    if info.format is ModelFormat.onnx:
        from ..runtime.onnx_info import describe

        doc = describe(info.path)
        emit(doc, lambda: _human_artifact(doc))
        return
    if info.format is ModelFormat.savedmodel and not info.has_keras_metadata:
        from ..models.describe import describe_savedmodel

        doc = describe_savedmodel(info, allow_unsafe=allow_unsafe)
        emit(doc, lambda: _human_artifact(doc))
        return
    from ..models.describe import describe_keras

    doc = describe_keras(info, allow_unsafe=allow_unsafe, custom_objects_file=custom_objects,
                         bridge=not no_bridge, bridge_tolerance=bridge_tolerance,
                         input_shapes=input_shapes)
    emit(doc, lambda: _human_keras(doc))


def _human_keras(doc: dict) -> None:
    from rich.table import Table

    con = console()
    con.print(f"[bold]{doc['path']}[/bold]: {doc['label']}, {_fmt_bytes(doc['bytes'])}")
    table = Table("layer", "class", "output shape", "params", "MACs", box=None)
    for layer in doc["layers"]:
        shape = layer["output_shape"]
        table.add_row(layer["name"], layer["class"], "?" if shape is None else str(shape),
                      _fmt_int(layer["params"]), _fmt_int(layer["macs"]))
    con.print(table)
    weights = ", ".join(f"{k} {_fmt_bytes(v)}" for k, v in doc["weight_bytes"].items()) or "none"
    con.print(f"params {_fmt_int(doc['params'])} (trainable {_fmt_int(doc['trainable_params'])}, "
              f"non-trainable {_fmt_int(doc['non_trainable_params'])}); MACs {_fmt_int(doc['macs'])} "
              f"per sample{_sized(doc)}; weights {weights}")
    bridge = doc.get("bridge")
    if bridge and bridge.get("ok"):
        con.print(f"Keras 3 -> tf_keras bridge: ok (relative error {bridge['relative_error']:.1e} <= "
                  f"{bridge['tolerance']:.0e}; max |difference| {bridge['max_abs_diff']:.1e})")
    elif bridge and bridge.get("skipped"):
        con.print("Keras 3 -> tf_keras bridge: skipped (--no-bridge)")
    elif bridge:
        con.print(f"Keras 3 -> tf_keras bridge: not available, so prune, cluster and QAT cannot "
                  f"run on this model ({bridge['error']}); inspect, convert, PTQ, distill and "
                  "finetune work without it")


def _sized(doc: dict) -> str:
    """' at 1x11000x4' when --input-shape sized the model; a hint when MACs depend on it."""
    if doc.get("sized_at"):
        return " at " + ", ".join("x".join(map(str, s)) for s in doc["sized_at"])
    if doc.get("macs") is None and any(None in t["shape"][1:] for t in doc.get("inputs", [])):
        return " (the input size is open: pass --input-shape to count at one)"
    return ""


def _human_artifact(doc: dict) -> None:
    from rich.table import Table

    con = console()
    con.print(f"[bold]{doc['path']}[/bold]: {doc.get('label', doc['format'])}, "
              f"{_fmt_bytes(doc['bytes'])}, {_fmt_int(doc.get('params'))} params")
    if "opsets" in doc:
        con.print(f"opsets {doc['opsets']}  producer {doc['producer']}")
    for kind in ("inputs", "outputs"):
        for t in doc.get(kind, []):
            q = t.get("quantization")
            con.print(f"{kind[:-1]:>6} {t['name']}: {t['dtype']} {t['shape']}"
                      + (f" quant {q}" if q else ""))
    if doc.get("ops"):
        table = Table("op", "count", box=None)
        for name, count in doc["ops"].items():
            table.add_row(name, str(count))
        con.print(table)
    if "tensor_dtypes" in doc:
        con.print(f"tensor dtypes {doc['tensor_dtypes']}; quantization {doc['quantization']}")
    def tensors(specs: dict) -> str:  # name dtype [shape], what a user prepares data by
        return ", ".join(f"{name} {spec.get('dtype', '')} {spec.get('shape')}".replace("None", "?")
                         for name, spec in specs.items())

    for sig in doc.get("signatures", []):
        con.print(f"signature {sig['key']}: inputs {tensors(sig['inputs'])} -> "
                  f"outputs {tensors(sig['outputs'])}", markup=False, highlight=False)
    if doc.get("flex_ops"):
        con.print(f"[yellow]Flex (Select TF) ops: {', '.join(doc['flex_ops'])}[/yellow]")
    if doc.get("custom_ops"):
        con.print(f"[yellow]custom ops: {', '.join(doc['custom_ops'])}[/yellow]")
    if doc.get("note"):
        con.print(doc["note"])

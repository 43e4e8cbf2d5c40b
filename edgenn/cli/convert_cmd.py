"""`edgenn convert` and `edgenn check`."""

from __future__ import annotations

import click

from .data_options import data_options, make_spec
from .model_options import model_options
from .output import common_options, console, emit, emit_failure, guarded_stdout, info

TARGET = click.Choice(["cpu", "gpu", "edgetpu"])


@click.command("convert")
@click.argument("model", type=click.Path())
@click.option("--to", "to", type=click.Choice(["tflite", "onnx"]), required=True)
@click.option("--target", type=TARGET, default="cpu", show_default=True)
@click.option("--quantize", type=click.Choice(["auto", "none", "dynamic", "float16", "int8",
                                               "int16x8"]), default="auto", show_default=True,
              help="auto: none for cpu, float16 for gpu TFLite, int8 for edgetpu.")
@click.option("--io", type=click.Choice(["auto", "float32", "int8", "uint8"]), default="auto",
              show_default=True, help="TFLite int8 input/output type (auto: int8 for edgetpu).")
@data_options()
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset.")
@click.option("--calibration", type=click.Choice(["minmax", "entropy", "percentile"]),
              default="minmax", show_default=True, help="ONNX static-quantization calibration.")
@click.option("--samples", type=click.IntRange(min=1), default=500, show_default=True,
              help="Samples for the fidelity check.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Minimum top-1 agreement (default 0.99 float/float16, 0.97 quantized).")
@click.option("--explain", is_flag=True, help="Compare an int8 TFLite with Keras layer by layer.")
@click.option("--allow-flex", is_flag=True, help="Allow Select TF (Flex) ops in TFLite output.")
@click.option("--trainable", is_flag=True,
              help="Export train/infer/get_weights/set_weights signatures (builtin ops only).")
@click.option("--train-layers", type=click.Choice(["all", "head"]), default="all", show_default=True,
              help="With --trainable: all (Dense-only networks) or the Dense head with the rest frozen.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="With --trainable: the static training batch.")
@click.option("--momentum", type=click.FloatRange(0, 1, max_open=True), default=0.0,
              show_default=True, help="With --trainable: SGD momentum written into the model.")
@model_options
@common_options
@guarded_stdout
def convert_cmd(model, to, target, quantize, io, data, seed, scale, mean, std, resize, channels,
                limit, output, opset, calibration, samples, threshold, explain, allow_flex,
                trainable, train_layers, batch_size, momentum, allow_unsafe, custom_objects) -> None:
    """Convert a Keras MODEL to TFLite or ONNX for a target and prove it still agrees.

    The converted artifact is run (LiteRT or ONNX Runtime) on data (or random inputs) and
    compared with the Keras model: top-1 agreement, max/mean |difference|, cosine and SNR.
    Below the threshold the command exits 3. The target's pre-flight names ops it cannot run.
    """
    from ..convert.run import convert
    from ..errors import ConversionError

    spec = make_spec(data, seed, scale, mean, std, resize, channels, limit)
    try:
        report = convert(model, output, to=to, target=target, quantize=quantize, data_spec=spec,
                         io=io, opset=opset, calibration=calibration, samples=samples,
                         threshold=threshold, allow_flex=allow_flex, allow_unsafe=allow_unsafe,
                         custom_objects_file=custom_objects, explain=explain, trainable=trainable,
                         train_layers=train_layers, batch_size=batch_size, momentum=momentum,
                         log=info)
    except ConversionError as err:
        failed = getattr(err, "report", None)
        if failed is not None:
            emit_failure(failed, lambda: _human_convert(failed), err)
        raise
    emit(report, lambda: _human_convert(report))


@click.command("check")
@click.argument("model", type=click.Path())
@click.option("--target", type=TARGET, required=True)
@data_options()
@model_options
@common_options
@guarded_stdout
def check_cmd(model, target, data, seed, scale, mean, std, resize, channels, limit,
              allow_unsafe, custom_objects) -> None:
    """Pre-flight alone: which ops of MODEL the target can run, and where mapping stops.

    A .tflite is analysed as it is (no TensorFlow needed). A Keras model is first converted
    the way `convert --target` would (int8 for edgetpu, calibrated on --data), then analysed.
    """
    import tempfile
    from pathlib import Path

    from ..convert.run import preflight
    from ..models.formats import ModelFormat, detect

    fmt = detect(model)
    if fmt.format is ModelFormat.tflite:
        result = preflight(fmt.path, target)
    elif fmt.format is ModelFormat.onnx:
        from ..errors import UsageError

        raise UsageError("check analyses .tflite files and Keras models",
                         "check the Keras model, or convert it to .tflite first")
    else:
        from ..convert.run import convert

        spec = make_spec(data, seed, scale, mean, std, resize, channels, limit)
        with tempfile.TemporaryDirectory(prefix="edgenn-check-") as tmp:
            path = Path(tmp) / "model.tflite"
            report = convert(model, str(path), to="tflite", target=target, data_spec=spec,
                             allow_unsafe=allow_unsafe, custom_objects_file=custom_objects,
                             threshold=0.0, log=info)
            result = report["preflight"]
            result["converted_with"] = {k: report[k] for k in ("quantization", "io")}
    emit(result, lambda: _human_check(result))


def _human_check(result: dict) -> None:
    con = console()
    con.print(f"{result['model']}: {result['mapped']}/{result['ops']} ops run on "
              f"{result['target']}" + (" (the whole graph)" if result["whole_graph_maps"] else ""))
    first = result.get("first_unsupported")
    if first:
        con.print(f"mapping stops at op {first['index']} {first['op']} (Keras layer "
                  f"{first['layer']!r}): {first['problem']}; the {first['runs_on_cpu']} ops from "
                  "there on run on the CPU")
    for p in result["problems"]:
        con.print(f"  - op {p.get('index', '-')} {p['op']} (layer {p['layer']!r}): {p['problem']}")


def _human_convert(report: dict) -> None:
    con = console()
    con.print(f"wrote {report['output']} ({report.get('bytes', 0):,} bytes, {report['to']} "
              f"{report['quantization']} for {report['target']})")
    fid = report.get("fidelity")
    if fid:
        for o in fid["outputs"]:
            agree = o.get("top1_agreement")
            con.print(f"  fidelity on {fid['samples']} samples ({fid['data']}): "
                      + (f"top-1 agreement {agree:.4f}, " if agree is not None else "")
                      + f"max |diff| {o['max_abs_diff']:.3g}, mean |diff| {o['mean_abs_diff']:.3g}, "
                      f"cosine {o['cosine']:.5f}, SNR {o['snr_db']} dB")
        con.print(f"  {'passed' if fid['passed'] else 'FAILED'} (threshold {fid['threshold']})")
    if report.get("onnx_quantization"):
        q = report["onnx_quantization"]
        con.print(f"  ONNX Runtime quantization: {q}")
    pre = report.get("preflight")
    if pre:
        _human_check(pre)
    if report.get("compiler"):
        c = report["compiler"]
        text = c.get("message") or f"mapped {c.get('mapped')} of {c.get('total')} ops"
        con.print(f"  edgetpu_compiler: {text}")
    if report.get("gpu_runtime"):
        con.print(f"  GPU runtime: {report['gpu_runtime']['message']}")
    if report.get("explain", {}).get("layers"):
        ex = report["explain"]
        con.print(f"  layers whose quantization error grows most: {', '.join(ex['worst']) or 'none'}")
        for row in ex["layers"]:
            con.print(f"    {row['layer']:<20} {row['class']:<22} rel. error {row['relative_error']:.4f}"
                      f" ({row['growth']:+.4f})")

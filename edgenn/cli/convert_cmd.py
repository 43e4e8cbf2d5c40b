"""`edgenn convert` and `edgenn check`."""

from __future__ import annotations

import click

from .data_options import data_options, make_spec
from .model_options import model_options, parse_tasks
from .output import common_options, console, fidelity_lines, finish, guarded_stdout, info

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
              default="minmax", show_default=True,
              help="Static int8 activation ranges: min/max, or clipped to the 99.999th "
              "percentiles (TFLite and ONNX); entropy is ONNX Runtime's.")
@click.option("--calibration-samples", type=click.IntRange(min=1), default=None,
              help="Training samples that calibrate int8/int16x8 quantization (default 200).")
@click.option("--samples", type=click.IntRange(min=1), default=500, show_default=True,
              help="Samples for the fidelity check.")
@click.option("--task", callback=parse_tasks, default="auto", show_default=True,
              metavar="TASK|OUTPUT=TASK[,...]",
              help="How fidelity is judged: top-1 agreement (classification), per-label agreement "
                   "(multilabel) or SNR (regression: values, reconstructions, embeddings), for "
                   "every output or per output name. auto: from the output layer (softmax, a few "
                   "sigmoids, anything else).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Minimum agreement for classification/multilabel (default 0.99 float/float16, "
                   "0.97 quantized).")
@click.option("--min-snr", type=float, default=None,
              help="Minimum SNR in dB for regression (default 60 float32, 35 float16, 25 dynamic, "
                   "20 int8, 30 int16x8).")
@click.option("--explain", is_flag=True, help="Compare an int8 TFLite with Keras layer by layer.")
@click.option("--keep-float", default=None, metavar="LAYER[,LAYER]",
              help="Leave these Keras layers in float in an int8 TFLite model (selective "
                   "quantization: the layers --explain names).")
@click.option("--sparse-weights", is_flag=True,
              help="Store pruned weights in TFLite's sparse format (a smaller file; int8 Dense "
                   "kernels pruned in [16, 1] blocks, float ones in [4, 1]).")
@click.option("--allow-flex", is_flag=True, help="Allow Select TF (Flex) ops in TFLite output.")
@click.option("--lstm", type=click.Choice(["fused", "loop"]), default="fused", show_default=True,
              help="LSTMs as TFLite's fused kernel (small and fast; it keeps state between "
                   "invocations, so reset it between sequences) or a stateless WHILE loop.")
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
                limit, output, opset, calibration, calibration_samples, samples, task, threshold,
                min_snr, explain, keep_float, sparse_weights,
                allow_flex, lstm, trainable, train_layers, batch_size, momentum, allow_unsafe,
                custom_objects) -> None:
    """Convert a Keras MODEL to TFLite or ONNX for a target and prove it still agrees.

    The converted artifact is run (LiteRT or ONNX Runtime) on data (or random inputs) and
    compared with the Keras model: top-1 agreement, max/mean |difference|, cosine and SNR.
    Below the threshold the command exits 3. The target's pre-flight names ops it cannot run.
    """
    from ..convert.export import DEFAULT_CALIBRATION_SAMPLES, ExportSpec
    from ..convert.run import convert

    count = calibration_samples or DEFAULT_CALIBRATION_SAMPLES
    spec = ExportSpec.resolve(to, target, quantize, io, calibration_samples=count, opset=opset,
                              calibration=calibration, allow_flex=allow_flex,
                              fused_lstm=lstm == "fused", sparse_weights=sparse_weights,
                              keep_float=tuple(n.strip() for n in (keep_float or "").split(",")
                                               if n.strip()))
    if trainable and (quantize not in ("auto", "none") or target != "cpu" or to != "tflite"):
        from ..errors import UsageError

        raise UsageError("--trainable exports a float32 TFLite model for the CPU",
                         "use --to tflite --target cpu without --quantize")
    data_spec = make_spec(data, seed, scale, mean, std, resize, channels, limit, calibration=count)
    result = convert(model, output, spec, data_spec=data_spec, samples=samples, threshold=threshold,
                     min_snr=min_snr, task=task,
                     allow_unsafe=allow_unsafe, custom_objects_file=custom_objects, explain=explain,
                     trainable=(train_layers, batch_size, momentum) if trainable else None, log=info)
    finish(result, lambda: _human_convert(result))


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
    from ..convert.run import check

    spec = make_spec(data, seed, scale, mean, std, resize, channels, limit)
    result = check(model, target, data_spec=spec, allow_unsafe=allow_unsafe,
                   custom_objects_file=custom_objects, log=info)
    finish(result, lambda: _human_check(result))


def _human_check(result) -> None:
    con = console()
    pre = result.preflight
    con.print(f"{pre.model}: {pre.summary()}")
    if result.converted_with:
        c = result.converted_with
        con.print(f"  converted as `convert --target {pre.target}` would: {c['quantization']}, "
                  f"{c['io']} io")
    _human_preflight(pre)
    if result.compiler is not None:
        con.print(f"  {result.compiler.summary()}")


def _human_preflight(pre) -> None:
    con = console()
    first = pre.first_unsupported
    if first:
        con.print(f"  mapping stops at op {first.index} {first.op} (Keras layer {first.layer!r}): "
                  f"{first.problem}; the {first.runs_on_cpu} ops from there on run on the CPU")
    for p in pre.problems:
        where = f"op {p.index} " if p.index >= 0 else ""
        con.print(f"  - {where}{p.op} (layer {p.layer!r}): {p.problem}")
    if pre.parameter_memory is not None:
        con.print(f"  {pre.parameter_memory.note}")


def _human_convert(result) -> None:
    con = console()
    a, fid = result.artifact, result.fidelity
    con.print(f"wrote {a.path} ({a.bytes:,} bytes, {a.format} {a.spec.quantization.value} for "
              f"{a.spec.target.value})")
    for line in fidelity_lines(fid):
        con.print(line)
    con.print(f"  {'passed' if fid.passed else 'FAILED'}: {fid.summary()}")
    for caveat in fid.caveats():
        con.print(f"  note: {caveat}")
    if a.onnx_quantization is not None:
        con.print(f"  ONNX Runtime quantization: {a.onnx_quantization.summary()}")
    if a.usage_note:
        con.print(f"  note: {a.usage_note}")
    if a.preflight is not None:
        con.print(f"  pre-flight: {a.preflight.summary()}")
        _human_preflight(a.preflight)
    if a.compiler is not None:
        con.print(f"  {a.compiler.summary()}")
    if a.gpu_runtime is not None:
        con.print(f"  GPU runtime: {a.gpu_runtime.message}")
    ex = result.explain
    if ex is not None and ex.skipped:
        con.print(f"  explain: skipped ({ex.skipped})")
    if ex is not None and ex.layers:
        con.print(f"  layers whose quantization error grows most: {', '.join(ex.worst) or 'none'}")
        for row in ex.layers:
            con.print(f"    {row.layer:<20} {row.cls:<22} rel. error {row.relative_error:.4f}"
                      f" ({row.growth:+.4f})")

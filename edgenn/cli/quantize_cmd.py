"""`edgenn quantize`: quantize a converted float .tflite or .onnx, then check it."""

from __future__ import annotations

import click

from .data_options import data_options, make_spec, parse_input_shapes
from .model_options import parse_tasks
from .output import common_options, console, fidelity_lines, finish, guarded_stdout, info

MODES = ["dynamic-int8", "dynamic-int4", "weight-int8", "weight-int4", "int8", "int16"]


@click.command("quantize")
@click.argument("model", type=click.Path())
@click.option("--mode", type=click.Choice(MODES), required=True,
              help="dynamic-int8/-int4: weights quantized, activations on the fly; weight-int8/"
                   "-int4: weights stored quantized, float compute; int8/int16: static "
                   "activations calibrated on --data (.onnx: dynamic-int8 and int8).")
@click.option("--layers", default=".*", show_default=True,
              help="Quantize only ops whose output tensor name matches this regular expression "
                   "(.tflite).")
@data_options()
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.option("--samples", type=click.IntRange(min=1), default=500, show_default=True,
              help="Samples for the fidelity check.")
@click.option("--task", callback=parse_tasks, default="auto",
              show_default=True, metavar="TASK|OUTPUT=TASK[,...]",
              help="How fidelity is judged: auto, classification, multilabel or regression, for "
                   "every output or per output name (auto: by the op that computes the output, "
                   "sigmoid multilabel, softmax classification; else outputs that sum to 1 are "
                   "a classifier's and others are judged by SNR).")
@click.option("--input-shape", "input_shapes", callback=parse_input_shapes, default=None,
              help="Without --data: the shape(s) random check inputs take, e.g. 1x3x640x640 "
                   "(one per input) or x=1x3x48x320 (by input name): needed by a file whose "
                   "input size is open.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Minimum agreement for classification/multilabel.")
@click.option("--min-snr", type=float, default=None, help="Minimum SNR in dB for regression.")
@common_options
@guarded_stdout
def quantize_cmd(model, mode, layers, data, seed, scale, mean, std, resize, channels, limit,
                 output, samples, task, input_shapes, threshold, min_snr) -> None:
    """Quantize a converted float MODEL and prove it still agrees with the float file.

    A .tflite is quantized with ai-edge-quantizer, an .onnx with ONNX Runtime: for files that
    come without their Keras model. The quantized file is compared with MODEL on --data (or
    random inputs); below the threshold the command exits 3 and keeps the file for
    inspection. No TensorFlow is needed.
    """
    import re

    from ..convert.post import quantize_file
    from ..errors import UsageError

    try:
        re.compile(layers)
    except re.error as err:
        raise UsageError(f"--layers is not a regular expression: {err}", "fix the pattern") from None
    spec = make_spec(data, seed, scale, mean, std, resize, channels, limit)
    result = quantize_file(model, output, mode, data_spec=spec, layers=layers, samples=samples,
                           task=task, threshold=threshold, min_snr=min_snr, log=info,
                           input_shapes=input_shapes)
    finish(result, lambda: _human(result))


def _human(result) -> None:
    con = console()
    f = result.fidelity
    con.print(f"wrote {result.output} ({result.bytes_before:,} -> {result.bytes_after:,} bytes, "
              f"{result.tool} {result.mode})")
    for line in fidelity_lines(f):
        con.print(line)
    con.print(f"  {'passed' if f.passed else 'FAILED'}: {f.summary()}")
    for note in result.notes:
        con.print(f"  note: {note}")

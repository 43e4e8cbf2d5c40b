"""Complex values moved by layout ops: their magnitudes (or real parts) taken first.

A spectrogram layer written with `tf.signal.stft` (kapre's STFT, many audio front ends) often
transposes or reshapes the complex STFT before the next layer takes its magnitude
(`tf.abs`). TFLite has no kernel that moves complex values (TRANSPOSE, RESHAPE... take real
types), so the converter asks for Flex; tf2onnx translates an RFFT only when a ComplexAbs reads
it directly. A layout op commutes with an element-wise op, so `abs(transpose(z))` is
`transpose(abs(z))`: rewritten so, in the frozen graph, the RFFT feeds its magnitude and only
real values are moved. Exact: the same values in the same places.
"""

from __future__ import annotations

# ops that only move values (their data input is the first; the rest are shapes or indices)
_MOVES = {"Transpose", "Reshape", "ExpandDims", "Squeeze", "Identity", "StridedSlice", "Slice"}
# element-wise complex -> real ops whose attrs are T (complex) and Tout (real)
_TO_REAL = {"ComplexAbs", "Real", "Imag", "Angle"}
_COMPLEX = (8, 18)  # DT_COMPLEX64, DT_COMPLEX128


def moves_complex_values(graph_def) -> bool:
    """Whether any op of ``graph_def`` (or of a function it holds) moves complex values."""
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    return any(n.op in _MOVES and "T" in n.attr and n.attr["T"].type in _COMPLEX for n in nodes)


def _producer(name: str) -> str:
    return name.lstrip("^").split(":")[0]


def magnitudes_first(graph_def) -> int:
    """Rewrite ``graph_def`` in place so complex -> real ops come before the ops moving values.

    Only where every reader of a moved complex tensor takes its magnitude, real or imaginary
    part, or angle; each reader then gets its own copy of the move, after it. Returns how many
    moves were rewritten (0: the graph is unchanged).
    """
    moved = 0
    while True:
        readers: dict[str, list] = {}
        for node in graph_def.node:
            for k, name in enumerate(node.input):
                readers.setdefault(_producer(name), []).append((node, k))
        by_name = {n.name: n for n in graph_def.node}
        done = False
        for move in list(graph_def.node):
            if move.op not in _MOVES or "T" not in move.attr or move.attr["T"].type not in _COMPLEX:
                continue
            users = readers.get(move.name, [])
            if not users or any(u.op not in _TO_REAL or u.input[k].startswith("^")
                                or k != 0 for u, k in users):
                continue
            for user, _k in users:
                user.input[0] = move.input[0]  # the complex values before they moved
                copy = graph_def.node.add()
                copy.CopyFrom(move)
                copy.name = f"{move.name}/after_{user.name.rsplit('/', 1)[-1]}"
                while copy.name in by_name:
                    copy.name += "_"
                by_name[copy.name] = copy
                copy.input[0] = user.name
                copy.attr["T"].type = user.attr["Tout"].type
                for reader, k in readers.get(user.name, []):
                    if not reader.input[k].startswith("^"):
                        reader.input[k] = copy.name
            graph_def.node.remove(move)
            moved += 1
            done = True
            break  # readers changed: index again
        if not done:
            return moved


def real_valued(function):
    """``function`` (a concrete function) with complex values never moved, or None.

    None when it moves none, or when a move has a reader other than a magnitude (the converter
    then reports the op as before). The rewritten function imports the frozen, rewritten graph:
    the same inputs, outputs and names, its weights as constants.
    """
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from .._tf import tf

    if not moves_complex_values(function.graph.as_graph_def()):
        return None
    tensorflow = tf()
    frozen = convert_variables_to_constants_v2(function, lower_control_flow=False)
    graph_def = frozen.graph.as_graph_def()
    if not magnitudes_first(graph_def) or moves_complex_values(graph_def):
        return None
    inputs = [t.name for t in frozen.inputs]
    outputs = [t.name for t in frozen.outputs]
    specs = function.structured_input_signature[0]
    flat_specs = tensorflow.nest.flatten(specs)

    def run(*args):
        flat = tensorflow.nest.flatten(args)
        found = tensorflow.graph_util.import_graph_def(
            graph_def, input_map=dict(zip(inputs, flat)), return_elements=outputs, name="")
        return tensorflow.nest.pack_sequence_as(function.structured_outputs, found)

    return tensorflow.function(run, input_signature=list(specs)).get_concrete_function() \
        if len(flat_specs) == len(inputs) else None

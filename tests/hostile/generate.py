"""Write a corpus of hostile and broken inputs, and the cases that run edgenn on them.

Usage: python generate.py OUT_DIR. Writes the files under OUT_DIR and OUT_DIR/cases.json: one
case per command line, each with the exit codes it may end with. Every payload that would run
writes into OUT_DIR/markers/, which must stay empty. Seeded: the same corpus every time.

Run in a subprocess by the test fixture, so the pytest process stays free of TensorFlow.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import sys
import zipfile
import zlib
from pathlib import Path

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

SEED = 20261127
CODE_COMMANDS = ("inspect", "convert", "check", "compress", "federated")


class Corpus:
    def __init__(self, out: Path):
        self.out = out
        self.markers = out / "markers"
        self.markers.mkdir(parents=True, exist_ok=True)
        self.cases: list[dict] = []

    def marker(self, name: str) -> str:
        return str(self.markers / name)

    def case(self, name: str, args: list[str], expect=(2,), needle: str | None = None,
             output: str | None = None) -> None:
        self.cases.append({"name": name, "args": [str(a) for a in args], "expect": list(expect),
                           "needle": needle, "output": output})

    def model_cases(self, name: str, path: Path, needle: str | None = None,
                    commands=CODE_COMMANDS) -> None:
        """The same hostile model under every command that loads a model."""
        out = self.out / "outputs"
        for cmd in commands:
            if cmd == "inspect":
                self.case(f"{name}/inspect", ["inspect", path, "--json"], needle=needle)
            elif cmd == "convert":
                self.case(f"{name}/convert", ["convert", path, "--to", "tflite", "-o",
                                              out / f"{name}.tflite"], needle=needle,
                          output=str(out / f"{name}.tflite"))
            elif cmd == "check":
                self.case(f"{name}/check", ["check", path, "--target", "edgetpu", "--data",
                                            "digits", "--limit", "50"], needle=needle)
            elif cmd == "compress":
                self.case(f"{name}/compress", ["compress", path, "--recipe", "int8-ptq", "--data",
                                               "digits", "-o", out / f"{name}-compress"],
                          needle=needle, output=str(out / f"{name}-compress"))
            elif cmd == "federated":
                cfg = self.out / f"{name}-federated.yaml"
                cfg.write_text(f"model: {path}\ndata: digits\nclients: 2\nrounds: 1\n")
                self.case(f"{name}/federated", ["federated", "simulate", "--config", cfg, "-o",
                                                out / f"{name}-federated"], needle=needle,
                          output=str(out / f"{name}-federated"))


# --- tf_keras configs with op layers --------------------------------------------------------------

def tf_keras_base(out: Path) -> Path:
    import tensorflow as tf
    import tf_keras as tfk

    inp = tfk.Input((8, 8, 1))
    x = tfk.layers.Conv2D(4, 3, name="conv")(inp)
    x = tfk.layers.Flatten()(x)
    x = tfk.layers.Dense(10, name="head")(x)
    x = tf.math.multiply(x, 1.0)
    m = tfk.Model(inp, x)
    path = out / "base_tfk.h5"
    m.save(path)
    m.save(out / "base_tfk_savedmodel", save_format="tf")
    return path


def edit_h5_config(src: Path, dst: Path, edit) -> Path:
    import h5py

    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        cfg = json.loads(f.attrs["model_config"])
        edit(cfg)
        f.attrs["model_config"] = json.dumps(cfg)
    return dst


def op_layer(cls: str, config: dict, nodes: list) -> dict:
    name = config.setdefault("name", f"evil_{cls.lower()}")
    config.setdefault("trainable", True)
    config.setdefault("dtype", "float32")
    return {"class_name": cls, "config": config, "name": name, "inbound_nodes": nodes}


def const_node(value, **kwargs) -> list:
    return [["_CONSTANT_VALUE", -1, value, kwargs]]


def tf_keras_cases(c: Corpus) -> None:
    base = tf_keras_base(c.out)
    add = lambda layer: (lambda cfg: cfg["config"]["layers"].append(layer))  # noqa: E731
    variants = {
        "oplambda_write_file": op_layer("TFOpLambda", {"function": "io.write_file"},
                                        const_node(c.marker("oplambda_write_file"), contents="x")),
        "oplambda_makedirs": op_layer("TFOpLambda", {"function": "io.gfile.makedirs"},
                                      const_node(c.marker("oplambda_makedirs"))),
        "oplambda_compat_write": op_layer("TFOpLambda", {"function": "compat.v1.write_file"},
                                          const_node(c.marker("oplambda_compat_write"), contents="x")),
        "oplambda_print_file": op_layer("TFOpLambda", {"function": "print"},
                                        const_node("x", output_stream="file://" + c.marker("print"))),
        "oplambda_tensor_input": op_layer("TFOpLambda", {"function": "io.write_file"},
                                          [["head", 0, 0, {"contents": "x"}]]),
        "slicing_write": op_layer("SlicingOpLambda", {"function": "io.write_file"},
                                  const_node(c.marker("slicing_write"), contents="x")),
        "instance_property_class": op_layer("InstanceProperty", {"attr_name": "__class__"},
                                            const_node("x")),
        "instance_method_chain": op_layer("InstanceMethod", {"attr_name": "__subclasses__"},
                                          [["head", 0, 0, {}]]),
        "class_method_gfile": op_layer("ClassMethod", {"cls_symbol": "io.gfile.GFile",
                                                       "method_name": "__init__"},
                                       [["head", 0, 0, {"name": c.marker("classmethod"),
                                                        "mode": "w"}]]),
        "tf_op_layer_writefile": op_layer(
            "TensorFlowOpLayer", {"node_def": {"name": "WriteFile", "op": "WriteFile",
                                               "input": ["f", "c"], "attr": {}},
                                  "constants": {"0": c.marker("tfoplayer"), "1": "x"}},
            [["head", 0, 0, {}]]),
        "dense_on_constants": op_layer("Dense", {"units": 2}, const_node([[1.0, 2.0]])),
    }
    for name, layer in variants.items():
        path = edit_h5_config(base, c.out / f"{name}.h5", add(layer))
        commands = CODE_COMMANDS if name in ("oplambda_write_file", "oplambda_makedirs") else ("inspect",)
        c.model_cases(name, path, needle="--allow-unsafe", commands=commands)

    def nested(cfg):  # the op layer inside a nested model inside the model
        inner = json.loads(json.dumps(cfg))
        inner["config"]["name"] = "inner"
        inner["config"]["layers"].append(variants["oplambda_write_file"])
        cfg["config"]["layers"].append({"class_name": "Functional", "config": inner["config"],
                                        "name": "inner", "inbound_nodes": [[["input_1", 0, 0, {}]]]})
    c.model_cases("oplambda_nested", edit_h5_config(base, c.out / "oplambda_nested.h5", nested),
                  needle="--allow-unsafe", commands=("inspect",))
    strings = {
        "activation_string_io": lambda cfg: cfg["config"]["layers"][1]["config"].update(
            activation="write_file"),
        "initializer_string": lambda cfg: cfg["config"]["layers"][1]["config"].update(
            kernel_initializer="get_file"),
        "initializer_foreign_module": lambda cfg: cfg["config"]["layers"][1]["config"].update(
            kernel_initializer={"module": "os", "class_name": "system", "config": {"command": "id"}}),
    }
    for name, edit in strings.items():
        c.model_cases(name, edit_h5_config(base, c.out / f"{name}.h5", edit),
                      needle="--allow-unsafe", commands=("inspect",))

    # The same write in a tf_keras SavedModel's keras_metadata.pb.
    from tf_keras.protobuf import saved_metadata_pb2

    sm = c.out / "oplambda_savedmodel"
    shutil.copytree(c.out / "base_tfk_savedmodel", sm)
    meta = saved_metadata_pb2.SavedMetadata()
    meta.ParseFromString((sm / "keras_metadata.pb").read_bytes())
    for node in meta.nodes:
        if node.node_path == "root":
            data = json.loads(node.metadata)
            data["config"]["layers"].append(variants["oplambda_write_file"])
            node.metadata = json.dumps(data)
    (sm / "keras_metadata.pb").write_bytes(meta.SerializeToString())
    c.model_cases("oplambda_savedmodel", sm, needle="--allow-unsafe")


# --- Keras 3 configs -------------------------------------------------------------------------------

def edit_keras_zip(src: Path, dst: Path, edit) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "config.json":
                cfg = json.loads(data)
                edit(cfg)
                data = json.dumps(cfg).encode()
            zout.writestr(item, data)
    return dst


def keras3_cases(c: Corpus) -> Path:
    import keras

    inp = keras.Input((8, 8, 1), name="img")
    x = keras.layers.Conv2D(4, 3, name="conv")(inp)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(10, name="head")(x)
    base = c.out / "base_k3.keras"
    keras.Model(inp, x).save(base)

    def layer(cfg, name):
        return next(entry for entry in cfg["config"]["layers"] if entry["config"]["name"] == name)

    def tfsm(cfg):
        cfg["config"]["layers"].append({
            "module": "keras.layers", "class_name": "TFSMLayer", "registered_name": None,
            "config": {"name": "tfsm", "filepath": str(c.out / "sm_write"),
                       "call_endpoint": "serving_default"},
            "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {
                "shape": [None, 10], "dtype": "float32", "keras_history": ["head", 0, 0]}}],
                "kwargs": {}}]})

    def lambda_in_kwargs(cfg):
        layer(cfg, "head")["inbound_nodes"][0]["kwargs"]["extra"] = {
            "class_name": "__lambda__", "config": {"value": "ZXZpbA=="}}

    def const_only(cfg):
        layer(cfg, "head")["inbound_nodes"] = [{"args": [[[1.0] * 100]], "kwargs": {}}]

    edits = {
        "k3_function_foreign": lambda cfg: layer(cfg, "head")["config"].update(activation={
            "module": "keras.utils", "class_name": "function", "config": "get_file",
            "registered_name": "function"}),
        "k3_module_os": lambda cfg: layer(cfg, "head")["config"].update(kernel_initializer={
            "module": "os", "class_name": "system", "config": {}, "registered_name": None}),
        "k3_compile_config": lambda cfg: cfg.update(compile_config={"optimizer": {
            "module": "posix", "class_name": "system", "config": {}, "registered_name": None}}),
        "k3_build_config": lambda cfg: layer(cfg, "conv").update(build_config={
            "input_shape": {"module": "subprocess", "class_name": "Popen", "config": {}}}),
        "k3_lambda_in_kwargs": lambda_in_kwargs,
        "k3_tfsm_layer": tfsm,
        "k3_const_only_node": const_only,
        "k3_vocabulary_file": lambda cfg: cfg["config"]["layers"].append({
            "module": "keras.layers", "class_name": "StringLookup", "registered_name": None,
            "config": {"name": "lookup", "vocabulary": "/etc/passwd"}, "inbound_nodes": []}),
    }
    for name, edit in edits.items():
        c.model_cases(name, edit_keras_zip(base, c.out / f"{name}.keras", edit),
                      needle="--allow-unsafe",
                      commands=CODE_COMMANDS if name == "k3_tfsm_layer" else ("inspect",))
    return base


# --- SavedModels ------------------------------------------------------------------------------------

def savedmodel_cases(c: Corpus) -> None:
    import tensorflow as tf

    def module(fn):
        class M(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1])])
            def __call__(self, x):
                return fn(x)
        return M()

    def write(x):
        tf.io.write_file(c.marker("sm_write"), "x")
        return tf.reshape(x, (-1, 64))

    def py(x):
        return tf.py_function(lambda a: a, [x], tf.float32)

    def printer(x):
        tf.print(x, output_stream="file://" + c.marker("sm_print"))
        return x

    def save_op(x):
        tf.raw_ops.SaveV2(prefix=c.marker("sm_save"), tensor_names=["x"], shape_and_slices=[""],
                          tensors=[x])
        return x

    for name, fn in (("sm_write", write), ("sm_py_function", py), ("sm_print_file", printer),
                     ("sm_save_op", save_op)):
        tf.saved_model.save(module(fn), str(c.out / name))
        commands = ("inspect", "convert", "check") if name == "sm_write" else ("inspect", "convert")
        c.model_cases(name, c.out / name, needle="--allow-unsafe", commands=commands)

    # A table initializer (run while loading) that writes: WriteFile added to its function.
    from tensorflow.core.protobuf import saved_model_pb2

    class Table(tf.Module):
        def __init__(self):
            self.t = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
                tf.constant([1, 2], tf.int64), tf.constant([3, 4], tf.int64)), -1)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.int64)])
        def __call__(self, x):
            return self.t.lookup(x)

    sm = c.out / "sm_init_write"
    tf.saved_model.save(Table(), str(sm))
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((sm / "saved_model.pb").read_bytes())
    for fn in proto.meta_graphs[0].graph_def.library.function:
        if "initializer" in fn.signature.name:
            path = fn.node_def.add(name="evil_path", op="Const")
            path.attr["dtype"].type = tf.string.as_datatype_enum
            path.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(c.marker("sm_init_write")))
            fn.node_def.add(name="evil_write", op="WriteFile", input=["evil_path:output:0",
                                                                      "evil_path:output:0"])
    (sm / "saved_model.pb").write_bytes(proto.SerializeToString())
    c.model_cases("sm_init_write", sm, needle="--allow-unsafe", commands=("inspect", "convert"))

    for name, data in (("sm_empty_pb", b""), ("sm_garbage_pb", b"\x08\x96\x01garbage\xff\xff" * 20)):
        d = c.out / name
        shutil.copytree(c.out / "sm_write", d)
        (d / "saved_model.pb").write_bytes(data)
        c.model_cases(name, d, commands=("inspect", "convert"))


# --- bombs and deep nesting -----------------------------------------------------------------------

def deflate_zeros(n_mib: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``n_mib`` MiB of zeros, built in milliseconds (full-flush blocks)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = comp.compress(b"\0" * (1 << 20)) + comp.flush(zlib.Z_FULL_FLUSH)
    data = block * n_mib + comp.flush()
    crc = 0
    zero = b"\0" * (1 << 20)
    for _ in range(n_mib):
        crc = zlib.crc32(zero, crc)
    return data, crc


def zip_with(path: Path, members: list[tuple[str, bytes | tuple[bytes, int, int]]]) -> Path:
    """Write a zip by hand: plain members as (name, bytes), pre-deflated ones as
    (name, (deflated, crc, size))."""
    local, central, offset = b"", b"", 0
    for name, payload in members:
        raw = name.encode()
        if isinstance(payload, tuple):
            data, crc, size, method = payload[0], payload[1], payload[2], 8
        else:
            data, crc, size, method = payload, zlib.crc32(payload), len(payload), 0
        header = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, len(data), size,
                             len(raw), 0) + raw
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc,
                               len(data), size, len(raw), 0, 0, 0, 0, 0, offset) + raw
        local += header + data
        offset += len(header) + len(data)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central),
                      offset, 0)
    path.write_bytes(local + central + end)
    return path


def bomb_cases(c: Corpus, k3_base: Path) -> None:
    import h5py

    config = zipfile.ZipFile(k3_base).read("config.json")
    meta = zipfile.ZipFile(k3_base).read("metadata.json")
    data, crc = deflate_zeros(1536)
    bomb = zip_with(c.out / "bomb.keras", [("metadata.json", meta), ("config.json", config),
                                           ("model.weights.h5", (data, crc, 1536 << 20))])
    c.case("bomb_keras/inspect", ["inspect", bomb], needle="--max-unpacked-mb")
    c.case("bomb_keras/convert", ["convert", bomb, "--to", "tflite", "-o",
                                  c.out / "outputs" / "bomb.tflite"], needle="--max-unpacked-mb")
    # Declared sizes that lie about a small payload.
    liar = zip_with(c.out / "zip_slip.keras", [("metadata.json", meta), ("config.json", config),
                                               ("../../evil.txt", b"x")])
    c.case("zip_slip/inspect", ["inspect", liar], needle="outside the archive")
    locked = c.out / "encrypted.keras"
    shutil.copy(k3_base, locked)
    _mark_encrypted(locked)
    c.case("zip_encrypted/inspect", ["inspect", locked])
    npz_locked = c.out / "encrypted.npz"
    np.savez(npz_locked, x=np.zeros((30, 8, 8, 1), np.float32), y=np.zeros(30, np.int64))
    _mark_encrypted(npz_locked)
    c.case("npz_encrypted/convert", ["convert", k3_base, "--to", "tflite", "--quantize", "int8",
                                     "--data", npz_locked, "-o", c.out / "outputs" / "enc.tflite"])

    # HDF5 whose chunked dataset is never written: a tiny file that reads as 1.5 GiB of zeros.
    h5 = c.out / "bomb_fill.h5"
    shutil.copy(c.out / "base_tfk.h5", h5)
    with h5py.File(h5, "r+") as f:
        f["model_weights/conv/conv"].create_dataset("huge", shape=(1536, 1 << 18), dtype="f4",
                                                    chunks=(1, 1 << 18), compression="gzip")
    c.case("bomb_fill_h5/inspect", ["inspect", h5], needle="--max-unpacked-mb")
    ext = c.out / "external_storage.h5"
    shutil.copy(c.out / "base_tfk.h5", ext)
    with h5py.File(ext, "r+") as f:
        f["model_weights"].create_dataset("ext", shape=(16,), dtype="u1",
                                          external=[("/etc/hostname", 0, 16)])
    c.case("external_h5/inspect", ["inspect", ext], needle="outside files")

    # A .npz dataset that unpacks to 1.5 GiB; a gzip IDX file likewise.
    npy_header = b"\x93NUMPY\x01\x00"
    head = "{'descr': '<f4', 'fortran_order': False, 'shape': (402653184,), }"
    head = head + " " * (63 - (len(head) + 10) % 64) + "\n"
    npy = npy_header + struct.pack("<H", len(head)) + head.encode()
    body, _ = deflate_zeros(1536)
    full_crc = zlib.crc32(npy)
    zero = b"\0" * (1 << 20)
    for _ in range(1536):
        full_crc = zlib.crc32(zero, full_crc)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = comp.compress(npy) + comp.flush(zlib.Z_FULL_FLUSH) + body
    npz = zip_with(c.out / "bomb.npz", [("x.npy", (stream, full_crc, len(npy) + (1536 << 20))),
                                        ("y.npy", _npy_bytes(np.zeros(4, np.int64)))])
    c.case("bomb_npz/convert", ["convert", c.out / "base_k3.keras", "--to", "tflite", "--quantize",
                                "int8", "--data", npz, "-o", c.out / "outputs" / "npz.tflite"],
           needle="--max-unpacked-mb")
    idx = c.out / "bomb_idx"
    idx.mkdir()
    import gzip

    with gzip.open(idx / "train-images-idx3-ubyte.gz", "wb", compresslevel=1) as fh:
        fh.write(struct.pack(">BBBBIII", 0, 0, 8, 3, 60000, 28, 28))
        for _ in range(50):
            fh.write(b"\0" * (1 << 20))
    with gzip.open(idx / "train-labels-idx1-ubyte.gz", "wb") as fh:
        fh.write(struct.pack(">BBBBI", 0, 0, 8, 1, 60000) + b"\0" * 60000)
    c.case("idx_header_lies/compress", ["compress", c.out / "base_k3.keras", "--recipe", "int8-ptq",
                                        "--data", idx, "-o", c.out / "outputs" / "idx"],
           expect=(2,), output=str(c.out / "outputs" / "idx"))

    # Configs nested far deeper than any real one.
    for name, depth in (("deep_50000", 50_000), ("deep_300", 300)):
        nested = {"class_name": "Sequential", "config": {"name": "x", "layers": []}}
        node = nested
        for _ in range(depth):
            node["config"]["layers"] = [{"class_name": "Sequential", "config": {"name": "x"}}]
            node = node["config"]["layers"][0]
        text = json.dumps(nested) if depth < 900 else _deep_json(depth)
        path = edit_keras_zip(k3_base, c.out / f"{name}.keras", lambda cfg: None)
        _replace_member(path, "config.json", text.encode())
        c.case(f"{name}/inspect", ["inspect", path], needle="nest")


def _mark_encrypted(path: Path) -> None:
    """Set the 'encrypted' bit of every member, as a password-protected zip would have."""
    data = bytearray(path.read_bytes())
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        pos = data.find(sig)
        while pos != -1:
            data[pos + flag_at] |= 1
            pos = data.find(sig, pos + 4)
    path.write_bytes(bytes(data))


def _npy_bytes(arr) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def _deep_json(depth: int) -> str:
    return '{"class_name": "Sequential", "config": {"name": "x", "layers": [' * depth + "]}}" * depth


def _replace_member(path: Path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(path) as zin:
        items = [(i, zin.read(i.filename)) for i in zin.infolist()]
    with zipfile.ZipFile(path, "w") as zout:
        for info, payload in items:
            zout.writestr(info, data if info.filename == name else payload)


# --- YAML ------------------------------------------------------------------------------------------

def yaml_cases(c: Corpus) -> None:
    letters = "abcdefghij"
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip(letters, letters[1:]):
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    bomb = "\n".join(lines) + "\n"
    for kind, args in (("recipe", ["recipes", "validate"]), ("device", ["devices", "validate"])):
        path = c.out / f"{kind}_bomb.yaml"
        path.write_text(bomb)
        c.case(f"yaml_bomb/{kind}", [*args, path], needle="alias")
    fed = c.out / "federated_bomb.yaml"
    fed.write_text(bomb.replace("a: &a", "model: builtin:mlp\npartition: &a", 1))
    c.case("yaml_bomb/federated", ["federated", "simulate", "--config", fed, "-o",
                                   c.out / "outputs" / "fed_bomb"], needle="alias",
           output=str(c.out / "outputs" / "fed_bomb"))
    rec = c.out / "recursive.yaml"
    rec.write_text("name: x\nsteps: &s [*s]\n")
    c.case("yaml_recursive/recipe", ["recipes", "validate", rec], needle="refers to itself")
    deep = c.out / "deep.yaml"
    deep.write_text("x: " + "[" * 20000 + "]" * 20000 + "\n")
    c.case("yaml_deep/recipe", ["recipes", "validate", deep], needle="nest")
    big = c.out / "huge.yaml"
    big.write_text("name: x\n" + "# padding\n" * 200_000)
    c.case("yaml_huge/recipe", ["recipes", "validate", big], needle="bytes")
    tag = c.out / "python_tag.yaml"
    tag.write_text(f"name: !!python/object/apply:os.system ['touch {c.marker('yaml_tag')}']\n")
    c.case("yaml_python_tag/recipe", ["recipes", "validate", tag])


# --- corrupted flatbuffers and ONNX ------------------------------------------------------------------

def tflite_cases(c: Corpus, k3_base: Path) -> None:
    import keras
    import tensorflow as tf

    model = keras.saving.load_model(k3_base)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    good = conv.convert()
    (c.out / "good.tflite").write_bytes(good)
    rng = random.Random(SEED)
    for i in range(36):
        data = bytearray(good)
        kind = i % 4
        if kind == 0:  # truncation
            data = data[: rng.randrange(8, len(data))]
        elif kind == 1:  # bit flips
            for _ in range(rng.randrange(1, 64)):
                pos = rng.randrange(8, len(data))
                data[pos] ^= 1 << rng.randrange(8)
        elif kind == 2:  # overwritten words (offsets and lengths)
            for _ in range(rng.randrange(1, 16)):
                pos = rng.randrange(8, len(data) - 4)
                data[pos:pos + 4] = struct.pack("<I", rng.choice([0, 1, 0xFFFFFFFF, 0x7FFFFFFF,
                                                                  rng.randrange(1 << 32)]))
        else:  # shuffled region
            a = rng.randrange(8, len(data) - 64)
            region = data[a:a + 64]
            rng.shuffle(region)
            data[a:a + 64] = region
        path = c.out / f"fuzz_{i:02d}.tflite"
        path.write_bytes(bytes(data))
        c.case(f"fuzz_{i:02d}/inspect", ["inspect", path, "--json"], expect=(0, 2))
        if i % 6 == 0:
            c.case(f"fuzz_{i:02d}/estimate", ["estimate", path, "--device", "raspberry-pi-4"],
                   expect=(0, 2, 4))
            c.case(f"fuzz_{i:02d}/profile", ["profile", path, "--runs", "3", "--warmup", "0"],
                   expect=(0, 2, 3))
            c.case(f"fuzz_{i:02d}/check", ["check", path, "--target", "edgetpu"], expect=(0, 2))


def onnx_cases(c: Corpus) -> None:
    import onnx
    from onnx import TensorProto, helper

    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.0] * 16)
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("float_data")
    for key, value in (("location", "../../../../etc/passwd"), ("offset", "0"), ("length", "64")):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w])
    path = c.out / "escape.onnx"
    onnx.save(helper.make_model(graph), path)
    c.case("onnx_external_escape/profile", ["profile", path, "--runs", "3"], expect=(2, 3))
    c.case("onnx_external_escape/inspect", ["inspect", path], expect=(0, 2))
    good = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("MatMul", ["h", "w"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.5] * 16)]))
    blob = good.SerializeToString()
    rng = random.Random(SEED + 1)
    for i in range(16):
        data = bytearray(blob)
        for _ in range(rng.randrange(1, 12)):
            pos = rng.randrange(len(data))
            data[pos] = rng.randrange(256)
        if i % 4 == 3:
            data = data[: rng.randrange(2, len(data))]
        fuzz = c.out / f"fuzz_onnx_{i:02d}.onnx"
        fuzz.write_bytes(bytes(data))
        c.case(f"fuzz_onnx_{i:02d}/inspect", ["inspect", fuzz, "--json"], expect=(0, 2))
        if i % 4 == 0:
            c.case(f"fuzz_onnx_{i:02d}/profile", ["profile", fuzz, "--runs", "3", "--warmup", "0"],
                   expect=(0, 2, 3))


# --- bad arguments and outputs ---------------------------------------------------------------------

def usage_cases(c: Corpus, k3_base: Path) -> None:
    out = c.out / "outputs"
    one = c.out / "one_sample.npz"
    np.savez(one, x=np.zeros((1, 8, 8, 1), np.float32), y=np.zeros(1, np.int64))
    c.case("one_sample/compress", ["compress", k3_base, "--recipe", "int8-ptq", "--data", one, "-o",
                                   out / "one"], needle="too few", output=str(out / "one"))
    fed = c.out / "too_many_clients.yaml"
    fed.write_text(f"data: {c.out / 'small.npz'}\nclients: 50\nrounds: 1\n")
    np.savez(c.out / "small.npz", x=np.zeros((30, 8, 8), np.float32), y=np.arange(30) % 3)
    c.case("too_many_clients/federated", ["federated", "simulate", "--config", fed, "-o",
                                          out / "clients"], needle="clients", output=str(out / "clients"))
    c.case("mean_channels/convert", ["convert", k3_base, "--to", "tflite", "--data", "digits",
                                     "--resize", "8x8", "--mean", "0.1,0.2,0.3", "-o",
                                     out / "mean.tflite"], needle="--mean")
    c.case("cpus_99/profile", ["profile", c.out / "good.tflite", "--cpus", "99"], needle="CPU 99")
    c.case("accelerator_bogus/profile", ["profile", c.out / "good.tflite", "--accelerator", "bogus"],
           needle="unknown accelerator")
    c.case("custom_objects_missing/inspect", ["inspect", k3_base, "--custom-objects",
                                              c.out / "nope.py"], needle="not found")
    c.case("flag_bad_value/profile", ["profile", c.out / "good.tflite", "--runs", "-3"])
    c.case("flag_unknown/inspect", ["inspect", k3_base, "--no-such-flag"])
    c.case("debug_keeps_exit_code/inspect", ["inspect", c.out / "missing.keras", "--debug"])
    c.case("estimate_too_big/strict", ["estimate", c.out / "good.tflite", "--device",
                                       "coral-dev-board", "--strict"], expect=(0, 4))


def size_cases(c: Corpus) -> None:
    """Small files that declare tensors of many gigabytes.

    Random check inputs follow the declared shape, and LiteRT's arena holds the largest op's
    tensors: a 1 KB file made edgenn allocate 18 GB (or the kernel's out-of-memory killer end
    it). Each is refused in one line before anything that large is allocated.
    """
    import keras
    import onnx
    import tensorflow as tf
    from onnx import TensorProto, helper

    out = c.out / "outputs"

    def tflite(name, spec, body, declare=None):
        """``body`` converted at ``spec``; ``declare`` (small side -> declared side) then writes
        a larger size into every tensor of that size: the converter takes 45 s to convert a
        40000x40000 input itself, for the same file."""
        fn = tf.function(body, input_signature=[tf.TensorSpec(spec, tf.float32)])
        converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
        data = converter.convert()
        if declare:
            from tensorflow.lite.tools import flatbuffer_utils

            small, large = declare
            model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
            for tensor in model.subgraphs[0].tensors:
                if tensor.shape is not None and len(tensor.shape) == 4 and small in tensor.shape[1:3]:
                    tensor.shape = np.array([large if d == small else d for d in tensor.shape],
                                            dtype=np.int32)
            data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
        path = c.out / f"{name}.tflite"
        path.write_bytes(data)
        return path

    big = tflite("huge_input", [1, 7, 7, 3],
                 lambda x: tf.reduce_mean(tf.nn.relu(x * 2.0 + 1.0), axis=[1, 2]), declare=(7, 40000))
    arena = tflite("huge_arena", [1, 8, 8, 3], lambda x: tf.reduce_mean(tf.nn.relu(
        tf.image.resize(x * 2.0, [40000, 40000], method="nearest") + 1.0), axis=[1, 2]))
    c.case("huge_input_tflite/profile", ["profile", big, "--runs", "2"], expect=(3,), needle="GiB")
    c.case("huge_input_tflite/quantize", ["quantize", big, "--mode", "dynamic-int8", "-o",
                                          out / "huge_input.tflite"], needle="made-up inputs",
           output=str(out / "huge_input.tflite"))
    c.case("huge_arena_tflite/quantize", ["quantize", arena, "--mode", "dynamic-int8", "-o",
                                          out / "huge_arena.tflite"], expect=(3,),
           needle="to run once", output=str(out / "huge_arena.tflite"))
    c.case("huge_arena_tflite/profile", ["profile", arena, "--runs", "2"], expect=(3,))
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["h"]),
                               helper.make_node("ReduceMean", ["h"], ["y"], keepdims=0, axes=[2, 3])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                  [1, 3, 40000, 40000])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, c.out / "huge_input.onnx")
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 5000, 5000])
    graph = helper.make_graph([helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="nearest"),
                               helper.make_node("Relu", ["r"], ["h"]),
                               helper.make_node("ReduceMean", ["h"], ["y"], keepdims=0, axes=[2, 3])],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                  ["batch", 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
                              [scales])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, c.out / "huge_arena.onnx")
    c.case("huge_arena_onnx/quantize", ["quantize", c.out / "huge_arena.onnx", "--mode",
                                        "dynamic-int8", "-o", out / "huge_arena.onnx"], expect=(3,),
           needle="ran out of memory", output=str(out / "huge_arena.onnx"))
    c.case("huge_arena_onnx/profile", ["profile", c.out / "huge_arena.onnx", "--runs", "2"],
           expect=(3,), needle="out of memory")
    c.case("huge_input_onnx/profile", ["profile", c.out / "huge_input.onnx", "--runs", "2"],
           expect=(3,), needle="GiB")
    c.case("huge_input_onnx/quantize", ["quantize", c.out / "huge_input.onnx", "--mode",
                                        "dynamic-int8", "-o", out / "huge_input.onnx"],
           needle="made-up inputs", output=str(out / "huge_input.onnx"))
    inp = keras.Input((40000, 40000, 3), name="satellite")
    head = keras.layers.Dense(4, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inp))
    keras.Model(inp, head).save(c.out / "huge_input.keras")
    c.case("huge_input_keras/inspect", ["inspect", c.out / "huge_input.keras", "--json"], expect=(0,))
    c.case("huge_input_keras/convert", ["convert", c.out / "huge_input.keras", "--to", "onnx", "-o",
                                        out / "huge_input_keras.onnx"], needle="made-up inputs",
           output=str(out / "huge_input_keras.onnx"))


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "outputs").mkdir(exist_ok=True)
    c = Corpus(out)
    tf_keras_cases(c)
    k3_base = keras3_cases(c)
    savedmodel_cases(c)
    bomb_cases(c, k3_base)
    yaml_cases(c)
    tflite_cases(c, k3_base)
    onnx_cases(c)
    size_cases(c)
    usage_cases(c, k3_base)
    (out / "cases.json").write_text(json.dumps(c.cases, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""Tell a model file's format from its content, not its extension. No TensorFlow here."""

from __future__ import annotations

import json
import zipfile
import zlib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .. import limits
from ..errors import InputFileError, MissingDependencyError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
SUPPORTED = ".keras, .h5, a SavedModel folder, .tflite or .onnx"


class ModelFormat(str, Enum):
    keras_zip = "keras"  # the .keras archive (Keras 3 or tf_keras)
    h5 = "h5"
    savedmodel = "savedmodel"
    tflite = "tflite"
    onnx = "onnx"


@dataclass
class FormatInfo:
    """What a model file is, read without building the model."""

    path: Path
    format: ModelFormat
    keras_version: str | None = None  # "3.x" for Keras 3, "2.x" for tf_keras
    config: dict | None = None  # the Keras model config, when the file has one
    has_keras_metadata: bool = False  # SavedModel written by tf_keras (keras_metadata.pb)
    notes: list[str] = field(default_factory=list)

    @property
    def loss(self):
        """The loss the model was compiled with, as saved; None when it was not saved.

        A name, a serialized object, or one per output: read from the file, never built.
        """
        config = self.config if isinstance(self.config, dict) else {}
        compiled = config.get("compile_config") or config.get("training_config") or {}
        return compiled.get("loss") if isinstance(compiled, dict) else None

    @property
    def is_keras(self) -> bool:
        return self.format in (ModelFormat.keras_zip, ModelFormat.h5) or (
            self.format is ModelFormat.savedmodel and self.has_keras_metadata
        )

    @property
    def is_keras3(self) -> bool:
        return bool(self.keras_version and self.keras_version.startswith("3."))

    @property
    def label(self) -> str:
        if self.format in (ModelFormat.keras_zip, ModelFormat.h5):
            flavour = "Keras 3" if self.is_keras3 else "tf_keras"
            return f"{flavour} {self.format.value} (saved by Keras {self.keras_version})"
        if self.format is ModelFormat.savedmodel:
            return "SavedModel (tf_keras)" if self.has_keras_metadata else "SavedModel"
        return self.format.value


def detect(path: str | Path) -> FormatInfo:
    """Identify ``path``; raise InputFileError naming the problem for anything unusable."""
    p = Path(path)
    if not p.exists():
        raise InputFileError(f"model not found: {p}", "check the path")
    if p.is_dir():
        return _detect_savedmodel(p)
    size = p.stat().st_size
    if size == 0:
        raise InputFileError(f"{p} is empty (0 bytes)", f"pass a model file: {SUPPORTED}")
    with p.open("rb") as fh:
        head = fh.read(16)
    if head.startswith(ZIP_MAGIC):
        return _detect_keras_zip(p)
    if head.startswith(HDF5_MAGIC):
        return _detect_h5(p)
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return FormatInfo(p, ModelFormat.tflite)
    if p.suffix.lower() == ".onnx" or head[:1] == b"\x08":
        return _detect_onnx(p, head)
    raise InputFileError(
        f"{p} is not a model file edgenn recognises (first bytes {head[:8]!r})",
        f"pass {SUPPORTED}",
    )


def _detect_savedmodel(p: Path) -> FormatInfo:
    pb = p / "saved_model.pb"
    if not (pb.is_file() or (p / "saved_model.pbtxt").is_file()):
        raise InputFileError(
            f"{p} is a directory but not a SavedModel (no saved_model.pb inside)",
            f"pass a SavedModel folder or a model file: {SUPPORTED}",
        )
    if pb.is_file() and pb.stat().st_size == 0:
        raise InputFileError(f"{pb} is empty (0 bytes)", "save or copy the model again")
    info = FormatInfo(p, ModelFormat.savedmodel)
    meta = p / "keras_metadata.pb"
    if meta.is_file() and meta.stat().st_size > 0:
        info.has_keras_metadata = True
        info.keras_version = "2"
    return info


def parse_config(raw: bytes | str, where: str) -> dict:
    """A Keras config from JSON, with its size and nesting bounded."""
    if len(raw) > limits.MAX_CONFIG_BYTES:
        raise InputFileError(f"{where} is {len(raw):,} bytes; a Keras config is far smaller "
                             f"(edgenn reads at most {limits.MAX_CONFIG_BYTES:,})",
                             "this is not a config Keras writes; save the model again")
    try:
        config = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputFileError(f"{where} is not valid JSON ({err})", "save the model again") from None
    except RecursionError:
        raise InputFileError(f"{where} nests too deeply to read",
                             "this is not a config Keras writes; save the model again") from None
    if not isinstance(config, dict):
        raise InputFileError(f"{where} is not a Keras model config (a JSON {type(config).__name__})",
                             "save the model again")
    return config


def _detect_keras_zip(p: Path) -> FormatInfo:
    try:
        with zipfile.ZipFile(p) as zf:
            limits.check_zip(p, zf, ".keras archive")
            names = set(zf.namelist())
            if "config.json" not in names:
                raise InputFileError(
                    f"{p} is a zip archive without config.json, not a Keras .keras file",
                    "save the model with model.save('model.keras')",
                )
            size = zf.getinfo("config.json").file_size
            if size > limits.MAX_CONFIG_BYTES:
                raise InputFileError(f"{p}: config.json is {size:,} bytes; a Keras config is far "
                                     f"smaller (edgenn reads at most {limits.MAX_CONFIG_BYTES:,})",
                                     "this is not a config Keras writes; save the model again")
            config = parse_config(zf.read("config.json"), f"{p}: config.json")
            meta = {}
            if "metadata.json" in names and zf.getinfo("metadata.json").file_size < 1 << 20:
                meta = parse_config(zf.read("metadata.json"), f"{p}: metadata.json")
            weights = sorted(n for n in names
                             if n.endswith(".weights.h5") or n.endswith(".weights.npz"))
            bad = zf.testzip()
            if not bad:
                for name in weights:
                    _check_weights_member(p, zf, name)
    except zipfile.BadZipFile as err:
        raise InputFileError(
            f"{p} is a truncated or corrupt .keras archive ({err})", "save or copy the model again"
        ) from None
    except (OSError, EOFError, ValueError, NotImplementedError, RuntimeError,  # zlib, offsets,
            zipfile.LargeZipFile, zlib.error) as err:  # encrypted members
        raise InputFileError(f"{p} is a truncated or corrupt .keras archive ({type(err).__name__}: "
                             f"{' '.join(str(err).split())[:120]})", "save or copy the model again") from None
    if bad is not None:
        raise InputFileError(f"{p} is corrupt: member {bad} fails its CRC check",
                             "save or copy the model again")
    if not weights:
        raise InputFileError(f"{p} holds no weights file", "save the model with model.save()")
    version = str(meta.get("keras_version") or _guess_version(config))
    return FormatInfo(p, ModelFormat.keras_zip, keras_version=version, config=config)


def _check_weights_member(p: Path, zf: zipfile.ZipFile, name: str) -> None:
    """The weights file inside a .keras archive: its own declared sizes are bounded too."""
    packed = p.stat().st_size
    with zf.open(name) as member:
        if name.endswith(".npz"):
            with zipfile.ZipFile(member) as inner:
                limits.check_zip(p, inner, f"weights file {name}")
        else:
            limits.check_h5(p, member, f"weights file {name}", packed)


def _detect_h5(p: Path) -> FormatInfo:
    try:
        import h5py
    except ImportError:
        raise MissingDependencyError(
            "reading .h5 models needs h5py", "install the TensorFlow extra: pip install 'edgenn[tf]'"
        ) from None
    limits.check_h5(p, p, "HDF5 file")
    try:
        with h5py.File(p, "r") as f:
            raw = f.attrs.get("model_config")
            version = f.attrs.get("keras_version")
            training = f.attrs.get("training_config")
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as err:
        raise InputFileError(
            f"{p} is a truncated or corrupt HDF5 file ({' '.join(str(err).split())[:160]})",
            "save or copy the model again",
        ) from None
    if raw is None:
        raise InputFileError(
            f"{p} holds weights only (no model config)",
            "save the whole model with model.save('model.keras') or model.save('model.h5')",
        )
    if not isinstance(raw, (bytes, str)):
        raise InputFileError(f"{p}: the model config attribute is not text", "save the model again")
    if isinstance(version, bytes):
        version = version.decode("utf-8", "replace")
    config = parse_config(raw, f"{p}: the model config")
    if isinstance(training, (bytes, str)) and isinstance(config, dict) and len(training) < 1 << 20:
        try:  # what the model was compiled with: read for its loss's name only, never built
            config = {**config, "training_config": parse_config(training, f"{p}: training")}
        except InputFileError:
            pass
    return FormatInfo(p, ModelFormat.h5, keras_version=str(version or _guess_version(config)),
                      config=config)


def _detect_onnx(p: Path, head: bytes) -> FormatInfo:
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError(
            f"{p} looks like ONNX, and reading it needs the onnx package",
            "pip install 'edgenn[onnx]'",
        ) from None
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as err:  # protobuf raises DecodeError and others
        raise InputFileError(
            f"{p} is not a valid ONNX model ({type(err).__name__}: {' '.join(str(err).split())[:120]})",
            "export it again",
        ) from None
    if not model.graph.node and not model.graph.input:
        raise InputFileError(f"{p} is not a valid ONNX model (no graph)", "export it again")
    return FormatInfo(p, ModelFormat.onnx)


def _guess_version(config: dict) -> str:
    # Keras 3 configs carry a "module" key on every object; tf_keras configs do not.
    return "3" if isinstance(config, dict) and "module" in config else "2"

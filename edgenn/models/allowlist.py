"""What a model file may name without --allow-unsafe: data only, no TensorFlow imports.

Keras rebuilds a model by looking up every name its config holds: layer classes, activation
functions, initializers, and (tf_keras) TensorFlow API functions behind op layers, which it
calls while it rebuilds the graph. A name that is not on these lists is refused, however
harmless it may be, because the alternative (a denylist) fails open on the next file-writing
API. SavedModel graphs are checked op by op: a stateless op computes a value and nothing else,
so every registered stateless op is allowed except the few that read files or run Python; a
stateful op is allowed only from ``STATEFUL_OPS``.
"""

from __future__ import annotations

# --- Keras configs ---------------------------------------------------------------------------

# Keras layers that run code or read files named by the config, whatever the rest says.
CODE_LAYERS = {
    "Lambda": "its Python bytecode would run when the model loads",
    "TFSMLayer": "it loads another SavedModel from a path named in the config",
    "TorchModuleWrapper": "it unpickles a PyTorch module, which runs code",
    "JaxLayer": "it calls a Python function named in the config",
    "FlaxLayer": "it calls a Python function named in the config",
    "DenseFeatures": "its feature columns can name Python functions",
}

# Serialisation markers for plain data (tensors, arrays, slices): values, never code.
DATA_MARKERS = {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__",
                "__slice__", "__tuple__", "TensorShape"}
SAFE_TYPE_SPECS = {"TensorSpec", "RaggedTensorSpec", "SparseTensorSpec", "tf.TensorSpec",
                   "tf.RaggedTensorSpec", "tf.SparseTensorSpec"}

# Keras 3 activations that edgenn's bridge gives tf_keras copies, as tf_keras saves them
# (registered by models/bridge.py as "edgenn>NAME"; each calls Keras 3's own function).
BRIDGE_ACTIVATIONS = frozenset(f"edgenn>{name}" for name in (
    "hard_silu", "hard_swish", "hard_sigmoid", "silu", "leaky_relu", "relu6", "log_softmax", "celu",
    "glu", "hard_tanh", "log_sigmoid", "soft_shrink", "hard_shrink", "tanh_shrink", "squareplus",
    "sparse_plus", "sparse_sigmoid", "sparsemax", "threshold"))

# Layers of Keras 3's applications that tf_keras has no class for, rebuilt by edgenn's bridge
# (models/bridge.py) and registered with tf_keras under these names.
BRIDGE_LAYERS = frozenset({"edgenn>CustomScaleLayer", "edgenn>Keras3Layer"})
BRIDGE_MODULE = "edgenn.models.bridge"

# Config keys whose string value names a function or class Keras looks up.
CALLABLE_KEY_SUFFIXES = ("activation", "_initializer", "_regularizer", "_constraint")

# tf_keras op layers: TFOpLambda calls the TensorFlow API function its config names, on
# constants too, while the model is rebuilt. Allowed: pure tensor math.
TF_OP_NAMESPACES = ("math.", "nn.", "linalg.", "signal.", "image.", "bitwise.", "sparse.",
                    "__operators__.", "dtypes.")
TF_OP_FUNCTIONS = frozenset("""
abs acos acosh add add_n argmax argmin argsort asin asinh atan atan2 atanh batch_to_space
bitcast boolean_mask broadcast_dynamic_shape broadcast_static_shape broadcast_to cast ceil
clip_by_global_norm clip_by_norm clip_by_value complex concat constant convert_to_tensor cos cosh
cumprod cumsum depth_to_space divide dynamic_partition dynamic_stitch einsum ensure_shape equal
exp expand_dims eye fill floor floordiv gather gather_nd greater greater_equal
histogram_fixed_width identity identity_n imag less less_equal linspace log log_sigmoid
logical_and logical_not logical_or logical_xor matmul maximum meshgrid minimum mod multiply
negative no_op norm not_equal one_hot ones ones_like pad pow range rank real realdiv
reduce_all reduce_any reduce_logsumexp reduce_max reduce_mean reduce_min reduce_prod
reduce_sum repeat reshape reverse reverse_sequence roll round rsqrt
scatter_nd searchsorted sequence_mask shape shape_n sigmoid sign sin sinh size slice sort
space_to_batch space_to_batch_nd space_to_depth split sqrt square squared_difference squeeze
stack stop_gradient strided_slice subtract tan tanh tensor_scatter_nd_add
tensor_scatter_nd_max tensor_scatter_nd_min tensor_scatter_nd_sub tensor_scatter_nd_update
tensordot tile to_float to_int32 to_int64 transpose truediv truncatediv truncatemod unique
unravel_index unstack where zeros zeros_like
""".split())
# tf_keras InstanceProperty/InstanceMethod read an attribute of their input, ClassMethod calls
# a class's method: allowed for tensor attributes and the composite-tensor constructors only.
TENSOR_ATTRIBUTES = frozenset("""
shape dtype ndim values indices dense_shape flat_values row_splits nested_row_splits
row_lengths nested_row_lengths value_rowids nrows row_starts row_limits to_tensor
merge_dims with_values with_flat_values
""".split())
CLASS_METHODS = {"RaggedTensor": ("from_",), "SparseTensor": ("from_",)}
TF_KERAS_OP_LAYERS = {"TFOpLambda", "SlicingOpLambda", "TensorFlowOpLayer", "ClassMethod",
                      "InstanceMethod", "InstanceProperty"}

# Keras 3 records every `keras.ops` call on symbolic tensors as an operation in the functional
# config (`x + y`, a mask's `not_equal`/`any`, `ops.mean`...): tensor math, allowed from these
# modules of keras.src.ops, except the control-flow operations that call a Python function.
KERAS3_OP_MODULES = ("numpy", "nn", "math", "core", "image", "linalg")
CALLABLE_OPS = frozenset({"Map", "Scan", "AssociativeScan", "Switch", "WhileLoop", "Cond",
                          "VectorizedMap", "ForiLoop", "JVP", "CustomGradient"})

# Keras lookup layers read their vocabulary from a file when the config gives a path.
VOCABULARY_LAYERS = {"TextVectorization", "StringLookup", "IntegerLookup"}


# Inside the allowed namespaces, functions that take another function as an argument.
TF_OP_EXCLUDED = frozenset({"nn.raw_rnn", "nn.with_space_to_batch", "sparse.map_values"})


def tf_function_allowed(symbol: str) -> bool:
    """Whether a TFOpLambda may call the TensorFlow API function named ``symbol``."""
    name = symbol
    for prefix in ("compat.v1.", "compat.v2."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if name in TF_OP_EXCLUDED:
        return False
    if name in TF_OP_FUNCTIONS:
        return True
    return any(name.startswith(ns) and _plain(name[len(ns):]) for ns in TF_OP_NAMESPACES)


def _plain(rest: str) -> bool:
    # "math.add", "nn.relu", "image.resize", "__operators__.getitem"; no deeper reach-through
    # such as "math.io" and nothing that could name a module attribute chain.
    parts = rest.split(".")
    return all(p.replace("_", "").isalnum() for p in parts) and len(parts) <= 2


# --- SavedModel graphs -------------------------------------------------------------------------

# Registered ops that are stateless yet read files or run Python.
STATELESS_BUT_UNSAFE = {"PyFuncStateless", "ReadFile", "MatchingFiles", "ImmutableConst",
                        "DebugIdentity", "DebugNanCount", "DebugNumericSummary",
                        "DebugGradientIdentity", "DebugGradientRefIdentity", "DumpTensor"}

# Stateful ops an inference or training graph needs: variables, resources, tables, random
# numbers, control flow, tensor arrays, optimizers (on-device training signatures), asserts.
STATEFUL_OPS = frozenset("""
VarHandleOp _VarHandlesOp ReadVariableOp _ReadVariablesOp AssignVariableOp AssignAddVariableOp
AssignSubVariableOp VarIsInitializedOp VariableShape DestroyResourceOp Variable VariableV2
TemporaryVariable DisableCopyOnRead ResourceGather ResourceGatherNd ResourceScatterAdd
ResourceScatterSub ResourceScatterMul ResourceScatterDiv ResourceScatterMin ResourceScatterMax
ResourceScatterUpdate ResourceScatterNdAdd ResourceScatterNdSub ResourceScatterNdUpdate
ResourceScatterNdMax ResourceScatterNdMin ResourceStridedSliceAssign ResourceCountUpTo
StatefulPartitionedCall If While Case _If _While RiscWhile _Arg _Retval _DeviceArg _DeviceRetval
RestoreV2 Restore RestoreSlice Assert CheckNumerics CheckNumericsV2 GuaranteeConst Empty
HashTable HashTableV2 AnonymousHashTable MutableHashTable MutableHashTableV2
MutableHashTableOfTensors MutableHashTableOfTensorsV2 MutableDenseHashTable MutableDenseHashTableV2
AnonymousMutableHashTable AnonymousMutableHashTableOfTensors AnonymousMutableDenseHashTable
LookupTableFindV2 LookupTableImportV2 LookupTableExportV2 LookupTableInsertV2
LookupTableRemoveV2 LookupTableSizeV2 InitializeTableV2 InitializeTableFromTextFileV2
RandomUniform RandomUniformInt RandomStandardNormal TruncatedNormal RandomGamma RandomPoisson
RandomPoissonV2 RandomShuffle RandomCrop Multinomial ParameterizedTruncatedNormal
StatefulUniform StatefulUniformInt StatefulUniformFullInt StatefulStandardNormal
StatefulStandardNormalV2 StatefulTruncatedNormal StatefulRandomBinomial RngReadAndSkip RngSkip
StatelessRandomGetAlg NonDeterministicInts AnonymousSeedGenerator AnonymousRandomSeedGenerator
DummySeedGenerator DeleteSeedGenerator DeleteRandomSeedGenerator
TensorArrayV3 TensorArrayV2 TensorArray TensorArrayReadV3 TensorArrayWriteV3 TensorArrayGatherV3
TensorArrayScatterV3 TensorArrayConcatV3 TensorArraySplitV3 TensorArraySizeV3 TensorArrayCloseV3
TensorArrayGradV3 TensorArrayGradV2 TensorArrayGrad TensorArrayGradWithShape
Stack StackV2 StackPushV2 StackPopV2 StackCloseV2 MutexV2 MutexLock ConsumeMutexLock
ResourceApplyGradientDescent ResourceApplyMomentum ResourceApplyKerasMomentum ResourceApplyAdam
ResourceApplyAdamWithAmsgrad ResourceApplyAdaMax ResourceApplyAdagrad ResourceApplyAdagradV2
ResourceApplyAdadelta ResourceApplyRMSProp ResourceApplyCenteredRMSProp ResourceApplyFtrl
ResourceApplyFtrlV2 ResourceSparseApplyAdagrad ResourceSparseApplyAdagradV2
ResourceSparseApplyMomentum ResourceSparseApplyKerasMomentum ResourceSparseApplyRMSProp
CudnnRNN CudnnRNNV2 CudnnRNNV3 DeviceIndex IsTensorFloat32Enabled XlaCallModule
""".split())

# Ops that write checkpoint files: allowed only in the SavedModel's own save function, which
# nothing runs at load or inference time.
SAVE_OPS = frozenset({"SaveV2", "Save", "SaveSlices", "MergeV2Checkpoints"})
# Ops that call another Python function
PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})

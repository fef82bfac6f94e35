"""Scaling past one device with TensorFlow's own engine: strategies, mixed precision, XLA.

Taught in `03_fine_tuning` (its "Scale up" notes) and measured by `benchmarks/benchmark.py`.
Every course helper that builds or trains a model (`backbones.load`, `features.train_head`,
`features.train_in_model`, `finetune`, `scratch`, `digits`) does it inside `scope()` with
the batch size scaled by `global_batch_size`. The strategy is a `TPUStrategy` on a TPU runtime,
a `MirroredStrategy` on several GPUs and the default (one device) otherwise. The batch
size a notebook picks is per replica; `global_batch_size` scales it. Mixed precision is
on with a GPU (float16) or TPU (bfloat16) and off on a CPU; the classifier's output layer
always computes in float32, as Keras recommends. XLA (`jit_compile=True`) is an explicit
choice: Keras does not compile with XLA while TF op determinism (from `cl.setup`) is on, so
asking for it switches determinism off and says so.

    strat = cl.scale.strategy()
    cl.scale.use_mixed_precision()
    with strat.scope():
        model = cl.scale.build_classifier(cl.backbones.load("mobilenet_v2", size), num_classes=5,
                                          preprocess=cl.backbones.get("mobilenet_v2").preprocess_input)
        model.compile(..., **cl.scale.compile_kwargs())
    batch = cl.scale.global_batch_size(cfg.profile.batch_size, strat)
    model.fit(cl.data.pipeline(splits["train"], size, preprocess=None, batch_size=batch), ...)

Another strategy (e.g. on chosen devices): make it current with
`tf.distribute.experimental_set_strategy` before the first model is built; on one device or
none, the choice is the current strategy.
"""

from __future__ import annotations

import os

from course_lib import config

__all__ = ["POLICIES", "choose", "strategy", "scope", "describe", "global_batch_size", "policy_name",
           "use_mixed_precision", "compile_kwargs", "op_determinism", "output_layer", "build_classifier"]

POLICIES = {"gpu": "mixed_float16", "tpu": "mixed_bfloat16", "cpu": "float32"}
_STATE = {"auto": None}


def choose(n_gpus: int, tpu: bool) -> str:
    """The strategy kind for a machine: 'tpu', 'mirrored' (>1 GPU) or 'default'."""
    if tpu:
        return "tpu"
    return "mirrored" if n_gpus > 1 else "default"


def strategy(devices=None):
    """The `tf.distribute` strategy to build and train under (auto-chosen, made once)."""
    import tensorflow as tf

    if devices is not None:
        return tf.distribute.MirroredStrategy(devices=list(devices))
    if _STATE["auto"] is None:
        _STATE["auto"] = _auto_strategy()
    return _STATE["auto"]


def scope():
    """The scope to build and compile models in: `strategy().scope()`."""
    return strategy().scope()


def _auto_strategy():
    import tensorflow as tf

    kind = choose(len(tf.config.list_physical_devices("GPU")), config.accelerator() == "tpu")
    if kind == "tpu":
        resolver = _tpu_resolver()
        if resolver is not None:
            return tf.distribute.TPUStrategy(resolver)
        print("No TPU could be connected; training on the default device instead.")
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _tpu_resolver():
    """Connect to the runtime's TPU (Colab TPU VM or `TPU_NAME`), or None when none answers."""
    import tensorflow as tf

    tpu = os.environ.get("TPU_NAME") or ("" if os.environ.get("COLAB_TPU_ADDR") else "local")
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return resolver
    except (ValueError, RuntimeError, tf.errors.OpError) as exc:
        print(f"TPU runtime detected but not usable: {type(exc).__name__}: {exc}")
        return None


def describe(strat=None) -> str:
    """One line naming a strategy and its replicas, for a notebook's output."""
    strat = strat or strategy()
    name = type(strat).__name__
    name = "the default strategy (one device)" if name == "_DefaultDistributionStrategy" else name
    return f"{name} with {strat.num_replicas_in_sync} replica(s)"


def global_batch_size(per_replica: int, strat=None) -> int:
    """The batch size to feed `fit`: `per_replica` times the strategy's replicas."""
    n = config.as_int(per_replica)
    if n is None or n < 1:
        raise ValueError(f"per_replica must be a positive integer. Received: per_replica={per_replica!r}. "
                         "Fix: pass the batch size of one device, e.g. 32.")
    return n * (strat or strategy()).num_replicas_in_sync


def policy_name(enabled=None, device: str | None = None) -> str:
    """The Keras dtype policy for `enabled` (None: on with a GPU or TPU, off on a CPU)."""
    device = device or config.accelerator()
    if device not in POLICIES:
        raise ValueError(f"Unknown device. Received: device={device!r}. Allowed: {', '.join(POLICIES)}.")
    if enabled is None:
        enabled = device != "cpu"
    if not enabled:
        return "float32"
    return POLICIES["tpu"] if device == "tpu" else POLICIES["gpu"]


def use_mixed_precision(enabled=None) -> str:
    """Set Keras' global dtype policy (auto: mixed on GPU/TPU, float32 on CPU); returns its name."""
    import keras

    name = policy_name(enabled)
    keras.mixed_precision.set_global_policy(name)
    return name


def compile_kwargs(jit_compile=None) -> dict:
    """`Model.compile` options: XLA off on a CPU, Keras' 'auto' on GPU/TPU, or as given."""
    if jit_compile is None:
        jit_compile = False if config.accelerator() == "cpu" else "auto"
    if jit_compile not in (True, False, "auto"):
        raise ValueError(f"jit_compile must be True, False, 'auto' or None. Received: {jit_compile!r}.")
    if jit_compile is True and op_determinism():
        op_determinism(False)  # Keras silently drops jit_compile=True while determinism is on
        print("jit_compile=True: TensorFlow op determinism is now off (Keras does not compile with "
              "XLA while it is on), so a rerun may differ in the last digits.")
    return {"jit_compile": jit_compile}


def op_determinism(enabled=None) -> bool:
    """Whether TF op determinism (set by `cl.setup`) is on; pass a bool to switch it."""
    try:
        from tensorflow.python.framework import config as tf_config
    except ImportError:  # pragma: no cover - other TF layouts: treat as off
        return False
    if enabled is not None:
        (tf_config.enable_op_determinism if enabled else tf_config.disable_op_determinism)()
    return bool(tf_config.is_op_determinism_enabled())


def output_layer(num_classes: int, name: str = "predictions", **dense_kwargs):
    """The softmax classification layer, computed in float32 under any dtype policy."""
    import keras

    n = config.as_int(num_classes)
    if n is None or n < 2:
        raise ValueError(f"A classifier needs an integer num_classes >= 2. Received: num_classes={num_classes!r}. "
                         "Fix: pass the dataset's number of classes (e.g. len(ds.class_names)).")
    return keras.layers.Dense(n, activation="softmax", dtype="float32", name=name, **dense_kwargs)


def build_classifier(backbone, num_classes: int, *, dropout: float = 0.2, preprocess=None,
                     augment=None, name: str = "classifier"):
    """Images -> [augment] -> [preprocess] -> frozen-BN backbone -> dropout -> float32 softmax."""
    import keras

    inputs = keras.Input(backbone.input_shape[1:], name="images")
    x = inputs
    if augment is not None:
        x = augment(x)
    if preprocess is not None:
        x = keras.layers.Lambda(preprocess, name="preprocess")(x)
    # the Keras guide's convention; Keras 3's fit() overrides it (keras-team/keras#20285): only frozen
    # BatchNormalization layers keep their ImageNet statistics in training
    x = backbone(x, training=False)
    if len(x.shape) > 2:
        x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, output_layer(num_classes)(x), name=name)

"""Spectrally normalised dense, conv and embedding layers (Miyato et al. 2018).

BigGAN (Brock et al. 2019, BigGAN-PyTorch `layers.SN`) divides every weight of G
and D by an estimate of its largest singular value, obtained with one step of
power iteration per training call. This module reproduces that parametrisation:

* The weight is viewed as a matrix `W` of shape [K, N] whose columns are the N
  *outputs* of the layer (dense: kernel [in, out]; conv: kernel [kh, kw, in, out]
  reshaped to [kh*kw*in, out]; embedding: the table transposed, so N =
  num_embeddings exactly like BigGAN's `SNEmbedding`). The power-iteration vector
  `sn_u` has N entries.
* `training=True`: one power-iteration step from the stored `sn_u`
  (`v = normalize(W u)`, `u' = normalize(W^T v)`, `sigma = v^T W u'`); `sn_u` and
  `sn_sigma` are then stored. `u'` and `v` are constants for the gradient, `W` is
  not, exactly as in BigGAN-PyTorch.
* `training=False`: the same step from the stored `sn_u`, nothing is stored. The
  output is a deterministic function of the weights and the stored `u`, so
  inference is reproducible and an EMA copy of G is normalised by its own weights.
* `sn_mode="frozen"`: `sigma` is the stored `sn_sigma`, in training and inference,
  and `sn_u` is never touched. This is how a *slimmed* generator keeps exactly the
  function of the masked network it was cut from: slicing rows/columns out of `W`
  changes its largest singular value, so `ppcd_tf.slim` copies the sliced raw
  kernel together with the sigma the full layer used (see `spectral_sigma`), and the
  slim layer divides by that fixed number instead of renormalising.

`normalize(x) = x / max(||x||, sn_eps)` (`torch.nn.functional.normalize`).

Mixed precision (`ppcd_tf.precision`): the layers run with `autocast=False`, so
the kernel, `sn_u` and the power iteration are float32 whatever the policy; the
normalised kernel and the input are then cast to the layer's compute dtype
(bfloat16 / float16 under a mixed policy) for the conv / matmul itself.

The non-trainable `sn_u` / `sn_sigma` variables are `ON_READ` / `MEAN` like Keras
BatchNorm moving statistics, so each replica of a `tf.distribute` strategy updates
its own copy inside `strategy.run` and checkpoints store the replica mean.
"""

from __future__ import annotations

from typing import List

import tensorflow as tf
import tf_keras

__all__ = ["SN_MODES", "SNDense", "SNConv2D", "SNEmbedding", "SpectralNormLayer",
           "is_training", "spectral_norm_layers", "kernel_initializer", "INITS"]

SN_MODES = ("power_iteration", "frozen")
INITS = ("ortho", "N02", "glorot")


def kernel_initializer(init: str) -> tf_keras.initializers.Initializer:
  """BigGAN-PyTorch's weight-init styles (`G_init` / `D_init`) as Keras initializers.

  "ortho" (BigGAN's default) is an orthogonal matrix per kernel, flattened to
  [k*k*in, out]; "N02" is N(0, 0.02); "glorot" is Glorot-uniform.
  """
  if init == "ortho":
    return tf_keras.initializers.Orthogonal()
  if init == "N02":
    return tf_keras.initializers.RandomNormal(stddev=0.02)
  if init == "glorot":
    return tf_keras.initializers.GlorotUniform()
  raise ValueError(f"init={init!r} must be one of {INITS}.")


def is_training(training) -> bool:
  """Turns a Keras `training` argument (None, bool or constant tensor) into a bool.

  Raises:
    TypeError: `training` is a symbolic tensor whose value is unknown at trace time
      (the layers below branch in Python on it).
  """
  if training is None:
    return False
  if tf.is_tensor(training):
    value = tf.get_static_value(training)
    if value is None:
      raise TypeError("training must be a Python bool or a constant, not a symbolic "
                      "tensor; trace one function per mode instead.")
    return bool(value)
  return bool(training)


def _fresh_initializer(identifier) -> tf_keras.initializers.Initializer:
  # A Keras initializer instance returns the same values on every call when it is
  # unseeded, so every layer gets its own copy of a shared instance.
  init = tf_keras.initializers.get(identifier)
  return init.__class__.from_config(init.get_config())


def _normalize(x: tf.Tensor, eps: float) -> tf.Tensor:
  # x * rsqrt(max(sum x^2, eps^2)) == x / max(||x||, eps), like torch's F.normalize.
  return tf.math.l2_normalize(x, epsilon=eps * eps)


class SpectralNormLayer(tf_keras.layers.Layer):
  """Base class: owns `sn_u` / `sn_sigma` and turns a raw kernel into W / sigma.

  Subclasses create their raw weight, call `_add_spectral_norm(num_outputs)` in
  `build`, and implement `_weight_matrix()` returning the [K, N] view described in
  the module docstring.

  Args:
    sn_eps: epsilon of the vector normalisation in the power iteration.
    sn_mode: "power_iteration" (BigGAN) or "frozen" (divide by the stored sigma;
      used by slimmed generators).
  """

  def __init__(self, sn_eps: float = 1e-6, sn_mode: str = "power_iteration", **kwargs):
    # float32 weights and power iteration under any policy; `_compute` casts.
    kwargs.setdefault("autocast", False)
    super().__init__(**kwargs)
    if sn_mode not in SN_MODES:
      raise ValueError(f"sn_mode={sn_mode!r} must be one of {SN_MODES}.")
    if not sn_eps > 0:
      raise ValueError(f"sn_eps={sn_eps} must be > 0.")
    self.sn_eps = float(sn_eps)
    self.sn_mode = sn_mode
    # Set by ppcd_tf.qat on SNConv2D / SNDense: fake quant of input, weight, bias, output.
    self.quant = None

  def _add_spectral_norm(self, num_outputs: int) -> None:
    sync = dict(synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.MEAN, trainable=False)
    self.sn_u = self.add_weight(
        "sn_u", shape=[num_outputs],
        initializer=tf_keras.initializers.RandomNormal(stddev=1.0), **sync)
    self.sn_sigma = self.add_weight("sn_sigma", shape=[], initializer="ones", **sync)

  def _weight_matrix(self) -> tf.Tensor:
    raise NotImplementedError

  def _raw_weight(self) -> tf.Variable:
    raise NotImplementedError

  def get_prunable_weights(self) -> List[tf.Variable]:
    """The raw weight: what tfmot magnitude pruning masks (its `PrunableLayer` protocol).

    Used by the magnitude-pruning baseline (`ppcd_tf.baselines`); tfmot wraps any
    layer that has this method.
    """
    return [self._raw_weight()]

  def spectral_sigma(self, training=False) -> tf.Tensor:
    """The sigma this layer divides by for the given mode (see module docstring).

    With `training=True` (and not frozen) this also stores the new `sn_u` and
    `sn_sigma`. `ppcd_tf.slim` calls it with `training=False` to freeze exactly the
    value that the masked network's inference uses.
    """
    if self.sn_mode == "frozen":
      return tf.convert_to_tensor(self.sn_sigma)
    w = self._weight_matrix()
    u = tf.convert_to_tensor(self.sn_u)
    w_const = tf.stop_gradient(w)
    v = _normalize(tf.linalg.matvec(w_const, u), self.sn_eps)
    u_new = _normalize(tf.linalg.matvec(w_const, v, transpose_a=True), self.sn_eps)
    v, u_new = tf.stop_gradient(v), tf.stop_gradient(u_new)
    sigma = tf.tensordot(v, tf.linalg.matvec(w, u_new), axes=1)
    if is_training(training):
      self.sn_u.assign(u_new)
      self.sn_sigma.assign(tf.stop_gradient(sigma))
    return sigma

  def normalized_weight(self, training=False) -> tf.Tensor:
    """The raw weight (in its layer layout) divided by `spectral_sigma(training)`, float32."""
    return self._raw_weight() / self.spectral_sigma(training)

  def _compute(self, x) -> tf.Tensor:
    """`x` in the layer's compute dtype (float32 unless a mixed policy is active)."""
    return tf.cast(x, self.compute_dtype)

  def get_config(self):
    config = super().get_config()
    config.update(sn_eps=self.sn_eps, sn_mode=self.sn_mode)
    return config


class SNDense(SpectralNormLayer):
  """Dense layer `x @ (W / sigma) + b` (BigGAN `SNLinear`), orthogonal init.

  Args:
    units: output features.
    use_bias: add a bias (BigGAN's CBN gain/bias projections have none).
    kernel_initializer: Keras initializer for the [in, units] kernel.
  """

  def __init__(self, units: int, use_bias: bool = True,
               kernel_initializer="orthogonal", **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.use_bias = bool(use_bias)
    self.kernel_initializer = _fresh_initializer(kernel_initializer)

  def build(self, input_shape):
    in_dim = int(input_shape[-1])
    self.kernel = self.add_weight("kernel", shape=[in_dim, self.units],
                                  initializer=self.kernel_initializer, trainable=True)
    self.bias = (self.add_weight("bias", shape=[self.units], initializer="zeros",
                                 trainable=True) if self.use_bias else None)
    self._add_spectral_norm(self.units)
    super().build(input_shape)

  def _raw_weight(self):
    return self.kernel

  def _weight_matrix(self):
    return tf.convert_to_tensor(self.kernel)

  def call(self, inputs, training=None):
    x, kernel = self._compute(inputs), self._compute(self.normalized_weight(training))
    bias = None if self.bias is None else self._compute(self.bias)
    if self.quant is not None:
      x, kernel, bias = self.quant.inputs(x, kernel, bias)
    out = tf.matmul(x, kernel)
    if bias is not None:
      out = out + bias
    return out if self.quant is None else self.quant.output(out)

  def get_config(self):
    config = super().get_config()
    config.update(units=self.units, use_bias=self.use_bias,
                  kernel_initializer=tf_keras.initializers.serialize(
                      self.kernel_initializer))
    return config


class SNConv2D(SpectralNormLayer):
  """Stride-1 'same' NHWC convolution with a spectrally normalised kernel.

  Args:
    filters: output channels.
    kernel_size: square kernel size (BigGAN: 3 for block convs, 1 for shortcut and
      attention convs).
    use_bias: add a per-channel bias (BigGAN attention convs have none).
    kernel_initializer: Keras initializer for the [k, k, in, filters] kernel.
  """

  def __init__(self, filters: int, kernel_size: int = 3, use_bias: bool = True,
               kernel_initializer="orthogonal", **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.kernel_size = int(kernel_size)
    self.use_bias = bool(use_bias)
    self.kernel_initializer = _fresh_initializer(kernel_initializer)

  def build(self, input_shape):
    in_ch = int(input_shape[-1])
    k = self.kernel_size
    self.kernel = self.add_weight("kernel", shape=[k, k, in_ch, self.filters],
                                  initializer=self.kernel_initializer, trainable=True)
    self.bias = (self.add_weight("bias", shape=[self.filters], initializer="zeros",
                                 trainable=True) if self.use_bias else None)
    self._add_spectral_norm(self.filters)
    super().build(input_shape)

  def _raw_weight(self):
    return self.kernel

  def _weight_matrix(self):
    return tf.reshape(self.kernel, [-1, self.filters])

  def call(self, inputs, training=None):
    x, kernel = self._compute(inputs), self._compute(self.normalized_weight(training))
    bias = None if self.bias is None else self._compute(self.bias)
    if self.quant is not None:
      x, kernel, bias = self.quant.inputs(x, kernel, bias)
    out = tf.nn.conv2d(x, kernel, strides=1, padding="SAME")
    if bias is not None:
      out = tf.nn.bias_add(out, bias)
    return out if self.quant is None else self.quant.output(out)

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, kernel_size=self.kernel_size,
                  use_bias=self.use_bias,
                  kernel_initializer=tf_keras.initializers.serialize(
                      self.kernel_initializer))
    return config


class SNEmbedding(SpectralNormLayer):
  """Class embedding table with spectral norm (BigGAN D's projection `embed`).

  `sn_u` has `num_embeddings` entries like BigGAN-PyTorch's `SNEmbedding`, which
  normalises the [num_embeddings, dim] table as a matrix.

  Args:
    num_embeddings: number of classes.
    output_dim: embedding size.
  """

  def __init__(self, num_embeddings: int, output_dim: int,
               embeddings_initializer="orthogonal", **kwargs):
    super().__init__(**kwargs)
    self.num_embeddings = int(num_embeddings)
    self.output_dim = int(output_dim)
    self.embeddings_initializer = _fresh_initializer(embeddings_initializer)

  def build(self, input_shape):
    self.embeddings = self.add_weight(
        "embeddings", shape=[self.num_embeddings, self.output_dim],
        initializer=self.embeddings_initializer, trainable=True)
    self._add_spectral_norm(self.num_embeddings)
    super().build(input_shape)

  def _raw_weight(self):
    return self.embeddings

  def _weight_matrix(self):
    return tf.transpose(self.embeddings)

  def call(self, inputs, training=None):
    ids = tf.cast(inputs, tf.int32)
    return self._compute(tf.gather(self.normalized_weight(training), ids))

  def get_config(self):
    config = super().get_config()
    config.update(num_embeddings=self.num_embeddings, output_dim=self.output_dim,
                  embeddings_initializer=tf_keras.initializers.serialize(
                      self.embeddings_initializer))
    return config


def spectral_norm_layers(model: tf_keras.layers.Layer) -> List[SpectralNormLayer]:
  """All SpectralNormLayer instances inside `model` (depth first, deduplicated)."""
  seen, out = set(), []
  # pylint: disable-next=protected-access
  for layer in model._flatten_layers(include_self=True, recursive=True):
    if isinstance(layer, SpectralNormLayer) and id(layer) not in seen:
      seen.add(id(layer))
      out.append(layer)
  return out


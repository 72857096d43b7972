"""The copy of a generator that gets exported: slimmed, spectral norm frozen, wrapped in
the serving module whose traced function every format is converted from.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from ppcd_tf import flops
from ppcd_tf import slim
from ppcd_tf.export.common import ExportError, IMAGE_NAME, LABEL_NAME, Z_NAME, _spec_of
from ppcd_tf.generator import Generator
from ppcd_tf.layers.spectral_norm import spectral_norm_layers


def inference_generator(generator):
  """Returns the dense, frozen-spectral-norm copy of `generator` that gets exported.

  `ppcd_tf.slim.slim_generator` does the work for masked and unmasked generators
  alike: masks and pruned channels go (the slim model computes exactly the masked
  function), every spectral-norm layer runs in `sn_mode="frozen"` with `sn_sigma`
  set to the sigma the source uses at inference, so `sn_u` is no longer read. The
  copy is named "generator".

  Objects that are not ppcd_tf Generators (e.g. `SavedModelGenerator`) are
  returned unchanged: they are already inference-only.

  Raises:
    ExportError: the result still has masks or live power iteration.
  """
  if not isinstance(generator, Generator):
    if getattr(generator, "masks", None):
      raise ExportError(f"{type(generator).__name__} has mask layers; slim it first "
                        "(ppcd_tf.slim.slim_generator).")
    return generator
  copy = slim.slim_generator(generator, name="generator")
  live_power_iteration = [layer.name for layer in spectral_norm_layers(copy)
                          if layer.sn_mode != "frozen"]
  if copy.masks or live_power_iteration:
    raise ExportError("slim_generator returned a model with masks or power-iteration "
                      f"spectral norm ({live_power_iteration[:3]}); cannot export it.")
  return copy


def _param_count(generator, variables: Sequence[tf.Variable]) -> int:
  """Trainable parameters (ppcd_tf.flops convention: no BN statistics or sigmas)."""
  if isinstance(generator, tf_keras.Model):
    return int(sum(np.prod(v.shape) for v in generator.trainable_variables))
  skip = ("moving_mean", "moving_variance", "sn_sigma")
  return int(sum(np.prod(v.shape) for v in variables if not any(s in v.name for s in skip)))


def _macs_per_image(generator) -> Optional[int]:
  if not isinstance(generator, Generator):
    return None
  return int(flops.count_generator(generator).total_macs)


class _ServingModule(tf.__internal__.tracking.AutoTrackable):
  """What gets saved: the serving function and exactly the variables it reads.

  An AutoTrackable (not the Keras model) is the root, so nothing but the
  `variables` list and the functions is tracked. It is not a `tf.Module`, whose
  read-only `variables` property would force another attribute name: this way
  the loaded object has `.variables` like a loaded Keras model.
  """


def _serving_module(generator, batch: Optional[int] = None):
  """Builds (module, concrete_function, inference_copy, spec) for one batch size."""
  spec = _spec_of(generator)
  gen = inference_generator(generator)

  @tf.function(input_signature=[
      tf.TensorSpec([batch, spec.z_dim], tf.float32, name=Z_NAME),
      tf.TensorSpec([batch], tf.int32, name=LABEL_NAME)])
  def serve(z, class_id):
    return {IMAGE_NAME: tf.cast(gen((z, class_id), training=False), tf.float32)}

  concrete = serve.get_concrete_function()
  info = {k: tf.constant(v, tf.int32) for k, v in spec.to_dict().items()}
  module = _ServingModule()
  module.variables = sorted(concrete.variables, key=lambda v: v.name)
  module.serve = serve
  module.model_info = tf.function(lambda: dict(info), input_signature=[])
  return module, concrete, gen, spec

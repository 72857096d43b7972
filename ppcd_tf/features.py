"""Feature extractors for the metrics, chosen by name from a small registry.

An extractor maps images to (features, logits): features feed FID / KID /
intra-FID (`ppcd_tf.metrics`), logits feed the Inception Score and class accuracy.

    extractor = get_extractor("classifier:runs/mnist_classifier")
    features, logits = extractor(images)   # images float NHWC in [-1, 1]

Names are `<kind>:<argument>`:
  * `classifier:<dir>`  our own classifier (`python -m ppcd_tf.train_classifier`):
    penultimate-layer features and class logits. The default for offline datasets.
  * `inception:<path>`  InceptionV3 pool3 features (2048-d) and ImageNet logits, from
    a LOCAL file, since nothing can be downloaded at run time:
      - a Keras weights file (`inception_v3_weights_tf_dim_ordering_tf_kernels.h5`)
        loaded into `tf_keras.applications.InceptionV3`: 1000 logits in the
        Keras/ImageNet class order;
      - a directory holding the TF-GAN Inception TF-Hub module (SavedModel or TF1
        Hub format, loaded with `tensorflow_hub.load`), whose outputs `pool_3` and
        `logits` (1008 classes) are the features TF-GAN's FID/IS use.

Every extractor resizes inputs to its own resolution (bilinear; area-style
antialiasing when shrinking), converts grayscale to RGB or RGB to grayscale as
its network needs, clips to [-1, 1], runs in batches inside a `tf.function`, and
returns float64 numpy arrays. `register_extractor` adds new kinds.
"""

from __future__ import annotations

import os
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

__all__ = [
    "FeatureExtractor", "FeatureExtractorError", "register_extractor", "get_extractor",
    "available_extractors", "InceptionExtractor", "ClassifierExtractor",
    "KERAS_INCEPTION_WEIGHTS_FILE", "KERAS_INCEPTION_WEIGHTS_URL", "TFGAN_INCEPTION_URL",
    "INCEPTION_RESOLUTION",
]

INCEPTION_RESOLUTION = 299
KERAS_INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
KERAS_INCEPTION_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
    + KERAS_INCEPTION_WEIGHTS_FILE)
TFGAN_INCEPTION_URL = "https://tfhub.dev/tensorflow/tfgan/eval/inception/1"


class FeatureExtractorError(ValueError):
  """An extractor name is unknown or its model files are missing or unusable."""


class FeatureExtractor:
  """Base class: batching, resizing and channel handling around a network.

  Subclasses set `name`, `resolution`, `channels`, `feature_dim`, `num_classes`,
  `label_aligned` and `fingerprint`, and implement `_forward(images)` on a float32
  tensor already at [N, resolution, resolution, channels].

  Attributes:
    name: the registry name it was built from (e.g. "classifier:runs/clf").
    resolution: input size in pixels the network expects.
    channels: input channels the network expects (1 or 3).
    feature_dim: D of the features.
    num_classes: K of the logits.
    label_aligned: True when logit index k means dataset class k (our classifier,
      Keras ImageNet order); class accuracy is only meaningful then.
    fingerprint: a string that changes when the underlying weights change; part of
      the reference-statistics cache key (`ppcd_tf.evaluation`).
    batch_size: images per forward pass.
  """

  name: str = ""
  resolution: int = 0
  channels: int = 3
  feature_dim: int = 0
  num_classes: int = 0
  label_aligned: bool = False
  fingerprint: str = ""

  def __init__(self, batch_size: int = 100):
    if batch_size < 1:
      raise FeatureExtractorError(f"batch_size={batch_size} must be >= 1.")
    self.batch_size = batch_size
    self._compiled = tf.function(self._preprocess_and_forward)

  def _forward(self, images: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    raise NotImplementedError

  def preprocess(self, images: tf.Tensor) -> tf.Tensor:
    """Resizes / converts [N, H, W, C] images in [-1, 1] to the network's input."""
    x = tf.cast(images, tf.float32)
    c = x.shape[-1]
    if c == 1 and self.channels == 3:
      x = tf.repeat(x, 3, axis=-1)
    elif c == 3 and self.channels == 1:
      x = tf.reduce_mean(x, axis=-1, keepdims=True)
    h, w = x.shape[1], x.shape[2]
    if h != self.resolution or w != self.resolution:
      shrinking = h is not None and w is not None and max(h, w) > self.resolution
      x = tf.image.resize(x, [self.resolution, self.resolution], method="bilinear",
                          antialias=shrinking)
    return tf.clip_by_value(x, -1.0, 1.0)

  def _preprocess_and_forward(self, images: tf.Tensor):
    return self._forward(self.preprocess(images))

  def __call__(self, images, batch_size: Optional[int] = None
               ) -> Tuple[np.ndarray, np.ndarray]:
    """Features and logits of images.

    Args:
      images: [N, H, W, C] float in [-1, 1], C in {1, 3}, any H, W (resized).
      batch_size: override of `self.batch_size`.

    Returns:
      (features [N, feature_dim] float64, logits [N, num_classes] float64).

    Raises:
      FeatureExtractorError: images are not NHWC with 1 or 3 channels.
    """
    x = images.numpy() if isinstance(images, tf.Tensor) else np.asarray(images)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
      raise FeatureExtractorError(
          f"{self.name}: images must be [N, H, W, C] with C in (1, 3); got {x.shape}.")
    bs = min(batch_size or self.batch_size, max(1, x.shape[0]))
    feats, logits = [], []
    for start in range(0, x.shape[0], bs):
      batch = x[start:start + bs].astype(np.float32)
      n = batch.shape[0]
      if n < bs:  # pad the last batch: one traced shape per input size, not two
        batch = np.concatenate([batch, np.zeros((bs - n,) + batch.shape[1:], np.float32)])
      f, l = self._compiled(tf.constant(batch))
      feats.append(np.asarray(f, np.float64).reshape(bs, -1)[:n])
      logits.append(np.asarray(l, np.float64).reshape(bs, -1)[:n])
    if not feats:
      return (np.zeros((0, self.feature_dim), np.float64),
              np.zeros((0, self.num_classes), np.float64))
    return np.concatenate(feats), np.concatenate(logits)

  def __repr__(self) -> str:
    return (f"{type(self).__name__}(name={self.name!r}, resolution={self.resolution}, "
            f"feature_dim={self.feature_dim}, num_classes={self.num_classes})")


def _file_fingerprint(path: str) -> str:
  """Cheap change detector: size and mtime of a file, or of every file in a dir."""
  paths = [path]
  if os.path.isdir(path):
    paths = sorted(os.path.join(root, f) for root, _, files in os.walk(path)
                   for f in files)
  parts = []
  for p in paths:
    st = os.stat(p)
    parts.append(f"{os.path.relpath(p, path) if p != path else ''}:{st.st_size}:"
                 f"{st.st_mtime_ns}")
  return "|".join(parts)


def _missing_inception_message(path: str) -> str:
  return (
      f"inception:{path}: no such file or directory. Nothing can be downloaded at "
      "run time on this machine, so InceptionV3 must be a local file. On a machine "
      "with internet access, download ONE of:\n"
      f"  (a) the Keras InceptionV3 ImageNet weights '{KERAS_INCEPTION_WEIGHTS_FILE}' "
      f"(~92 MB, with the classification top, not the '_notop' file) from\n"
      f"      {KERAS_INCEPTION_WEIGHTS_URL}\n"
      f"      then copy it here and pass --extractor=inception:/path/to/"
      f"{KERAS_INCEPTION_WEIGHTS_FILE};\n"
      f"  (b) the TF-GAN Inception TF-Hub module {TFGAN_INCEPTION_URL} "
      "(append '?tf-hub-format=compressed' to get a .tar.gz; also on Kaggle Models "
      "as tensorflow/tfgan/eval/inception), extract it into a directory "
      "(e.g. models/tfgan_inception/ containing saved_model.pb or tfhub_module.pb) "
      "and pass --extractor=inception:models/tfgan_inception.")


class InceptionExtractor(FeatureExtractor):
  """InceptionV3 pool3 (2048-d) features and logits from a local model file.

  Szegedy et al., "Rethinking the Inception Architecture for Computer Vision"
  (CVPR 2016) is the network of the FID / IS papers. Inputs are resized to
  299x299 RGB in [-1, 1], which is what both the Keras weights
  (`preprocess_input` 'tf' mode) and the TF-GAN module expect. Resizing differs
  from TF-GAN's legacy `resize_bilinear`, so values are comparable within this
  project, not digit-for-digit with published tables.
  """

  def __init__(self, path: str, batch_size: int = 50):
    super().__init__(batch_size)
    self.name = f"inception:{path}"
    self.resolution = INCEPTION_RESOLUTION
    self.channels = 3
    if not path or not os.path.exists(path):
      raise FeatureExtractorError(_missing_inception_message(path))
    self.fingerprint = _file_fingerprint(path)
    if os.path.isdir(path):
      self._load_hub_module(path)
    else:
      self._load_keras_weights(path)

  def _load_keras_weights(self, path: str) -> None:
    import h5py  # a tensorflow dependency; checking first avoids a 3 s model build
    if not h5py.is_hdf5(path):
      raise FeatureExtractorError(
          f"inception:{path} is not an HDF5 Keras weights file. Use "
          f"'{KERAS_INCEPTION_WEIGHTS_FILE}' (not the '_notop' variant) from "
          f"{KERAS_INCEPTION_WEIGHTS_URL}, or a TF-Hub module directory.")
    try:
      base = tf_keras.applications.InceptionV3(
          include_top=True, weights=path, classifier_activation=None)
    except (ValueError, OSError) as e:
      raise FeatureExtractorError(
          f"inception:{path} could not be loaded as Keras InceptionV3 weights with the "
          f"classification top ({e}). Use '{KERAS_INCEPTION_WEIGHTS_FILE}' (not the "
          f"'_notop' variant) from {KERAS_INCEPTION_WEIGHTS_URL}.") from e
    self._model = tf_keras.Model(base.input,
                                 [base.get_layer("avg_pool").output, base.output])
    self.feature_dim = int(self._model.outputs[0].shape[-1])
    self.num_classes = int(self._model.outputs[1].shape[-1])
    self.label_aligned = True
    self._forward = lambda x: self._model(x, training=False)

  def _load_hub_module(self, path: str) -> None:
    import tensorflow_hub as hub  # imported late: only this format needs it
    try:
      module = hub.load(path)
    except Exception as e:  # hub raises several types for unreadable directories
      raise FeatureExtractorError(
          f"inception:{path} is a directory but not a loadable SavedModel / TF-Hub "
          f"module ({type(e).__name__}: {e}).\n" + _missing_inception_message(path)) from e
    probe = module(tf.zeros([1, self.resolution, self.resolution, 3], tf.float32))
    if not isinstance(probe, dict) or not {"pool_3", "logits"} <= set(probe):
      keys = sorted(probe) if isinstance(probe, dict) else type(probe).__name__
      raise FeatureExtractorError(
          f"inception:{path} outputs {keys}; expected a dict with 'pool_3' and 'logits' "
          f"like the TF-GAN module {TFGAN_INCEPTION_URL}.")
    self._module = module
    self.feature_dim = int(np.prod(probe["pool_3"].shape[1:]))
    self.num_classes = int(np.prod(probe["logits"].shape[1:]))
    self.label_aligned = False  # 1008 logits, index 0 = background: not dataset ids

    def forward(x):
      out = self._module(x)
      n = tf.shape(x)[0]
      return tf.reshape(out["pool_3"], [n, -1]), tf.reshape(out["logits"], [n, -1])
    self._forward = forward


class ClassifierExtractor(FeatureExtractor):
  """Features (penultimate layer) and logits of our own dataset classifier."""

  def __init__(self, path: str, batch_size: int = 250):
    super().__init__(batch_size)
    from ppcd_tf import classifier as classifier_lib
    self.name = f"classifier:{path}"
    try:
      self._model, cfg = classifier_lib.load_classifier(path)
    except classifier_lib.ClassifierError as e:
      raise FeatureExtractorError(str(e)) from e
    self.config = cfg
    self.resolution = cfg.resolution
    self.channels = cfg.image_channels
    self.feature_dim = cfg.feature_dim
    self.num_classes = cfg.num_classes
    self.label_aligned = True
    self.fingerprint = _file_fingerprint(
        os.path.join(path, classifier_lib.WEIGHTS_FILE))

  def _forward(self, images):
    features, logits = self._model(images, training=False)
    return features, logits


_REGISTRY: Dict[str, Callable[[str], FeatureExtractor]] = {
    "classifier": ClassifierExtractor,
    "inception": InceptionExtractor,
}


def register_extractor(kind: str, factory: Callable[[str], FeatureExtractor]) -> None:
  """Adds an extractor kind: `get_extractor(f"{kind}:{arg}")` calls `factory(arg)`.

  Raises:
    FeatureExtractorError: `kind` is empty, contains ':' or is already registered.
  """
  if not kind or ":" in kind:
    raise FeatureExtractorError(f"extractor kind {kind!r} must be non-empty without ':'.")
  if kind in _REGISTRY:
    raise FeatureExtractorError(f"extractor kind {kind!r} is already registered.")
  _REGISTRY[kind] = factory


def available_extractors() -> List[str]:
  """Registered kinds, e.g. ['classifier', 'inception']."""
  return sorted(_REGISTRY)


def get_extractor(name: str) -> FeatureExtractor:
  """Builds the extractor `<kind>:<argument>` (see the module docstring).

  Args:
    name: e.g. "classifier:runs/mnist_classifier" or
      "inception:models/inception_v3_weights_tf_dim_ordering_tf_kernels.h5".

  Returns:
    A `FeatureExtractor`; calling it returns float64 (features, logits).

  Raises:
    FeatureExtractorError: malformed name, unknown kind, or model files missing
      (the message says what to download / train and where to put it).
  """
  kind, sep, arg = (name or "").partition(":")
  if not sep or not arg:
    raise FeatureExtractorError(
        f"extractor name {name!r} must look like '<kind>:<path>' with kind in "
        f"{available_extractors()}, e.g. 'classifier:runs/mnist_classifier'.")
  if kind not in _REGISTRY:
    raise FeatureExtractorError(f"unknown extractor kind {kind!r} in {name!r}; known: "
                                f"{available_extractors()}.")
  extractor = _REGISTRY[kind](arg)
  extractor.name = name
  return extractor

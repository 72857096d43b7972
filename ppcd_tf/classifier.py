"""A small CNN classifier of the training data, used as the metrics' feature network.

Offline datasets (mnist5k, folders, prepared tfds sets) have no downloadable
Inception network here, so FID/IS/KID/intra-FID/class accuracy use features of a
classifier we train on the same data (METHOD.md, "How we judge it"). Its
penultimate layer (`features`, ReLU) plays the role of Inception's pool3 and its
`logits` layer the role of Inception's logits.

Conventions: inputs float32 NHWC in [-1, 1] at the dataset's resolution and
channel count; labels int32 in [0, num_classes).

A classifier directory (written by `train_classifier`, read by `load_classifier`
and by the `classifier:<dir>` feature extractor) holds:
  weights.h5        tf_keras weights of `build_classifier(config)`
  config.json       `ClassifierConfig` + the dataset it was trained on
  classifier.json   held-out accuracy, training settings, wall time (provenance)
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras

from ppcd_tf import files

__all__ = [
    "ClassifierConfig", "ClassifierTrainConfig", "ClassifierError", "build_classifier",
    "fit_classifier", "train_classifier", "save_classifier", "load_classifier",
    "WEIGHTS_FILE", "CONFIG_FILE", "RESULTS_FILE",
]

WEIGHTS_FILE = "weights.h5"
CONFIG_FILE = "config.json"
RESULTS_FILE = "classifier.json"


class ClassifierError(ValueError):
  """A classifier directory is missing, incomplete or inconsistent."""


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
  """Architecture of the metrics classifier.

  Three conv stages (width, 2*width, 4*width channels; two 3x3 conv + BN + ReLU
  each, then 2x2 max-pool), flatten (or global average pooling), a `features`
  Dense layer (ReLU) and a `logits` Dense layer (dropout between them). Flatten
  keeps where strokes are, which digits need: on mnist5k it gained ~0.5 points of
  held-out accuracy over global pooling at the same cost; `global_avg` makes the
  parameter count independent of the resolution.
  """
  resolution: int = 32
  image_channels: int = 3
  num_classes: int = 10
  width: int = 16
  feature_dim: int = 128
  dropout: float = 0.3
  pooling: str = "flatten"          # flatten | global_avg (before the features layer)

  def validate(self) -> "ClassifierConfig":
    if self.resolution < 8:
      raise ClassifierError(f"resolution={self.resolution} must be >= 8 (three 2x pools).")
    if self.image_channels not in (1, 3):
      raise ClassifierError(f"image_channels={self.image_channels} must be 1 or 3.")
    if self.num_classes < 2:
      raise ClassifierError(f"num_classes={self.num_classes} must be >= 2.")
    if self.width < 1 or self.feature_dim < 1:
      raise ClassifierError(f"width={self.width} and feature_dim={self.feature_dim} "
                            "must be >= 1.")
    if self.pooling not in ("flatten", "global_avg"):
      raise ClassifierError(
          f"pooling={self.pooling!r} must be 'flatten' or 'global_avg'.")
    if not 0.0 <= self.dropout < 1.0:
      raise ClassifierError(f"dropout={self.dropout} must be in [0, 1).")
    return self


@dataclasses.dataclass(frozen=True)
class ClassifierTrainConfig:
  """How the classifier is trained (Adam, cosine-decayed learning rate).

  `augment_shift` is the largest random translation in pixels (images are padded
  with the background value -1, then randomly cropped back); 0 disables it. A
  couple of pixels of shift is the "light augmentation" that lifts MNIST accuracy
  by about half a point when only 4,500 training images exist.
  """
  epochs: int = 10
  batch_size: int = 64
  learning_rate: float = 2e-3
  augment_shift: int = 2
  seed: int = 0
  max_train_examples: Optional[int] = None   # seeded random subset (tests, quick runs)

  def validate(self) -> "ClassifierTrainConfig":
    if self.epochs < 1 or self.batch_size < 1:
      raise ClassifierError(f"epochs={self.epochs} and batch_size={self.batch_size} "
                            "must be >= 1.")
    if not self.learning_rate > 0:
      raise ClassifierError(f"learning_rate={self.learning_rate} must be > 0.")
    if self.augment_shift < 0:
      raise ClassifierError(f"augment_shift={self.augment_shift} must be >= 0.")
    if self.max_train_examples is not None and self.max_train_examples < 1:
      raise ClassifierError(f"max_train_examples={self.max_train_examples} must be >= 1.")
    return self


def build_classifier(cfg: ClassifierConfig) -> tf_keras.Model:
  """Builds the classifier with two outputs: `[features, logits]`.

  Args:
    cfg: architecture.

  Returns:
    A tf_keras functional model mapping [N, R, R, C] images in [-1, 1] to
    (features [N, feature_dim], logits [N, num_classes]). Train it through a
    single-output view `tf_keras.Model(model.input, model.outputs[1])`; the layers
    are shared.
  """
  cfg.validate()
  layers = tf_keras.layers
  inputs = tf_keras.Input((cfg.resolution, cfg.resolution, cfg.image_channels),
                          name="images")
  x = inputs
  for stage, mult in enumerate((1, 2, 4)):
    for conv in range(2):
      x = layers.Conv2D(cfg.width * mult, 3, padding="same", use_bias=False,
                        name=f"stage{stage}_conv{conv}")(x)
      x = layers.BatchNormalization(momentum=0.9, name=f"stage{stage}_bn{conv}")(x)
      x = layers.ReLU(name=f"stage{stage}_relu{conv}")(x)
    x = layers.MaxPool2D(2, name=f"stage{stage}_pool")(x)
  if cfg.pooling == "flatten":
    x = layers.Flatten(name="flatten")(x)
  else:
    x = layers.GlobalAveragePooling2D(name="global_pool")(x)
  features = layers.Dense(cfg.feature_dim, activation="relu", name="features")(x)
  h = layers.Dropout(cfg.dropout, name="dropout")(features)
  logits = layers.Dense(cfg.num_classes, name="logits")(h)
  return tf_keras.Model(inputs, [features, logits], name="metrics_classifier")


def _augment(images: tf.Tensor, seeds: tf.Tensor, shift: int) -> tf.Tensor:
  """Random translation by up to `shift` px, stateless (deterministic per seed)."""
  h, w, c = images.shape[-3:]
  padded = tf.pad(images, [[shift, shift], [shift, shift], [0, 0]], constant_values=-1.0)
  return tf.image.stateless_random_crop(padded, [h, w, c], seed=seeds)


def _train_dataset(images: np.ndarray, labels: np.ndarray,
                   cfg: ClassifierTrainConfig) -> tf.data.Dataset:
  ds = tf.data.Dataset.from_tensor_slices((images, labels))
  ds = ds.shuffle(len(images), seed=cfg.seed, reshuffle_each_iteration=True)
  if cfg.augment_shift > 0:
    seeds = tf.data.Dataset.random(seed=cfg.seed).batch(2)
    ds = tf.data.Dataset.zip((ds, seeds)).map(
        lambda xy, s: (_augment(xy[0], s, cfg.augment_shift), xy[1]),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)


def _check_arrays(images: np.ndarray, labels: np.ndarray, cfg: ClassifierConfig,
                  what: str) -> None:
  want = (cfg.resolution, cfg.resolution, cfg.image_channels)
  if images.ndim != 4 or images.shape[1:] != want:
    raise ClassifierError(f"{what} images have shape {images.shape}; the classifier "
                          f"expects [N, {want[0]}, {want[1]}, {want[2]}].")
  if labels.shape != (images.shape[0],):
    raise ClassifierError(f"{what} labels have shape {labels.shape}; expected "
                          f"({images.shape[0]},).")
  if labels.size and (labels.min() < 0 or labels.max() >= cfg.num_classes):
    raise ClassifierError(f"{what} labels span [{labels.min()}, {labels.max()}] but "
                          f"num_classes={cfg.num_classes}.")


def fit_classifier(train: Tuple[np.ndarray, np.ndarray],
                   test: Optional[Tuple[np.ndarray, np.ndarray]],
                   cfg: ClassifierConfig,
                   train_cfg: ClassifierTrainConfig = ClassifierTrainConfig(),
                   verbose: int = 0) -> Tuple[tf_keras.Model, Dict[str, Any]]:
  """Trains a fresh classifier on in-memory arrays and scores the held-out set.

  Args:
    train: (images [N, R, R, C] float32 in [-1, 1], labels [N] int).
    test: held-out (images, labels), or None to skip the evaluation.
    cfg: architecture.
    train_cfg: optimisation settings; the seed fixes initialisation, shuffling
      and augmentation.
    verbose: Keras `fit` verbosity (0 silent, 2 one line per epoch).

  Returns:
    (model with outputs [features, logits], results dict with `test_accuracy`
    (None without `test`), `train_accuracy` (last epoch, augmented), `num_train`,
    `num_test`, `train_seconds`).

  Raises:
    ClassifierError: shapes or labels inconsistent with `cfg`.
  """
  cfg.validate()
  train_cfg.validate()
  x, y = np.asarray(train[0], np.float32), np.asarray(train[1], np.int32)
  if train_cfg.max_train_examples is not None and train_cfg.max_train_examples < len(x):
    # A seeded random subset, not the first N: sources may be sorted by class.
    keep = np.sort(np.random.default_rng(train_cfg.seed).choice(
        len(x), train_cfg.max_train_examples, replace=False))
    x, y = x[keep], y[keep]
  _check_arrays(x, y, cfg, "train")
  tf_keras.utils.set_random_seed(train_cfg.seed)
  model = build_classifier(cfg)
  trainable = tf_keras.Model(model.input, model.outputs[1])
  steps = train_cfg.epochs * int(np.ceil(len(x) / train_cfg.batch_size))
  schedule = tf_keras.optimizers.schedules.CosineDecay(train_cfg.learning_rate, steps)
  trainable.compile(
      optimizer=tf_keras.optimizers.Adam(schedule),
      loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
      metrics=[tf_keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
  start = time.perf_counter()
  history = trainable.fit(_train_dataset(x, y, train_cfg), epochs=train_cfg.epochs,
                          verbose=verbose)
  train_seconds = time.perf_counter() - start
  results: Dict[str, Any] = {
      "train_accuracy": float(history.history["accuracy"][-1]),
      "train_loss": float(history.history["loss"][-1]),
      "num_train": int(len(x)), "num_test": 0, "test_accuracy": None,
      "train_seconds": round(train_seconds, 2),
  }
  if test is not None:
    tx, ty = np.asarray(test[0], np.float32), np.asarray(test[1], np.int32)
    _check_arrays(tx, ty, cfg, "test")
    logits = trainable.predict(tx, batch_size=256, verbose=0)
    results["test_accuracy"] = float(np.mean(np.argmax(logits, axis=1) == ty))
    results["num_test"] = int(len(tx))
  return model, results


def save_classifier(model: tf_keras.Model, cfg: ClassifierConfig, out_dir: str,
                    results: Optional[Dict[str, Any]] = None,
                    dataset: Optional[str] = None) -> str:
  """Writes a classifier directory (weights, config.json, classifier.json).

  Args:
    model: a model from `build_classifier(cfg)`.
    cfg: its architecture.
    out_dir: created if missing; existing files are replaced.
    results: provenance / accuracy to store in classifier.json (optional).
    dataset: dataset name recorded in config.json.

  Returns:
    out_dir.
  """
  files.write_atomically(os.path.join(out_dir, WEIGHTS_FILE), model.save_weights)
  files.write_json_atomic(os.path.join(out_dir, CONFIG_FILE),
              {"classifier": dataclasses.asdict(cfg), "dataset": dataset})
  if results is not None:
    files.write_json_atomic(os.path.join(out_dir, RESULTS_FILE), results)
  return out_dir


def load_classifier(path: str) -> Tuple[tf_keras.Model, ClassifierConfig]:
  """Rebuilds a classifier from its directory.

  Args:
    path: a directory written by `train_classifier` / `save_classifier`.

  Returns:
    (model with outputs [features, logits], its ClassifierConfig).

  Raises:
    ClassifierError: the directory or one of its files is missing or unreadable;
      the message says how to create it.
  """
  hint = ("train one with `python -m ppcd_tf.train_classifier --dataset=<name> "
          f"--out={path}`")
  cfg_path, w_path = os.path.join(path, CONFIG_FILE), os.path.join(path, WEIGHTS_FILE)
  for p in (cfg_path, w_path):
    if not os.path.isfile(p):
      raise ClassifierError(f"classifier directory {path!r} has no {os.path.basename(p)}; "
                            f"{hint}.")
  try:
    with open(cfg_path) as f:
      cfg = ClassifierConfig(**json.load(f)["classifier"]).validate()
  except (ValueError, KeyError, TypeError) as e:
    raise ClassifierError(f"{cfg_path} is not a valid classifier config ({e}); {hint}.") \
        from e
  model = build_classifier(cfg)
  try:
    model.load_weights(w_path)
  except (ValueError, OSError) as e:
    raise ClassifierError(f"{w_path} does not match the architecture in {cfg_path} "
                          f"({e}); {hint}.") from e
  return model, cfg


def train_classifier(data_cfg, model_cfg, out_dir: str,
                     train_cfg: ClassifierTrainConfig = ClassifierTrainConfig(),
                     width: int = ClassifierConfig.width,
                     feature_dim: int = ClassifierConfig.feature_dim,
                     pooling: str = ClassifierConfig.pooling,
                     verbose: int = 0) -> Dict[str, Any]:
  """Trains the metrics classifier on a dataset's train split and saves it.

  The held-out split is `test` (for mnist5k the stratified 10% that
  `ppcd_tf.data` keeps out of training), so the reported accuracy is on images
  the classifier never saw.

  Args:
    data_cfg: `config.DataConfig` naming the dataset.
    model_cfg: `config.ModelConfig`; its resolution, image_channels and
      num_classes define the classifier input/output.
    out_dir: classifier directory to write.
    train_cfg: optimisation settings.
    width: base conv width of the classifier.
    feature_dim: size of the feature layer used by the metrics.
    pooling: 'flatten' or 'global_avg' (see `ClassifierConfig`).
    verbose: Keras `fit` verbosity.

  Returns:
    The classifier.json contents: test_accuracy, epochs, seed, dataset,
    resolution, image_channels, wall_time_s and the training settings.
  """
  from ppcd_tf import data as data_lib  # imported late: only training needs the data
  start = time.perf_counter()
  cfg = ClassifierConfig(resolution=model_cfg.resolution,
                         image_channels=model_cfg.image_channels,
                         num_classes=model_cfg.num_classes, width=width,
                         feature_dim=feature_dim, pooling=pooling).validate()
  train = data_lib.load_arrays(data_cfg, model_cfg, split="train")
  test = data_lib.load_arrays(data_cfg, model_cfg, split="test")
  model, results = fit_classifier(train, test, cfg, train_cfg, verbose=verbose)
  results.update({
      "dataset": data_cfg.dataset, "resolution": cfg.resolution,
      "image_channels": cfg.image_channels, "num_classes": cfg.num_classes,
      "test_split": "test", "train_split": "train",
      "epochs": train_cfg.epochs, "batch_size": train_cfg.batch_size,
      "learning_rate": train_cfg.learning_rate,
      "augment_shift": train_cfg.augment_shift, "seed": train_cfg.seed,
      "width": cfg.width, "feature_dim": cfg.feature_dim, "pooling": cfg.pooling,
      "num_params": int(model.count_params()),
      "tensorflow": tf.__version__, "tf_keras": tf_keras.__version__,
      "wall_time_s": round(time.perf_counter() - start, 2),
  })
  save_classifier(model, cfg, out_dir, results=results, dataset=data_cfg.dataset)
  return results

"""The tf.data pipeline: dataset_info, check_compatible, build_dataset,
distributed_dataset and load_arrays, shared by every registered source."""

from __future__ import annotations

from typing import Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from ppcd_tf.data.sources import (AUTOTUNE, DataError, DatasetInfo, Source, _make_source,
                                  _resolve_split, _shard_size, reraise_as_data_error)

__all__ = ["dataset_info", "check_compatible", "build_dataset", "distributed_dataset",
           "load_arrays"]

_CACHE_WARN_BYTES = 8 * 2**30
_LOAD_BATCH = 256


def _to_model_range(images: tf.Tensor, labels: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  return tf.cast(images, tf.float32) / 127.5 - 1.0, labels


def _info(source: Source, split: str) -> DatasetInfo:
  return DatasetInfo(name=source.spec, num_classes=source.num_classes,
                     image_shape=source.image_shape, num_examples=source.num_examples(split))


def dataset_info(data_cfg, model_cfg, split: Optional[str] = None) -> DatasetInfo:
  """Describes a split as the pipeline will deliver it (after resizing).

  Args:
    data_cfg: `DataConfig`; `dataset` selects the source.
    model_cfg: `ModelConfig`; `resolution` and `image_channels` give the image shape.
    split: 'train', 'test' (or a tfds split name); None means `data_cfg.split`.

  Returns:
    A `DatasetInfo`.

  Raises:
    DataError: the source or split does not exist or is unusable.
  """
  split = _resolve_split(data_cfg, split)
  return _info(_make_source(data_cfg, model_cfg), split)


def check_compatible(info: DatasetInfo, model_cfg) -> None:
  """Fails early, before any training, if the data cannot feed the model.

  Raises:
    DataError: naming both values when the number of classes or the image shape
      differ.
  """
  if info.num_classes != model_cfg.num_classes:
    raise DataError(f"dataset {info.name} has {info.num_classes} classes but "
                    f"--num_classes={model_cfg.num_classes}; pass "
                    f"--num_classes={info.num_classes}.")
  expected = (int(model_cfg.resolution), int(model_cfg.resolution),
              int(model_cfg.image_channels))
  if tuple(info.image_shape) != expected:
    raise DataError(f"dataset {info.name} yields images of shape {tuple(info.image_shape)} "
                    f"but the model expects {expected} (--resolution={expected[0]}, "
                    f"--image_channels={expected[2]}); build the dataset with the model's "
                    "config or change --resolution/--image_channels.")


def build_dataset(data_cfg, model_cfg, batch_size: int, *, split: Optional[str] = None,
                  shuffle: bool = True, repeat: bool = True, seed: int = 0,
                  drop_remainder: bool = True,
                  input_context: Optional[tf.distribute.InputContext] = None
                  ) -> tf.data.Dataset:
  """The training/eval input pipeline.

  Args:
    data_cfg: `DataConfig` (source, cache, shuffle buffer, held-out fraction).
    model_cfg: `ModelConfig` (resolution, image_channels, num_classes).
    batch_size: examples per batch (per replica when called with `input_context`).
    split: None means `data_cfg.split`.
    shuffle: permute examples (seeded) and reshuffle every epoch.
    repeat: repeat forever (training); False gives one pass (evaluation).
    seed: shuffle seed; the same seed gives the same stream.
    drop_remainder: keep every batch at `batch_size` (static shapes for tf.function
      and TPUs).
    input_context: from `distribute_datasets_from_function`; this pipeline then
      reads only its shard (`input_pipeline_id` of `num_input_pipelines`).

  Returns:
    A dataset of (images float32 [B, H, W, C] in [-1, 1], labels int32 [B]).

  Raises:
    DataError: unusable source/split, a mismatch with `model_cfg` (via
      `check_compatible`), or a split too small for one batch.
  """
  if int(batch_size) < 1:
    raise DataError(f"batch_size={batch_size} must be >= 1.")
  split = _resolve_split(data_cfg, split)
  source = _make_source(data_cfg, model_cfg)
  info = _info(source, split)
  check_compatible(info, model_cfg)
  local = _shard_size(info.num_examples, input_context)
  if local == 0:
    raise DataError(f"dataset {info.name} split {split!r} is empty for this input "
                    f"pipeline ({info.num_examples} examples in total); for mnist5k/folder "
                    "'test' pass --eval_fraction > 0.")
  if not repeat and drop_remainder and local < batch_size:
    raise DataError(f"dataset {info.name} split {split!r} has {local} examples per "
                    f"input pipeline, fewer than batch_size={batch_size}; with "
                    "drop_remainder and no repeat no batch would be produced. Use a "
                    "smaller batch or drop_remainder=False.")

  ds = source.examples(split, shuffle=shuffle, seed=seed, input_context=input_context)
  if data_cfg.cache:
    cached_bytes = local * int(np.prod(info.image_shape))
    if cached_bytes > _CACHE_WARN_BYTES:
      logging.warning("Caching %s (%.1f GiB of uint8 images) in memory; pass --nocache "
                      "if that does not fit.", info.name, cached_bytes / 2**30)
    ds = ds.cache()
  if shuffle:
    ds = ds.shuffle(min(data_cfg.shuffle_buffer, local), seed=seed,
                    reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  ds = ds.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE,
                deterministic=True)
  ds = ds.map(_to_model_range, num_parallel_calls=AUTOTUNE)
  return ds.prefetch(AUTOTUNE)


def distributed_dataset(strategy: tf.distribute.Strategy, data_cfg, model_cfg,
                        global_batch_size: int, **kwargs):
  """`build_dataset` for every input pipeline of `strategy`.

  Each pipeline reads its own shard and batches `global_batch_size /
  num_replicas_in_sync` examples per replica.

  Args:
    strategy: a `tf.distribute.Strategy`.
    data_cfg: `DataConfig`.
    model_cfg: `ModelConfig`.
    global_batch_size: examples per step over all replicas.
    **kwargs: `build_dataset` keyword arguments (split, shuffle, repeat, seed,
      drop_remainder).

  Returns:
    A `tf.distribute.DistributedDataset` yielding per-replica (images, labels).

  Raises:
    DataError: `global_batch_size` is not divisible by the number of replicas, or
      any `build_dataset` error.
  """
  if "input_context" in kwargs:
    raise TypeError("distributed_dataset sets input_context itself.")
  replicas = int(strategy.num_replicas_in_sync)
  if global_batch_size < 1 or global_batch_size % replicas:
    lower = max(replicas, global_batch_size // replicas * replicas)
    raise DataError(f"global batch size {global_batch_size} is not divisible by the "
                    f"{replicas} replicas in sync; pass --batch_size={lower} (a multiple "
                    f"of {replicas}).")
  # Fail here, on the caller's thread, rather than inside the dataset function.
  check_compatible(dataset_info(data_cfg, model_cfg, kwargs.get("split")), model_cfg)

  def dataset_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
    per_replica = input_context.get_per_replica_batch_size(global_batch_size)
    return build_dataset(data_cfg, model_cfg, per_replica, input_context=input_context,
                         **kwargs)

  return strategy.distribute_datasets_from_function(dataset_fn)


def load_arrays(data_cfg, model_cfg, split: Optional[str] = None,
                max_examples: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
  """A whole split as numpy, in the source's deterministic order.

  Used for reference statistics (FID) and to train an evaluation classifier, so
  the order and content never depend on a seed.

  Args:
    data_cfg: `DataConfig`.
    model_cfg: `ModelConfig`.
    split: None means `data_cfg.split`.
    max_examples: keep only the first this many examples (None: all).

  Returns:
    images float32 [N, H, W, C] in [-1, 1] and labels int32 [N].

  Raises:
    DataError: as `build_dataset`, and for an unreadable image file.
  """
  if max_examples is not None and max_examples < 0:
    raise DataError(f"max_examples={max_examples} must be >= 0 (or None for all).")
  split = _resolve_split(data_cfg, split)
  source = _make_source(data_cfg, model_cfg)
  info = _info(source, split)
  check_compatible(info, model_cfg)
  ds = source.examples(split, shuffle=False, seed=0, input_context=None)
  if max_examples is not None:
    ds = ds.take(max_examples)
  ds = ds.batch(_LOAD_BATCH).prefetch(AUTOTUNE)
  images, labels = [], []
  with reraise_as_data_error():
    for x, y in ds.as_numpy_iterator():
      images.append(x)
      labels.append(y)
  if not images:
    return (np.zeros((0,) + tuple(info.image_shape), np.float32), np.zeros([0], np.int32))
  x = np.concatenate(images).astype(np.float32) / np.float32(127.5) - np.float32(1.0)
  return x, np.concatenate(labels).astype(np.int32)

"""The `tfds:<name>[/<config>]` source: a tfds dataset already prepared under `data_dir`."""

from __future__ import annotations

import os
import re
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from ppcd_tf.data.sources import (AUTOTUNE, DataError, Source, _center_crop_resize,
                                  _to_channels, register_source)

__all__ = ["TfdsSource"]

# tfds datasets whose 'test' split has no labels: evaluate on 'validation' instead.
_TFDS_EVAL_SPLIT = {"imagenet2012": "validation"}


@register_source("tfds")
class TfdsSource(Source):
  """A tfds dataset already prepared under `data_dir` (nothing is downloaded).

  Images are centre-cropped to a square and resized, as in BigGAN; labels come from
  the 'label' `ClassLabel` feature. 'test' maps to the dataset's 'test' split, or
  'validation' when there is none or its test labels are hidden (imagenet2012).
  Other split names (e.g. 'validation', 'train[:10%]') pass through to tfds.

  For a manual-download dataset (imagenet2012) that is not prepared yet, a given
  `manual_dir` is used to prepare it from the archives there (no network).
  """

  usage = "tfds:<name>[/<config>]"

  def __init__(self, spec, argument, data_cfg, image_shape):
    super().__init__(spec, argument, data_cfg, image_shape)
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self._tfds = tfds
    if not argument:
      raise DataError(f"--dataset={spec} needs a tfds name, e.g. --dataset=tfds:cifar10 "
                      "or --dataset=tfds:imagenet2012.")
    self.name = argument
    self.base_name = re.split(r"[/:]", argument)[0]
    try:
      self._builder = tfds.builder(argument, data_dir=data_cfg.data_dir)
    except tfds.core.registered.DatasetNotFoundError as e:
      first_line = str(e).splitlines()[0] if str(e) else ""
      raise DataError(f"--dataset={spec}: tfds knows no dataset {argument!r} "
                      f"({first_line}); see `tfds build --help` or the tfds catalog for "
                      "names.") from None
    except ValueError as e:
      raise DataError(f"--dataset={spec}: {e}") from None
    features = self._builder.info.features
    label = features["label"] if "label" in features else None
    if "image" not in features or label is None or not hasattr(label, "num_classes"):
      raise DataError(f"--dataset={spec}: needs an 'image' feature and a 'label' "
                      f"ClassLabel feature; it has {sorted(features.keys())}.")
    self._num_classes = int(label.num_classes)
    self._prepare_tried = False

  @property
  def num_classes(self) -> int:
    return self._num_classes

  @property
  def _data_dir_text(self) -> str:
    return (self.data_cfg.data_dir or os.environ.get("TFDS_DATA_DIR")
            or "~/tensorflow_datasets")

  def _tfds_split(self, split: str) -> str:
    known = list(self._builder.info.splits.keys())
    if split == "test":
      preferred = _TFDS_EVAL_SPLIT.get(self.base_name, "test")
      if not known:  # split names unknown (mocked data): trust the preference
        return preferred
      for candidate in (preferred, "test", "validation"):
        if candidate in known:
          return candidate
      raise DataError(f"--dataset={self.spec} has neither a 'test' nor a 'validation' "
                      f"split (it has {known}); pass e.g. --split=train[:90%] for "
                      "training and evaluate on train[90%:].")
    base = split.split("[")[0].split("+")[0]
    if known and base not in known:
      raise DataError(f"--dataset={self.spec} has no split {split!r}; available: {known}.")
    return split

  def _not_prepared(self, cause: Optional[BaseException] = None) -> DataError:
    data_dir = self._data_dir_text
    message = (f"tfds dataset {self.name} is not prepared in data_dir={data_dir} and "
               "nothing is downloaded at run time. Prepare it once where its source "
               f"files are available: `tfds build {self.name} --data_dir={data_dir}`")
    instructions = self._builder.MANUAL_DOWNLOAD_INSTRUCTIONS
    if instructions:
      manual = self.data_cfg.manual_dir or "<dir>"
      message += (f" --manual_dir={manual}` where the manual_dir holds the archives: "
                  f"{' '.join(instructions.split())} (or pass --manual_dir=<dir> and "
                  "ppcd_tf prepares it on first use)")
    else:
      message += "` (then copy the data_dir here)"
    if cause is not None:
      message += f". Preparing from --manual_dir={self.data_cfg.manual_dir} failed: " \
                 f"{type(cause).__name__}: {cause}"
    return DataError(message + ".")

  def _prepare_from_manual_dir(self) -> None:
    tfds = self._tfds
    logging.warning("Preparing tfds %s in %s from manual_dir %s (one-off; may take hours "
                    "for imagenet2012).", self.name, self._data_dir_text,
                    self.data_cfg.manual_dir)
    config = tfds.download.DownloadConfig(manual_dir=self.data_cfg.manual_dir,
                                          try_download_gcs=False)
    try:
      self._builder.download_and_prepare(download_config=config)
    except Exception as e:  # any failure: missing archives, missing extras, ...
      raise self._not_prepared(cause=e) from e
    # Reload so split sizes come from the freshly written dataset_info.json.
    self._builder = tfds.builder(self.name, data_dir=self.data_cfg.data_dir)

  def _as_dataset(self, split: str, *, shuffle: bool, seed: int,
                  input_context: Optional[tf.distribute.InputContext]) -> tf.data.Dataset:
    tfds = self._tfds
    # File-level sharding avoids reading (and decoding) every shard on every worker,
    # but only works when the split has at least one file per pipeline.
    file_context = None
    if input_context is not None and input_context.num_input_pipelines > 1:
      try:
        if self._builder.info.splits[split].num_shards >= input_context.num_input_pipelines:
          file_context = input_context
      except Exception:  # pylint: disable=broad-except  # unknown or sliced split
        file_context = None
    read_config = tfds.ReadConfig(shuffle_seed=seed, try_autocache=False,
                                  input_context=file_context)
    try:
      ds = self._builder.as_dataset(split=split, shuffle_files=shuffle,
                                    read_config=read_config)
    except (AssertionError, FileNotFoundError) as e:  # tfds: "could not find data in"
      if (self.data_cfg.manual_dir and self._builder.MANUAL_DOWNLOAD_INSTRUCTIONS
          and not self._prepare_tried):
        self._prepare_tried = True
        self._prepare_from_manual_dir()
        return self._as_dataset(split, shuffle=shuffle, seed=seed,
                                input_context=input_context)
      raise self._not_prepared() from e
    if input_context is not None and input_context.num_input_pipelines > 1 and \
        file_context is None:
      ds = ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    return ds

  def num_examples(self, split):
    tfds_split = self._tfds_split(split)
    if self._builder.info.splits:
      return int(self._builder.info.splits[tfds_split].num_examples)
    # Split sizes unknown: the dataset is mocked (tfds.testing) or not prepared.
    ds = self._as_dataset(tfds_split, shuffle=False, seed=0, input_context=None)
    count = int(ds.cardinality())
    if count < 0:
      count = int(ds.reduce(np.int64(0), lambda n, _: n + 1))
    return count

  def examples(self, split, *, shuffle, seed, input_context):
    tfds_split = self._tfds_split(split)
    ds = self._as_dataset(tfds_split, shuffle=shuffle, seed=seed,
                          input_context=input_context)
    size, _, channels = self.image_shape
    num_classes, where = self._num_classes, f"{self.spec} split {tfds_split}"

    def preprocess(example):
      image = example["image"]
      if image.shape.rank != 3 or image.shape[-1] not in (1, 3):
        raise DataError(f"{where}: 'image' must be HxWx1 or HxWx3, got {image.shape}.")
      label = tf.cast(example["label"], tf.int32)
      ok = tf.debugging.Assert(
          tf.logical_and(label >= 0, label < num_classes),
          [f"ppcd_tf.data: {where} has a label outside [0, {num_classes}):", label])
      with tf.control_dependencies([ok]):
        label = tf.identity(label)
      image = _to_channels(_center_crop_resize(image, size), channels)
      return image, label

    return ds.map(preprocess, num_parallel_calls=AUTOTUNE)

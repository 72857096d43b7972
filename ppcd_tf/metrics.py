"""Sample-quality metrics of (class-conditional) generators, from features and logits.

Every function here takes precomputed activations (features of a fixed network,
shape [N, D]) or logits ([N, K]) as numpy arrays or tensors, computes in float64 and
returns Python floats. Which network produces the activations is the business of
`ppcd_tf.features`; sampling the generator is `ppcd_tf.evaluation`.

Where tensorflow-gan's implementations work on TF 2.21 (eagerly, on tf tensors) we use
them through `ppcd_tf.tfgan_compat`, so our numbers follow the TF-GAN definitions:
  * FID    `frechet_classifier_distance_from_activations` (Heusel et al. 2017),
  * IS     `classifier_score_from_logits` (Salimans et al. 2016),
  * KID    `kernel_classifier_distance_from_activations` (Binkowski et al. 2018).
`fid_from_stats` (FID from cached means/covariances) has no TF-GAN counterpart and is
written here in numpy; it agrees with `fid` on the same data to ~1e-9 relative.

Conventions: covariances are unbiased (divide by N - 1), as in TF-GAN; standard
deviations over splits/subsets are population std (ddof=0), as in the reference
implementations of IS and KID. Errors in the inputs raise `ValueError`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Dict, Iterator, Tuple

import numpy as np
import tensorflow as tf

from ppcd_tf.tfgan_compat import tfgan_eval

__all__ = [
    "activation_stats", "fid", "fid_from_stats", "inception_score", "kid",
    "intra_class_fid", "class_accuracy", "KID_SUBSET_SIZE", "KID_NUM_SUBSETS",
]

# Binkowski et al. (2018, Sec. 4 / their released code) estimate KID on 100 random
# subsets of 1,000 samples each and report the mean and std over subsets.
KID_SUBSET_SIZE = 1000
KID_NUM_SUBSETS = 100


class _DropMapFnBackPropNotice(logging.Filter):
  """Drops TF's "map_fn ... back_prop=False is deprecated" record, and only that one."""

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not ("map_fn" in message and "back_prop=False is deprecated" in message)


@contextlib.contextmanager
def _quiet_tfgan_map_fn() -> Iterator[None]:
  """TF-GAN's KID calls `tf.map_fn(..., back_prop=False)`, which logs a deprecation
  warning through the `tensorflow` logger on every new process; a user cannot act on
  it (the call is inside TF-GAN), so it is dropped while TF-GAN runs."""
  tf_logger = logging.getLogger("tensorflow")
  notice = _DropMapFnBackPropNotice()
  tf_logger.addFilter(notice)
  try:
    yield
  finally:
    tf_logger.removeFilter(notice)


def _as_2d_float64(x, name: str, min_rows: int = 2) -> np.ndarray:
  a = np.asarray(x.numpy() if isinstance(x, tf.Tensor) else x, dtype=np.float64)
  if a.ndim != 2:
    raise ValueError(f"{name} must be a 2-D [N, D] array, got shape {a.shape}.")
  if a.shape[0] < min_rows:
    raise ValueError(f"{name} has {a.shape[0]} rows; at least {min_rows} are needed.")
  if not np.all(np.isfinite(a)):
    raise ValueError(f"{name} contains NaN or Inf; check the generator/extractor output.")
  return a


def _same_dim(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
  if a.shape[1] != b.shape[1]:
    raise ValueError(f"{name_a} has {a.shape[1]} features per row but {name_b} has "
                     f"{b.shape[1]}; both must come from the same extractor.")


def activation_stats(activations) -> Tuple[np.ndarray, np.ndarray]:
  """Mean and unbiased covariance of activations, the Gaussian FID compares.

  Args:
    activations: [N, D] features, N >= 2.

  Returns:
    (mu [D], sigma [D, D]) in float64; sigma divides by N - 1 like TF-GAN's FID, so
    `fid_from_stats(*activation_stats(a), *activation_stats(b)) == fid(a, b)`.

  Raises:
    ValueError: not 2-D, fewer than 2 rows, or non-finite values.
  """
  a = _as_2d_float64(activations, "activations")
  return a.mean(axis=0), np.cov(a, rowvar=False, ddof=1).reshape(a.shape[1], a.shape[1])


def fid(act_a, act_b) -> float:
  """Frechet (Inception) Distance between two sets of activations.

  Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local
  Nash Equilibrium" (NeurIPS 2017): with Gaussians fitted to both sets,
  FID = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)). Computed by TF-GAN's
  `frechet_classifier_distance_from_activations` in float64. FID is biased
  upwards for small N, so compare models only at equal sample counts.

  Args:
    act_a: [N_a, D] activations (e.g. generated samples).
    act_b: [N_b, D] activations (e.g. real data).

  Returns:
    FID as a float (>= 0 up to round-off).

  Raises:
    ValueError: bad shapes, mismatched D, fewer than 2 rows, non-finite values.
  """
  a = _as_2d_float64(act_a, "act_a")
  b = _as_2d_float64(act_b, "act_b")
  _same_dim(a, b, "act_a", "act_b")
  value = tfgan_eval.frechet_classifier_distance_from_activations(
      tf.constant(a, tf.float64), tf.constant(b, tf.float64))
  return float(value)


def _psd_sqrt(mat: np.ndarray) -> np.ndarray:
  """Symmetric PSD square root via eigh; tiny negative eigenvalues are round-off."""
  w, v = np.linalg.eigh((mat + mat.T) / 2.0)
  return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def fid_from_stats(mu1, sigma1, mu2, sigma2) -> float:
  """FID from precomputed Gaussian statistics (for cached reference statistics).

  Same quantity as `fid` (Heusel et al. 2017), written in numpy because TF-GAN only
  offers it from activations. The trace term uses
  Tr((S1 S2)^(1/2)) = Tr((A S2 A)^(1/2)) with A = S1^(1/2), where A S2 A is
  symmetric PSD, so both roots are eigen-decompositions of symmetric matrices: no
  complex parts and no `sqrtm` failures on singular covariances (fewer samples than
  dimensions, dead ReLU units). This is the identity TF-GAN uses, with `eigh` in
  place of its SVD.

  Args:
    mu1: [D] mean of the first set.
    sigma1: [D, D] covariance of the first set (symmetric PSD).
    mu2: [D] mean of the second set.
    sigma2: [D, D] covariance of the second set.

  Returns:
    FID as a float.

  Raises:
    ValueError: inconsistent shapes or non-finite values.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
  d = mu1.shape[0] if mu1.ndim == 1 else -1
  for name, arr, shape in (("mu1", mu1, (d,)), ("mu2", mu2, (d,)),
                           ("sigma1", s1, (d, d)), ("sigma2", s2, (d, d))):
    if arr.shape != shape:
      raise ValueError(f"{name} has shape {arr.shape}; expected {shape} (D from mu1).")
    if not np.all(np.isfinite(arr)):
      raise ValueError(f"{name} contains NaN or Inf.")
  root1 = _psd_sqrt(s1)
  middle = root1 @ s2 @ root1
  eig = np.linalg.eigvalsh((middle + middle.T) / 2.0)
  trace_sqrt = np.sqrt(np.clip(eig, 0.0, None)).sum()
  diff = mu1 - mu2
  return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt)


def inception_score(logits, splits: int = 10) -> Tuple[float, float]:
  """Inception Score exp(E_x KL(p(y|x) || p(y))), mean and std over splits.

  Salimans et al., "Improved Techniques for Training GANs" (NeurIPS 2016). As in
  their code, the N samples are cut into `splits` consecutive chunks (numpy
  `array_split`), the score of each chunk is TF-GAN's
  `classifier_score_from_logits` (float64), and we return the mean and population
  std of the chunk scores. Samples should therefore not be sorted by class (our
  sampler cycles through the classes). The score lies in [1, K].

  Args:
    logits: [N, K] unnormalised class scores of the samples.
    splits: number of chunks, 1 <= splits <= N / 2.

  Returns:
    (mean, std) of the per-chunk scores; std is 0.0 for splits == 1.

  Raises:
    ValueError: bad shape or non-finite logits, or too many splits for N.
  """
  x = _as_2d_float64(logits, "logits", min_rows=1)
  if splits < 1 or x.shape[0] < 2 * splits:
    raise ValueError(f"splits={splits} needs 1 <= splits and at least 2 samples per "
                     f"split; got N={x.shape[0]}.")
  scores = np.array([
      float(tfgan_eval.classifier_score_from_logits(tf.constant(chunk, tf.float64)))
      for chunk in np.array_split(x, splits)])
  return float(scores.mean()), float(scores.std())


def kid(act_a, act_b, subset_size: int = KID_SUBSET_SIZE,
        num_subsets: int = KID_NUM_SUBSETS, seed: int = 0) -> Tuple[float, float]:
  """Kernel Inception Distance, mean and std over random subsets.

  Binkowski et al., "Demystifying MMD GANs" (ICLR 2018): the unbiased estimate of the
  squared MMD with the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3. Following
  their protocol, we draw `num_subsets` pairs of subsets of m = min(subset_size, N_a,
  N_b) rows, without replacement within a subset (and independently across
  subsets), evaluate the estimate on each pair with TF-GAN's
  `kernel_classifier_distance_from_activations` (one block of size m), and return
  the mean and population std of the estimates. Subset draws:
  `rng = np.random.default_rng(seed)`, then for each subset
  `rng.choice(N_a, m, replace=False)` followed by `rng.choice(N_b, m, replace=False)`.
  When both sets have at most `subset_size` rows every subset is the whole set and
  the std is 0. Unlike FID, KID is unbiased, so it can be negative for close sets.

  Args:
    act_a: [N_a, D] activations.
    act_b: [N_b, D] activations.
    subset_size: rows per subset (default 1000, as in the paper).
    num_subsets: number of subset pairs (default 100, as in the paper).
    seed: seed of the subset draws (the result is deterministic given it).

  Returns:
    (mean, std) of the per-subset squared-MMD estimates.

  Raises:
    ValueError: bad shapes, mismatched D, non-finite values, subset_size < 2 or
      num_subsets < 1.
  """
  a = _as_2d_float64(act_a, "act_a")
  b = _as_2d_float64(act_b, "act_b")
  _same_dim(a, b, "act_a", "act_b")
  if subset_size < 2 or num_subsets < 1:
    raise ValueError(f"subset_size={subset_size} must be >= 2 and num_subsets="
                     f"{num_subsets} >= 1.")
  m = min(subset_size, a.shape[0], b.shape[0])
  rng = np.random.default_rng(seed)
  estimates = []
  for _ in range(num_subsets):
    sub_a = a[rng.choice(a.shape[0], m, replace=False)]
    sub_b = b[rng.choice(b.shape[0], m, replace=False)]
    with _quiet_tfgan_map_fn():
      estimates.append(float(tfgan_eval.kernel_classifier_distance_from_activations(
          tf.constant(sub_a, tf.float64), tf.constant(sub_b, tf.float64),
          max_block_size=m)))
  estimates = np.asarray(estimates)
  return float(estimates.mean()), float(estimates.std())


def _labels_1d(y, n: int, name: str) -> np.ndarray:
  labels = np.asarray(y.numpy() if isinstance(y, tf.Tensor) else y)
  if labels.ndim != 1 or labels.shape[0] != n:
    raise ValueError(f"{name} must be a 1-D array of {n} labels, got shape {labels.shape}.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{name} must hold integer class ids, got dtype {labels.dtype}.")
  return labels.astype(np.int64)


def intra_class_fid(act_gen, y_gen, act_real, y_real) -> Tuple[float, Dict[int, float]]:
  """Intra-class FID: FID computed within each class, averaged over classes.

  Miyato & Koyama, "cGANs with Projection Discriminator" (ICLR 2018) use it to
  check that a conditional generator matches each class, not only the mixture
  (FID of Heusel et al. 2017 per class, via `fid`). The classes are those present
  in `y_real`; each needs at least 2 generated and 2 real samples. Per-class sets are
  small, so values are much larger than the overall FID and comparable only at equal
  samples per class.

  Args:
    act_gen: [N_g, D] activations of generated samples.
    y_gen: [N_g] int class ids of the generated samples.
    act_real: [N_r, D] activations of real samples.
    y_real: [N_r] int class ids of the real samples.

  Returns:
    (mean over classes, {class id: FID of that class}).

  Raises:
    ValueError: bad shapes, or a real class with fewer than 2 samples in either set.
  """
  g = _as_2d_float64(act_gen, "act_gen")
  r = _as_2d_float64(act_real, "act_real")
  _same_dim(g, r, "act_gen", "act_real")
  yg = _labels_1d(y_gen, g.shape[0], "y_gen")
  yr = _labels_1d(y_real, r.shape[0], "y_real")
  per_class: Dict[int, float] = {}
  for c in np.unique(yr):
    n_g, n_r = int((yg == c).sum()), int((yr == c).sum())
    if n_g < 2 or n_r < 2:
      raise ValueError(f"class {c} has {n_g} generated and {n_r} real samples; "
                       "intra-class FID needs at least 2 of each per class.")
    per_class[int(c)] = fid(g[yg == c], r[yr == c])
  return float(np.mean(list(per_class.values()))), per_class


def class_accuracy(logits, labels) -> float:
  """Fraction of samples whose arg-max logit is their (conditioning) class.

  For a conditional generator this measures whether samples show the class they
  were asked for, judged by a classifier trained on real data (the "classification
  accuracy" of conditional samples in, e.g., the PPCD-GAN and BigGAN-compression
  literature). Ties resolve to the lowest index (numpy `argmax`).

  Args:
    logits: [N, K] classifier outputs.
    labels: [N] int class ids in [0, K).

  Returns:
    Accuracy in [0, 1].

  Raises:
    ValueError: bad shapes, non-finite logits or labels outside [0, K).
  """
  x = _as_2d_float64(logits, "logits", min_rows=1)
  y = _labels_1d(labels, x.shape[0], "labels")
  if y.min() < 0 or y.max() >= x.shape[1]:
    raise ValueError(f"labels must lie in [0, {x.shape[1]}) for {x.shape[1]} logits; "
                     f"got range [{y.min()}, {y.max()}].")
  return float(np.mean(np.argmax(x, axis=1) == y))

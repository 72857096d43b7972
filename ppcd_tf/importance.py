"""How much each channel of a masked generator matters: the rankings pruning uses.

`PruningController` (ppcd_tf.pruning) removes the channels with the lowest ranking
key first. Where the importance comes from is `--prune_importance`:

* `learned`: the mask's trained score, `sigmoid(score)` (scores trained through the
  straight-through mask with a cost-weighted L1 term).
* `taylor`: first-order Taylor importance of each channel's gate (Molchanov et al.
  2019, "Importance Estimation for Neural Network Pruning", CVPR): the squared
  gradient of G's training loss (adversarial + distillation) with respect to the
  mask value, averaged over the steps since the last pruning event. It estimates how
  much the loss would change without the channel, on one scale for every layer, so
  a channel the loss needs outranks a cheaper one it does not. Accumulated by the
  trainer (`Trainer.taylor_importance`); the mask scores do not train.
* `cost`: every channel equally important, so the ranking is by cost alone (the
  ablation that shows what an importance adds).
* `l1`: the L1 norm of the filter that writes the channel (Li et al. 2017, "Pruning
  Filters for Efficient ConvNets", ICLR), divided by its mask's mean so that masks
  of different fan-in rank on one scale. Computed from the current weights at every
  event; with `--prune_schedule=constant` and one event at step 0 it is the classic
  "prune once, then fine-tune" baseline.
* `uniform_l1`: no global ranking. Every mask keeps the same fraction of its full
  width (the largest fraction whose generator fits the budget, `uniform_widths`),
  each keeping its channels of largest L1 filter norm: uniform-width slimming.

The filters, on the effective (spectrally normalised) kernels `W / sigma`:
  stem          the stem linear's 4x4 output units of the channel;
  block<i>/mid  conv1's output filter;
  block<i>/out  conv2's and conv_sc's output filters together (both write the
                channel of the residual sum).
BigGAN-deep: block<i>/mid<j> is conv<j>'s output filter, block<i>/out conv3's (its
skip carries an input channel unweighted).
A conditional BatchNorm follows conv1 and the stem, so their filter norms are only a
proxy of what the channel contributes; that is the baseline as published, kept as it
is (the learned scores see the loss instead).
"""

from __future__ import annotations

import math
from typing import Dict

import numpy as np

from ppcd_tf.config import IMPORTANCES  # one list: the config validates against it
from ppcd_tf.generator import BOTTOM_WIDTH, GeneratorChannels

__all__ = ["IMPORTANCES", "l1_filter_norms", "normalised", "uniform_widths",
           "uniform_keep"]



def _effective_kernel(layer) -> np.ndarray:
  """The kernel a spectral-norm layer applies at inference: raw / sigma."""
  raw = layer._raw_weight().numpy()  # pylint: disable=protected-access
  return raw / float(layer.spectral_sigma(training=False))


def l1_filter_norms(generator) -> Dict[str, np.ndarray]:
  """{mask name: [C] L1 norm of each channel's producing filter(s)} (module doc).

  Pruned channels are included (their norms are whatever their weights are); the
  caller ranks live channels only.
  """
  ch = generator.channels
  stem = np.abs(_effective_kernel(generator.stem))
  out = {"stem": stem.reshape(-1, BOTTOM_WIDTH * BOTTOM_WIDTH, ch.stem).sum(axis=(0, 1))}
  norm = lambda layer: np.abs(_effective_kernel(layer)).sum(axis=(0, 1, 2))  # noqa: E731
  for i, block in enumerate(generator.blocks):
    if generator.model_cfg.deep:  # mid<j>: conv<j>; out: conv3 (the skip has no filter)
      for j, name in enumerate(ch.mid_names(i)):
        out[name] = norm(getattr(block, f"conv{j}"))
      out[f"block{i}/out"] = norm(block.conv3)
    else:
      out[f"block{i}/mid"] = norm(block.conv1)
      out[f"block{i}/out"] = norm(block.conv2) + norm(block.conv_sc)
  return out


def normalised(norms: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Each mask's norms divided by their mean (1 = an average channel of that mask)."""
  result = {}
  for name, v in norms.items():
    mean = float(np.mean(v))
    result[name] = v / mean if mean > 0 else np.ones_like(v)
  return result


def _scaled(full: GeneratorChannels, fraction: float, min_channels: int) -> GeneratorChannels:
  s = lambda c: max(min(min_channels, c), int(math.floor(fraction * c + 1e-9)))  # noqa: E731
  return GeneratorChannels(stem=s(full.stem), mid=tuple(map(s, full.mid)),
                           out=tuple(map(s, full.out)))


def uniform_widths(model_cfg, full: GeneratorChannels, budget: float, metric: str = "params",
                   min_channels: int = 1) -> GeneratorChannels:
  """Widths `floor(f * full)` (at least `min_channels`) for the largest f in [0, 1]
  whose generator costs at most `budget` ('params' or 'macs').

  Raises:
    ValueError: even `min_channels` channels everywhere cost more than the budget.
  """
  from ppcd_tf import flops

  def cost(widths: GeneratorChannels) -> int:
    report = flops.generator_cost(model_cfg, widths)
    return report.total_params if metric == "params" else report.total_macs

  if cost(full) <= budget:
    return full
  smallest = _scaled(full, 0.0, min_channels)
  if cost(smallest) > budget:
    raise ValueError(
        f"budget {budget:,.0f} {metric} is below the generator with {min_channels} "
        f"channel(s) in every layer ({cost(smallest):,} {metric}); raise the budget.")
  lo, hi = 0.0, 1.0  # cost(lo) <= budget < cost(hi); widths step at c * f integers
  for _ in range(60):
    mid = 0.5 * (lo + hi)
    if cost(_scaled(full, mid, min_channels)) <= budget:
      lo = mid
    else:
      hi = mid
  return _scaled(full, lo, min_channels)


def uniform_keep(generator, budget: float, metric: str = "params", min_channels: int = 1
                 ) -> Dict[str, np.ndarray]:
  """{mask name: live channel indices to keep} for uniform-width slimming to `budget`.

  Each mask keeps `uniform_widths(...)` channels (or all of its live ones, if fewer
  are left): its live channels of largest L1 filter norm, ties to the lower index.
  """
  widths = uniform_widths(generator.model_cfg, generator.channels, budget, metric,
                          min_channels)
  target = widths.widths()
  norms = l1_filter_norms(generator)
  keep = {}
  for name, mask in generator.masks:
    live = mask.live_indices()
    order = np.argsort(-norms[name][live], kind="stable")
    keep[name] = np.sort(live[order[:target[name]]])
  return keep

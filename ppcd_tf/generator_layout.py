"""Generator widths and derived sizes, shared by the model, slimming and cost accounting.

Two block designs (`ModelConfig.arch`):

* "biggan": one up-block per resolution; block i maps `inputs[i]` -> `mid[i]` ->
  `out[i]` (one hidden width, mask "block<i>/mid").
* "biggan_deep" (Brock et al. 2019, appendix B.5 and Table 8): two bottleneck blocks per
  resolution, the first at the same resolution and width, the second upsampling to the
  next width. Block i has three hidden widths (1x1 reduce -> 3x3 -> 3x3 -> 1x1 expand;
  masks "block<i>/mid0".."mid2"), BigGAN-deep's channel ratio 4 (hidden = in / 4), and a
  parameter-free skip that keeps the first `out` input channels ("drops channels").

BigGAN-deep's skip and pruning. Output channel k of a full-width block adds input
channel k. Once masks prune the input and output channels independently, the slim
block's skip is a fixed selection: slim output position p takes slim input position
`skip[p]`, or zero where that input channel was pruned (`skip[p] == in width`). So no
mask has to be tied to another: `GeneratorChannels.skip` records the selection (None =
the full-width prefix rule) and slimming composes it (`compose_skip`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ppcd_tf.config import ModelConfig
from ppcd_tf.layers.attention import attention_widths

__all__ = ["GeneratorChannels", "generator_layout", "slim_architecture",
           "model_config_from_dict", "BOTTOM_WIDTH", "DEEP_CHANNEL_RATIO", "prefix_skip",
           "compose_skip"]

BOTTOM_WIDTH = 4
DEEP_CHANNEL_RATIO = 4  # BigGAN-deep: bottleneck width = block input width / 4


def model_config_from_dict(d: Dict[str, Any]) -> ModelConfig:
  """ModelConfig from `dataclasses.asdict` output (JSON lists become tuples)."""
  names = {f.name for f in dataclasses.fields(ModelConfig)}
  values = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in names}
  return ModelConfig(**values)


def prefix_skip(in_width: int, out_width: int) -> Tuple[int, ...]:
  """Full-width BigGAN-deep skip: output k takes input k; `in_width` (= zero) past it."""
  return tuple(k if k < in_width else in_width for k in range(out_width))


def compose_skip(skip: Sequence[int], live_in: np.ndarray,
                 live_out: np.ndarray) -> Tuple[int, ...]:
  """The skip of a block slimmed to input positions `live_in` and outputs `live_out`.

  Args:
    skip: the source block's skip (its input width means zero, never a live position).
    live_in, live_out: kept input / output positions of the source block.

  Returns:
    For each kept output, its position in `live_in`, or `len(live_in)` (zero) where
    its input channel was pruned or it had none.
  """
  position = {int(c): p for p, c in enumerate(live_in)}
  zero = len(live_in)
  return tuple(position.get(int(skip[int(k)]), zero) for k in live_out)


@dataclasses.dataclass(frozen=True)
class GeneratorChannels:
  """Channel widths of a generator: the stem and, per block, hidden and output.

  Block i maps `inputs[i]` -> `block_mids(i)` -> `out[i]`, where `inputs` is
  `(stem,) + out[:-1]`. `mid` holds `mids_per_block` widths per block, block-major
  (1 for BigGAN, 3 for BigGAN-deep). `skip` (BigGAN-deep only) is each block's skip
  selection (module docstring); None means `prefix_skip` everywhere.
  """
  stem: int
  mid: Tuple[int, ...]
  out: Tuple[int, ...]
  skip: Optional[Tuple[Tuple[int, ...], ...]] = None

  def __post_init__(self):
    object.__setattr__(self, "stem", int(self.stem))
    object.__setattr__(self, "mid", tuple(int(c) for c in self.mid))
    object.__setattr__(self, "out", tuple(int(c) for c in self.out))
    per_block = len(self.mid) // len(self.out) if self.out else 0
    if not self.out or len(self.mid) % len(self.out) or per_block not in (1, 3):
      raise ValueError(f"GeneratorChannels: mid has {len(self.mid)} entries, out "
                       f"{len(self.out)}; give 1 (BigGAN) or 3 (BigGAN-deep) per block.")
    if min((self.stem,) + self.mid + self.out) < 1:
      raise ValueError(f"GeneratorChannels: every width must be >= 1, got {self}.")
    if self.skip is not None:
      skip = tuple(tuple(int(k) for k in s) for s in self.skip)
      object.__setattr__(self, "skip", skip)
      bad = [i for i, s in enumerate(skip) if len(s) != self.out[i]
             or any(k < 0 or k > self.inputs[i] for k in s)]
      if len(skip) != len(self.out) or bad:
        raise ValueError(f"GeneratorChannels: skip must give each block one input "
                         f"position (0..in width) per output channel; blocks {bad} do not.")
      if skip == tuple(prefix_skip(self.inputs[i], self.out[i]) for i in range(len(skip))):
        object.__setattr__(self, "skip", None)  # one spelling of the default

  @classmethod
  def from_model_config(cls, model_cfg: ModelConfig) -> "GeneratorChannels":
    """Explicit `model_cfg.g_channels` (stem, mid..., out...) if set, else the widths of
    the config's design: BigGAN's hidden = out = g_ch*mults[i+1]; BigGAN-deep's two
    blocks per resolution, in/4 hidden."""
    m = model_cfg.resolved()
    k = m.g_mids_per_block
    if m.g_channels:
      c = tuple(m.g_channels)
      n = (len(c) - 1) // (k + 1)
      return cls(stem=c[0], mid=c[1:1 + k * n], out=c[1 + k * n:])
    widths = tuple(m.g_ch * x for x in m.g_channel_mults)
    if not m.deep:
      return cls(stem=widths[0], mid=widths[1:], out=widths[1:])
    mid, out = [], []
    for j in range(len(widths) - 1):
      for block_out in (widths[j], widths[j + 1]):
        mid += [max(1, widths[j] // DEEP_CHANNEL_RATIO)] * 3
        out.append(block_out)
    return cls(stem=widths[0], mid=tuple(mid), out=tuple(out))

  @property
  def num_blocks(self) -> int:
    return len(self.out)

  @property
  def mids_per_block(self) -> int:
    return len(self.mid) // len(self.out)

  @property
  def inputs(self) -> Tuple[int, ...]:
    """Input width of each block."""
    return (self.stem,) + self.out[:-1]

  def block_mids(self, i: int) -> Tuple[int, ...]:
    k = self.mids_per_block
    return self.mid[k * i:k * (i + 1)]

  def block_skip(self, i: int) -> Tuple[int, ...]:
    """Block i's skip selection (BigGAN-deep)."""
    return self.skip[i] if self.skip is not None else prefix_skip(self.inputs[i],
                                                                   self.out[i])

  def mid_names(self, i: int) -> List[str]:
    """Mask names of block i's hidden widths: "block<i>/mid" or "block<i>/mid0".."mid2"."""
    if self.mids_per_block == 1:
      return [f"block{i}/mid"]
    return [f"block{i}/mid{j}" for j in range(self.mids_per_block)]

  def widths(self) -> Dict[str, int]:
    """{mask name: width} in forward order: "stem", then each block's mids and "out"."""
    out = {"stem": self.stem}
    for i in range(self.num_blocks):
      out.update(zip(self.mid_names(i), self.block_mids(i)))
      out[f"block{i}/out"] = self.out[i]
    return out

  def with_widths(self, widths: Dict[str, int]) -> "GeneratorChannels":
    """A copy with the named widths replaced (the skip selection is dropped)."""
    w = dict(self.widths(), **widths)
    mid = tuple(w[n] for i in range(self.num_blocks) for n in self.mid_names(i))
    return GeneratorChannels(stem=w["stem"], mid=mid,
                             out=tuple(w[f"block{i}/out"] for i in range(self.num_blocks)))

  def flat(self) -> Tuple[int, ...]:
    """(stem, mids..., outs...): the `--g_channels` spelling."""
    return (self.stem,) + self.mid + self.out

  def to_dict(self) -> Dict[str, Any]:
    d = {"stem": self.stem, "mid": list(self.mid), "out": list(self.out)}
    if self.skip is not None:
      d["skip"] = [list(s) for s in self.skip]
    return d

  @classmethod
  def from_dict(cls, d: Dict[str, Any]) -> "GeneratorChannels":
    skip = d.get("skip")
    return cls(stem=d["stem"], mid=tuple(d["mid"]), out=tuple(d["out"]),
               skip=tuple(tuple(s) for s in skip) if skip is not None else None)


@dataclasses.dataclass(frozen=True)
class _Layout:
  """Derived sizes shared by the model and the cost accounting."""
  num_blocks: int
  stem_z_dim: int           # width of the stem's input
  cond_dim: int             # conditioning vector width of every CBN
  resolutions: Tuple[int, ...]          # output resolution of each block
  attention: Tuple[Optional[Tuple[int, int]], ...]  # (key, value) widths or None
  upsample: Tuple[bool, ...]            # whether each block doubles the resolution


def generator_layout(model_cfg: ModelConfig) -> _Layout:
  """Sizes derived from a ModelConfig (z split, CBN input width, attention).

  Attention (key, value) widths are `model_cfg.g_attention_widths` if set, else
  C/8, C/2 of the block's config width (never of a slimmed width). BigGAN-deep puts it
  after the up-block into each resolution of `g_attention_res` (after the pair).
  BigGAN-deep conditions the stem and every block on `concat[z, shared(y)]`.
  """
  m = model_cfg.resolved()
  full = GeneratorChannels.from_model_config(m)
  n = full.num_blocks
  if m.deep:
    stem_z = cond = m.z_dim + m.shared_dim
    up = tuple(i % 2 == 1 for i in range(n))
    res = tuple(BOTTOM_WIDTH * 2 ** ((i + 1) // 2) for i in range(n))
  else:
    if m.hierarchical_z:
      chunk = m.z_dim // (n + 1)
      stem_z, cond = chunk, m.shared_dim + chunk
    else:
      stem_z, cond = m.z_dim, m.shared_dim
    up = (True,) * n
    res = tuple(BOTTOM_WIDTH * 2 ** (i + 1) for i in range(n))
  attn = tuple((tuple(m.g_attention_widths) or attention_widths(full.out[i]))
               if res[i] in m.g_attention_res and up[i] else None for i in range(n))
  return _Layout(n, stem_z, cond, res, attn, up)


def slim_architecture(model_cfg: ModelConfig, channels: GeneratorChannels) -> ModelConfig:
  """The config of a dense generator with the architecture of a slimmed one.

  A slim generator (`ppcd_tf.slim.slim_generator`) is `model_cfg` built with
  narrower `channels`; its self-attention keeps the widths of `model_cfg`. The
  returned config has `g_channels` = the flattened `channels` (stem, mids, outs)
  and `g_attention_widths` = those attention widths, so `build_generator` of it
  alone (e.g. training the slim architecture from scratch) has exactly the slim
  generator's variables and parameter count. (A BigGAN-deep skip selection is not a
  config field: the from-scratch network uses the prefix rule, which has no weights.)

  Args:
    model_cfg: the config the slim generator was built from.
    channels: the slim widths, e.g. `masked_generator.live_channels()`.

  Returns:
    A copy of `model_cfg` (`dataclasses.replace`) with `g_channels` and
    `g_attention_widths` set (the latter stays () without G self-attention).

  Raises:
    ValueError: `channels` has the wrong number of blocks, or the attention layers
      of `model_cfg` have different widths (one (key, value) pair cannot hold them).
  """
  layout = generator_layout(model_cfg)
  if channels.num_blocks != layout.num_blocks:
    raise ValueError(f"slim_architecture: channels has {channels.num_blocks} blocks, "
                     f"resolution {model_cfg.resolution} needs {layout.num_blocks}.")
  widths = sorted({a for a in layout.attention if a is not None})
  if len(widths) > 1:
    raise ValueError(f"slim_architecture: the G attention layers have different "
                     f"(key, value) widths {widths}; g_attention_widths holds one pair, "
                     "so keep one --g_attention_res.")
  return dataclasses.replace(
      model_cfg, g_channels=channels.flat(),
      g_attention_widths=tuple(widths[0]) if widths else ())

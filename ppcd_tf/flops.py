"""Parameter and MAC accounting of the generator and discriminator.

Counts are analytic, from the config and the (live) channel widths, so they cost
nothing to compute, work for any pruning state and can be checked against a built
model. For a masked generator only *live* channels count (a channel is live when
its ChannelMask `alive` flag is 1); for an unmasked one, the full widths.

Conventions:
  * Params: trainable parameters of the network proper, i.e. what the slimmed
    generator's `trainable_variables` hold (mask scores and non-trainable state -
    BatchNorm moving statistics, spectral-norm `u` and `sigma` - are not counted;
    BigGAN-PyTorch counts parameters, not buffers, too).
  * MACs: multiply-accumulates per image of convolutions (H_out*W_out*k*k*in*out),
    linear layers (in*out), the CBN gain/bias projections (2*cond_dim*C) and the two
    attention matmuls (HW * HW/4 * C_k and HW * HW/4 * C_v, after the 2x2 max-pool of
    phi and g). Element-wise work (BatchNorm, activations, masks, residual adds,
    softmax, pooling, upsampling) and embedding lookups are not counted. The G
    shortcut 1x1 conv runs before upsampling (`ppcd_tf.layers.blocks`), so it is
    counted at the block's input resolution. D's projection `<embed(y), h>` counts C.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

from ppcd_tf.config import ModelConfig
from ppcd_tf.discriminator import discriminator_layout
from ppcd_tf.generator import BOTTOM_WIDTH, GeneratorChannels, generator_layout

__all__ = ["CostRow", "CostReport", "generator_cost", "discriminator_cost",
           "count_generator", "count_discriminator", "mask_channel_costs",
           "live_params", "live_macs"]


@dataclasses.dataclass(frozen=True)
class CostRow:
  """One layer: name like "block0/conv1", kind, widths, parameters, MACs/image."""
  name: str
  kind: str
  in_ch: int
  out_ch: int
  params: int
  macs: int

  @property
  def block(self) -> str:
    """The first path component ("stem", "block3", "output", ...)."""
    return self.name.split("/", 1)[0]


@dataclasses.dataclass(frozen=True)
class CostReport:
  """Per-layer rows and totals of one network."""
  rows: Tuple[CostRow, ...]

  @property
  def total_params(self) -> int:
    return sum(r.params for r in self.rows)

  @property
  def total_macs(self) -> int:
    return sum(r.macs for r in self.rows)

  def by_block(self) -> Dict[str, Tuple[int, int]]:
    """{block: (params, macs)} in network order."""
    out: Dict[str, List[int]] = {}
    for r in self.rows:
      acc = out.setdefault(r.block, [0, 0])
      acc[0] += r.params
      acc[1] += r.macs
    return {k: (v[0], v[1]) for k, v in out.items()}

  def to_dict(self) -> dict:
    return {"total_params": self.total_params, "total_macs": self.total_macs,
            "blocks": {k: {"params": p, "macs": m} for k, (p, m) in self.by_block().items()},
            "rows": [dataclasses.asdict(r) for r in self.rows]}

  def format_table(self, title: str = "", per_layer: bool = False) -> str:
    """A plain-text table per block (or per layer) with params, MACs and shares."""
    tp, tm = max(self.total_params, 1), max(self.total_macs, 1)
    lines = [title] if title else []
    if per_layer:
      head = (f"{'layer':<26} {'kind':<10} {'in':>6} {'out':>6} {'params':>14} {'%':>6} "
              f"{'MACs':>16} {'%':>6}")
      body = [f"{r.name:<26} {r.kind:<10} {r.in_ch:>6} {r.out_ch:>6} {r.params:>14,} "
              f"{100 * r.params / tp:>6.2f} {r.macs:>16,} {100 * r.macs / tm:>6.2f}"
              for r in self.rows]
      pad = 26 + 10 + 6 + 6 + 3
    else:
      head = f"{'block':<12} {'params':>14} {'%':>6} {'MACs':>16} {'%':>6}"
      body = [f"{name:<12} {p:>14,} {100 * p / tp:>6.2f} {m:>16,} {100 * m / tm:>6.2f}"
              for name, (p, m) in self.by_block().items()]
      pad = 12
    lines += [head, "-" * len(head)] + body + ["-" * len(head)]
    lines.append(f"{'total':<{pad}} {self.total_params:>14,} {100.0:>6.2f} "
                 f"{self.total_macs:>16,} {100.0:>6.2f}")
    return "\n".join(lines)


def _conv(name, k, cin, cout, res, bias=True, kind=None) -> CostRow:
  return CostRow(name, kind or f"conv{k}x{k}", cin, cout,
                 k * k * cin * cout + (cout if bias else 0), res * res * k * k * cin * cout)


def _linear(name, cin, cout, bias=True, kind="linear") -> CostRow:
  return CostRow(name, kind, cin, cout, cin * cout + (cout if bias else 0), cin * cout)


def _attention(prefix, channels, key, value, res) -> List[CostRow]:
  n, m = res * res, (res // 2) * (res // 2)
  return [
      _conv(f"{prefix}/theta", 1, channels, key, res, bias=False),
      _conv(f"{prefix}/phi", 1, channels, key, res, bias=False),
      _conv(f"{prefix}/g", 1, channels, value, res, bias=False),
      CostRow(f"{prefix}/scores", "matmul", key, m, 0, n * m * key),
      CostRow(f"{prefix}/values", "matmul", m, value, 0, n * m * value),
      _conv(f"{prefix}/o", 1, value, channels, res, bias=False),
      CostRow(f"{prefix}/gamma", "scalar", 0, 0, 1, 0),
  ]


def _generator_rows(model_cfg: ModelConfig, stem: int, mid: Sequence[int],
                    out: Sequence[int]) -> List[CostRow]:
  # No width validation: mask_channel_costs evaluates widths one below the live
  # count, which may be 0 (the cost is affine in every width).
  m = model_cfg.resolved()
  layout = generator_layout(m)
  cond = layout.cond_dim
  rows = [CostRow("shared/embedding", "embedding", m.num_classes, m.shared_dim,
                  m.num_classes * m.shared_dim, 0),
          _linear("stem/linear", layout.stem_z_dim, BOTTOM_WIDTH * BOTTOM_WIDTH * stem)]
  k = len(mid) // len(out)
  cin = stem
  for i in range(layout.num_blocks):
    res_out = layout.resolutions[i]
    res_in = res_out // 2 if layout.upsample[i] else res_out
    b, mids = f"block{i}", list(mid[k * i:k * (i + 1)])
    if m.deep:  # BigGAN-deep: conv0 runs before the upsampling, the skip is free
      ins, outs = [cin] + mids, mids + [out[i]]
      for j in range(4):
        rows += [CostRow(f"{b}/bn{j}", "cbn", cond, ins[j], 2 * cond * ins[j],
                         2 * cond * ins[j]),
                 _conv(f"{b}/conv{j}", 1 if j in (0, 3) else 3, ins[j], outs[j],
                       res_in if j == 0 else res_out)]
    else:
      rows += [
          CostRow(f"{b}/bn1", "cbn", cond, cin, 2 * cond * cin, 2 * cond * cin),
          _conv(f"{b}/conv1", 3, cin, mids[0], res_out),
          CostRow(f"{b}/bn2", "cbn", cond, mids[0], 2 * cond * mids[0],
                  2 * cond * mids[0]),
          _conv(f"{b}/conv2", 3, mids[0], out[i], res_out),
          _conv(f"{b}/conv_sc", 1, cin, out[i], res_in),
      ]
    if layout.attention[i]:
      rows += _attention(f"{b}/attention", out[i], *layout.attention[i], res_out)
    cin = out[i]
  rows += [CostRow("output/bn", "bn", cin, cin, 2 * cin, 0),
           _conv("output/conv", 3, cin, m.image_channels, m.resolution)]
  return rows


def generator_cost(model_cfg: ModelConfig,
                   channels: Optional[GeneratorChannels] = None) -> CostReport:
  """Cost of a dense generator with the given widths (default: the config's)."""
  ch = channels or GeneratorChannels.from_model_config(model_cfg)
  return CostReport(tuple(_generator_rows(model_cfg, ch.stem, ch.mid, ch.out)))


def discriminator_cost(model_cfg: ModelConfig) -> CostReport:
  """Cost of the discriminator of `model_cfg`."""
  m = model_cfg.resolved()
  layout = discriminator_layout(m)
  rows: List[CostRow] = []
  res = m.resolution
  if m.deep:
    rows.append(_conv("input_conv", 3, m.image_channels, layout.input_conv, res))
  for i, (cin, cout) in enumerate(zip(layout.in_channels, layout.out_channels)):
    b, res_out = f"block{i}", layout.resolutions[i]
    if m.deep:  # 1x1, 3x3, 3x3 at the input size, pool, 1x1; the widening conv after it
      hid = max(1, cout // 4)
      rows += [_conv(f"{b}/conv0", 1, cin, hid, res), _conv(f"{b}/conv1", 3, hid, hid, res),
               _conv(f"{b}/conv2", 3, hid, hid, res),
               _conv(f"{b}/conv3", 1, hid, cout, res_out)]
      if cout > cin:
        rows.append(_conv(f"{b}/conv_sc", 1, cin, cout - cin, res_out))
      if layout.attention[i]:
        rows += _attention(f"{b}/attention", cout, *layout.attention[i], res_out)
      res = res_out
      continue
    rows += [_conv(f"{b}/conv1", 3, cin, cout, res), _conv(f"{b}/conv2", 3, cout, cout, res)]
    if cin != cout or layout.downsample[i]:
      # Block 0 pools before its shortcut conv, the others after (DBlock).
      rows.append(_conv(f"{b}/conv_sc", 1, cin, cout, res if i > 0 else res_out))
    if layout.attention[i]:
      rows += _attention(f"{b}/attention", cout, *layout.attention[i], res_out)
    res = res_out
  c = layout.out_channels[-1]
  rows += [_linear("head/linear", c, 1),
           CostRow("head/embed", "embedding", m.num_classes, c, m.num_classes * c, c)]
  return CostReport(tuple(rows))


def count_generator(generator) -> CostReport:
  """Cost of `generator` counting only live channels (see module docstring)."""
  return generator_cost(generator.model_cfg, generator.live_channels())


def count_discriminator(discriminator) -> CostReport:
  """Cost of `discriminator` (no masks)."""
  return discriminator_cost(discriminator.model_cfg)


def live_params(generator) -> int:
  """Trainable parameters of the live network (== the slimmed generator's)."""
  return count_generator(generator).total_params


def live_macs(generator) -> int:
  """MACs per image of the live network."""
  return count_generator(generator).total_macs


def mask_channel_costs(generator) -> Dict[str, Tuple[int, int]]:
  """{mask name: (params, macs)} saved by pruning one more live channel of it.

  The costs are exact for the current live state of every *other* mask (a
  channel's cost depends on the widths of the layers it connects to), so the
  pruning controller should recompute them after each pruning event.
  """
  ch = generator.live_channels()
  cfg = generator.model_cfg
  names = list(ch.widths())

  def total(widths: Dict[str, int]):
    mid = [widths[n] for i in range(ch.num_blocks) for n in ch.mid_names(i)]
    out = [widths[f"block{i}/out"] for i in range(ch.num_blocks)]
    rows = _generator_rows(cfg, widths["stem"], mid, out)
    return sum(r.params for r in rows), sum(r.macs for r in rows)

  live = ch.widths()
  base = total(live)
  costs = {}
  for name in names:
    p, m = total(dict(live, **{name: live[name] - 1}))
    costs[name] = (base[0] - p, base[1] - m)
  return {name: costs[name] for name, _ in generator.masks} if generator.masks else costs

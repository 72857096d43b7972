"""Architecture checks: facts read off the tensor shapes, compared with a config."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from ppcd_tf.biggan_import.common import _BOTTOM, StateDict


def _block_indices(state: StateDict, suffix: str) -> List[int]:
  pattern = re.compile(r"^blocks\.(\d+)\." + re.escape(suffix) + "$")
  return sorted(int(m.group(1)) for k in state for m in [pattern.match(k)] if m)


def _shape(state: StateDict, key: str) -> Optional[Tuple[int, ...]]:
  return tuple(state[key].shape) if key in state else None


def infer_architecture(g_state: Optional[StateDict] = None,
                       d_state: Optional[StateDict] = None) -> Dict[str, Any]:
  """Architecture facts read off the tensor shapes (missing tensors are skipped).

  Returns a dict with any of: resolution, num_classes, image_channels, z_dim,
  shared_dim, hierarchical_z, g_widths (stem + block outputs), g_attention_blocks,
  d_image_channels, d_num_classes, d_widths, d_shortcut (per block: has conv_sc),
  d_attention_blocks. G facts: number of blocks -> resolution = 4 * 2**blocks, stem
  width = linear outputs / 16, shared embedding -> classes and shared_dim, CBN input
  width - shared_dim = z chunk (> 0: hierarchical, z_dim = chunk * (blocks + 1)).
  """
  facts: Dict[str, Any] = {}
  if g_state is not None:
    s = g_state
    blocks = _block_indices(s, "0.conv1.weight")
    if blocks:
      facts["resolution"] = _BOTTOM * 2 ** len(blocks)
    shared = _shape(s, "shared.weight")
    if shared:
      facts["num_classes"], facts["shared_dim"] = shared
    lin = _shape(s, "linear.weight")
    widths = [lin[0] // (_BOTTOM * _BOTTOM) if lin and lin[0] % (_BOTTOM * _BOTTOM) == 0
              else None]
    widths += [_shape(s, f"blocks.{i}.0.conv1.weight")[0] for i in blocks]
    facts["g_widths"] = tuple(widths)
    cond = _shape(s, "blocks.0.0.bn1.gain.weight")
    if lin and cond and shared:
      chunk = cond[1] - shared[1]
      facts["hierarchical_z"] = chunk > 0
      facts["z_dim"] = lin[1] * (len(blocks) + 1) if chunk > 0 else lin[1]
      if chunk > 0 and chunk != lin[1]:
        facts["z_chunk_conflict"] = (lin[1], chunk)
    out = _shape(s, "output_layer.2.weight")
    if out:
      facts["image_channels"] = out[0]
    facts["g_attention_blocks"] = tuple(_block_indices(s, "1.gamma"))
  if d_state is not None:
    s = d_state
    blocks = _block_indices(s, "0.conv1.weight")
    facts["d_widths"] = tuple(_shape(s, f"blocks.{i}.0.conv1.weight")[0] for i in blocks)
    if blocks:
      facts["d_image_channels"] = _shape(s, "blocks.0.0.conv1.weight")[1]
    facts["d_shortcut"] = tuple(f"blocks.{i}.0.conv_sc.weight" in s for i in blocks)
    facts["d_attention_blocks"] = tuple(_block_indices(s, "1.gamma"))
    embed = _shape(s, "embed.weight")
    if embed:
      facts["d_num_classes"] = embed[0]
  return facts


def check_against_config(facts: Dict[str, Any], model_cfg) -> List[str]:
  """Differences between inferred `facts` and a `ModelConfig` (empty list = match).

  g_ch / d_ch are inferred as stem width / g_channel_mults[0] and first D width /
  d_channel_mults[0]: multipliers from the config, or BigGAN's for the checkpoint's
  resolution (G: from its number of blocks) or number of D blocks if those differ.
  """
  from ppcd_tf import config as config_lib
  m = model_cfg.resolved()
  diffs: List[str] = []

  def differ(name, found, expected, hint=""):
    if found is not None and found != expected:
      diffs.append(f"{name}: {found!r} in the checkpoint vs {expected!r} in the config"
                   + (f" ({hint})" if hint else ""))

  res = facts.get("resolution")
  differ("resolution", res, m.resolution, "from the number of G blocks")
  for key, name in (("num_classes", "num_classes (G shared embedding)"),
                    ("d_num_classes", "num_classes (D embed)")):
    differ(name, facts.get(key), m.num_classes)
  differ("image_channels", facts.get("image_channels"), m.image_channels)
  differ("image_channels (D input)", facts.get("d_image_channels"), m.image_channels)
  differ("shared_dim", facts.get("shared_dim"), m.shared_dim)
  differ("hierarchical_z", facts.get("hierarchical_z"), m.hierarchical_z)
  differ("z_dim", facts.get("z_dim"), m.z_dim,
         "linear input width x (blocks + 1) with hierarchical z")
  if "z_chunk_conflict" in facts:
    lin, chunk = facts["z_chunk_conflict"]
    diffs.append(f"z chunk: the stem takes {lin} z entries but the CBN layers {chunk}; "
                 "BigGAN-PyTorch splits z into equal chunks")

  g_widths = facts.get("g_widths")
  if g_widths:
    mults = m.g_channel_mults
    if res and res != m.resolution and res in config_lib.ARCHITECTURES:
      mults = config_lib.ARCHITECTURES[res].g_channel_mults
    expected = tuple(m.g_ch * k for k in m.g_channel_mults)
    if tuple(g_widths) != expected:
      g_ch = (g_widths[0] // mults[0]) if g_widths[0] and len(mults) else None
      diffs.append(
          f"G widths (stem, block outputs): {tuple(g_widths)} in the checkpoint vs "
          f"{expected} in the config (g_ch={m.g_ch}, g_channel_mults="
          f"{','.join(map(str, m.g_channel_mults))}); the stem suggests g_ch={g_ch}")
  if "g_attention_blocks" in facts and g_widths:
    found = tuple(_BOTTOM * 2 ** (i + 1) for i in facts["g_attention_blocks"])
    differ("g_attention_res", found, tuple(sorted(m.g_attention_res)),
           "resolutions of the G blocks followed by attention")

  d_widths = facts.get("d_widths")
  if d_widths is not None:
    expected = tuple(m.d_ch * k for k in m.d_channel_mults)
    if tuple(d_widths) != expected:
      # D block 0 outputs d_ch * d_channel_mults[0] (BigGAN-PyTorch's D_arch), with
      # the multipliers of the layout that has the checkpoint's number of D blocks.
      mults, layout = m.d_channel_mults, ""
      fits = [(r, a.d_channel_mults) for r, a in config_lib.ARCHITECTURES.items()
              if len(a.d_channel_mults) == len(d_widths)]
      if len(d_widths) != len(mults) and len(fits) == 1:
        (r, mults), = fits
        layout = (f" ({len(d_widths)} D blocks: BigGAN's {r} px layout, "
                  f"d_channel_mults={','.join(map(str, mults))})")
      d_ch = d_widths[0] // mults[0] if d_widths and mults else None
      diffs.append(
          f"D widths: {tuple(d_widths)} in the checkpoint vs {expected} in the config "
          f"(d_ch={m.d_ch}, d_channel_mults={','.join(map(str, m.d_channel_mults))}); "
          f"the first block suggests d_ch={d_ch}{layout}")
    else:
      ins = (m.image_channels,) + expected[:-1]
      want_sc = tuple(i != o or bool(dn) for i, o, dn in zip(ins, expected, m.d_downsample))
      if tuple(facts.get("d_shortcut", want_sc)) != want_sc:
        diffs.append(
            f"D shortcut convs (per block) {facts['d_shortcut']} in the checkpoint vs "
            f"{want_sc} for d_downsample={','.join(str(int(d)) for d in m.d_downsample)}"
            " (a block has conv_sc when it downsamples or changes width)")
      size, res_d = m.resolution, []
      for down in m.d_downsample:
        size = size // 2 if down else size
        res_d.append(size)
      found = tuple(sorted({res_d[i] for i in facts.get("d_attention_blocks", ())
                            if i < len(res_d)}))
      want_blocks = tuple(i for i, r in enumerate(res_d) if r in m.d_attention_res)
      if tuple(facts.get("d_attention_blocks", want_blocks)) != want_blocks:
        diffs.append(
            f"D attention after blocks {facts['d_attention_blocks']} (resolutions "
            f"{found}) in the checkpoint vs blocks {want_blocks} for d_attention_res="
            f"{','.join(map(str, m.d_attention_res))}")
  return diffs

"""huggingface's pytorch-pretrained-BigGAN release format: config.json, state-dict shapes.

What the format is, read from `pytorch_pretrained_biggan/model.py` and `config.py`
(github.com/huggingface/pytorch-pretrained-BigGAN; BigGAN-deep generators converted
from DeepMind's TF-Hub modules, no discriminator):

* `config.json`: output_dim, z_dim, class_embed_dim, channel_width (ch), num_classes,
  layers (one [up, in_mult, out_mult] per GenBlock), attention_layer_position, eps,
  n_stats. Missing keys take `BigGANConfig`'s defaults (the 128 px model), as
  `BigGANConfig.from_dict` does. class_embed_dim is never read by the model: its
  class embedding is z_dim wide.
* The state dict of `BigGAN`: `embeddings.weight` (a bias-free Linear(num_classes,
  z_dim) applied to a one-hot class vector) and `generator.*`: `gen_z` (SN linear
  2*z_dim -> 4*4*16*ch), `layers.K` (the GenBlocks, with a SelfAttn inserted at index
  attention_layer_position, which shifts later GenBlocks by one), `bn` (unconditional,
  learned weight / bias), `conv_to_rgb` (SN conv3x3 ch -> ch; the first 3 outputs are
  the image). Spectral-norm layers (torch.nn.utils.spectral_norm) store
  `weight_orig`, `weight_u`, `weight_v` (+ `bias`); every BigGANBatchNorm stores
  `running_means` / `running_vars` [n_stats, C].

`ReleaseConfig.check` refuses configs whose generator the ppcd_tf BigGAN-deep layout
cannot express (or the release's own forward could not run): see its docstring.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Dict, List, Optional, Tuple

from ppcd_tf.biggan_import.common import _BOTTOM, BigGANImportError

CONFIG_NAME = "config.json"
WEIGHT_NAMES = ("pytorch_model.bin", "pytorch_model.npz")
RGB = 3  # conv_to_rgb's outputs kept as the image
# BigGANConfig's defaults (pytorch_pretrained_biggan/config.py): biggan-deep-128.
RELEASE_DEFAULTS: Dict[str, Any] = dict(
    output_dim=128, z_dim=128, class_embed_dim=128, channel_width=128, num_classes=1000,
    layers=[[False, 16, 16], [True, 16, 16], [False, 16, 16], [True, 16, 8],
            [False, 8, 8], [True, 8, 4], [False, 4, 4], [True, 4, 2], [False, 2, 2],
            [True, 2, 1]],
    attention_layer_position=8, eps=1e-4, n_stats=51)

Shapes = Dict[str, Tuple[int, ...]]


@dataclasses.dataclass(frozen=True)
class ReleaseConfig:
  """A pytorch-pretrained-BigGAN `config.json` (module docstring)."""
  output_dim: int
  z_dim: int
  class_embed_dim: int
  channel_width: int
  num_classes: int
  layers: Tuple[Tuple[bool, int, int], ...]
  attention_layer_position: int
  eps: float
  n_stats: int
  ignored_keys: Tuple[str, ...] = ()

  @classmethod
  def from_dict(cls, d: Dict[str, Any], what: str = CONFIG_NAME) -> "ReleaseConfig":
    if not isinstance(d, dict):
      raise BigGANImportError(f"{what} holds a {type(d).__name__}, not a JSON object.")
    values = dict(RELEASE_DEFAULTS, **d)
    try:
      layers = tuple((bool(u), int(i), int(o)) for u, i, o in values["layers"])
      return cls(**{k: (type(RELEASE_DEFAULTS[k])(values[k]) if k != "layers" else layers)
                    for k in RELEASE_DEFAULTS},
                 ignored_keys=tuple(sorted(set(d) - set(RELEASE_DEFAULTS))))
    except (TypeError, ValueError) as e:
      raise BigGANImportError(f"{what}: {e}; it must hold the fields of "
                              f"pytorch-pretrained-BigGAN's BigGANConfig "
                              f"({', '.join(RELEASE_DEFAULTS)}).") from e

  @property
  def num_resolutions(self) -> int:
    return len(self.layers) // 2

  @property
  def g_channel_mults(self) -> Tuple[int, ...]:
    """ppcd_tf's `g_channel_mults`: each pair's width, then the last output's."""
    return tuple(self.layers[2 * j][1] for j in range(self.num_resolutions)) + (
        self.layers[-1][2],)

  @property
  def attention_block(self) -> Optional[int]:
    """The GenBlock the SelfAttn follows (None: no attention, the position is past
    the last GenBlock, which the release's loop never reaches)."""
    pos = self.attention_layer_position
    return pos - 1 if 0 <= pos < len(self.layers) else None

  @property
  def attention_res(self) -> Tuple[int, ...]:
    b = self.attention_block
    if b is None:
      return ()
    return (_BOTTOM * 2 ** sum(up for up, _, _ in self.layers[:b + 1]),)

  def module_index(self, block: int) -> int:
    """Index of GenBlock `block` in `generator.layers` (the SelfAttn shifts it)."""
    pos = self.attention_layer_position
    return block + (1 if 0 <= pos <= block else 0)

  def check(self) -> None:
    """Raises BigGANImportError naming every unsupported setting.

    Supported: pairs of GenBlocks [False, m, m], [True, m, m'] (BigGAN-deep; the
    ppcd_tf layout) with m' = m or m // 2 (the release's skip keeps in // 2 channels,
    so other widths cannot run there), starting at 16 (gen_z emits 16 * ch channels)
    and ending at 1 (its final BatchNorm has ch); output_dim = 4 * 2**pairs; the
    attention after an upsampling block (or none), at least 8 channels wide.
    """
    problems: List[str] = []
    ch, layers = self.channel_width, self.layers
    if not layers or len(layers) % 2:
      problems.append(f"layers has {len(layers)} entries; BigGAN-deep has two per "
                      "resolution")
    else:
      for j in range(self.num_resolutions):
        (up0, i0, o0), (up1, i1, o1) = layers[2 * j], layers[2 * j + 1]
        if up0 or not up1 or i0 != o0 or i1 != i0 or (o1 != i1 and o1 * ch != i1 * ch // 2):
          problems.append(f"layers[{2 * j}:{2 * j + 2}] = {[list(layers[2 * j]), list(layers[2 * j + 1])]}"
                          " is not a pair [False, m, m], [True, m, m or m/2]")
        if j + 1 < self.num_resolutions and layers[2 * j + 2][1] != o1:
          problems.append(f"layers[{2 * j + 2}] reads {layers[2 * j + 2][1]} x ch but "
                          f"layers[{2 * j + 1}] writes {o1} x ch")
      if layers[0][1] != 16:
        problems.append(f"layers[0] reads {layers[0][1]} x ch; gen_z emits 16 x ch")
      if layers[-1][2] != 1:
        problems.append(f"layers[-1] writes {layers[-1][2]} x ch; the final BatchNorm "
                        "reads 1 x ch")
      if self.output_dim != _BOTTOM * 2 ** self.num_resolutions:
        problems.append(f"output_dim={self.output_dim}, but {self.num_resolutions} "
                        f"upsamplings give {_BOTTOM * 2 ** self.num_resolutions}")
      b = self.attention_block
      if self.attention_layer_position == 0:
        problems.append("attention_layer_position=0 (attention on gen_z's output) has "
                        "no ppcd_tf layer")
      elif b is not None and not layers[b][0]:
        problems.append(f"attention_layer_position={self.attention_layer_position} "
                        "follows a block that does not upsample; ppcd_tf puts "
                        "attention after the upsampling block of a resolution")
      elif b is not None and ch * layers[b][2] < 8:
        problems.append(f"the attention is {ch * layers[b][2]} channels wide; its "
                        "key width is channels // 8")
      if min(ch * i // 4 for _, i, _ in layers) < 1:
        problems.append(f"channel_width={ch} gives GenBlocks an empty bottleneck")
    if ch < RGB:
      problems.append(f"channel_width={ch} < 3: conv_to_rgb has fewer than 3 outputs")
    if self.n_stats < 2:
      problems.append(f"n_stats={self.n_stats} must be >= 2")
    if not self.eps > 0:
      problems.append(f"eps={self.eps} must be > 0")
    if self.z_dim < 1 or self.num_classes < 1:
      problems.append(f"z_dim={self.z_dim} and num_classes={self.num_classes} must be "
                      ">= 1")
    if problems:
      raise BigGANImportError("config.json describes a generator this importer does not "
                              "support: " + "; ".join(problems) + ".")


def _sn(prefix: str, out: int, inp: int, kernel: int = 0, bias: bool = True) -> Shapes:
  weight = (out, inp, kernel, kernel) if kernel else (out, inp)
  shapes = {f"{prefix}.weight_orig": weight, f"{prefix}.weight_u": (out,),
            f"{prefix}.weight_v": (inp * max(kernel, 1) ** 2,)}
  if bias:
    shapes[f"{prefix}.bias"] = (out,)
  return shapes


def _bn_stats(prefix: str, n: int, c: int) -> Shapes:
  return {f"{prefix}.running_means": (n, c), f"{prefix}.running_vars": (n, c)}


def release_shapes(rc: ReleaseConfig) -> Shapes:
  """Every key of the release's state dict with its shape (module docstring)."""
  ch, cond, n = rc.channel_width, 2 * rc.z_dim, rc.n_stats
  shapes: Shapes = {"embeddings.weight": (rc.z_dim, rc.num_classes)}
  shapes.update(_sn("generator.gen_z", _BOTTOM * _BOTTOM * 16 * ch, cond))
  for i, (_, in_mult, out_mult) in enumerate(rc.layers):
    p = f"generator.layers.{rc.module_index(i)}"
    c_in, c_out = ch * in_mult, ch * out_mult
    mid = c_in // 4
    for j, c in enumerate((c_in, mid, mid, mid)):
      shapes.update(_bn_stats(f"{p}.bn_{j}", n, c))
      for part in ("scale", "offset"):
        shapes.update(_sn(f"{p}.bn_{j}.{part}", c, cond, bias=False))
    for j, (o, i_, k) in enumerate(((mid, c_in, 1), (mid, mid, 3), (mid, mid, 3),
                                    (c_out, mid, 1))):
      shapes.update(_sn(f"{p}.conv_{j}", o, i_, k))
  if rc.attention_block is not None:
    p = f"generator.layers.{rc.attention_layer_position}"
    c = ch * rc.layers[rc.attention_layer_position][1]
    for name, o, i_ in (("theta", c // 8, c), ("phi", c // 8, c), ("g", c // 2, c),
                        ("o_conv", c, c // 2)):
      shapes.update(_sn(f"{p}.snconv1x1_{name}", o, i_, 1, bias=False))
    shapes[f"{p}.gamma"] = (1,)
  shapes.update(_bn_stats("generator.bn", n, ch))
  shapes.update({"generator.bn.weight": (ch,), "generator.bn.bias": (ch,)})
  shapes.update(_sn("generator.conv_to_rgb", ch, ch, 3))
  return shapes


def release_files(g_dir: str) -> Tuple[str, str]:
  """(config.json, weights) paths in `g_dir`; the weights are pytorch_model.npz (the
  same keys, e.g. written by `--to_npz`) if present, else pytorch_model.bin
  (torch.save, needs torch to read)."""
  if not os.path.isdir(g_dir):
    raise BigGANImportError(
        f"--G={g_dir} is not a directory; pass the directory holding the release's "
        f"{CONFIG_NAME} and {WEIGHT_NAMES[0]} (or {WEIGHT_NAMES[1]}).")
  config_path = os.path.join(g_dir, CONFIG_NAME)
  found = [os.path.join(g_dir, n) for n in WEIGHT_NAMES
           if os.path.isfile(os.path.join(g_dir, n))]
  missing = ([CONFIG_NAME] if not os.path.isfile(config_path) else []) + (
      [" or ".join(WEIGHT_NAMES)] if not found else [])
  if missing:
    raise BigGANImportError(
        f"{g_dir} lacks {' and '.join(missing)}; download both files of a "
        "pytorch-pretrained-BigGAN model (e.g. biggan-deep-128-config.json -> "
        "config.json, biggan-deep-128-pytorch_model.bin -> pytorch_model.bin).")
  return config_path, found[-1]  # the .npz when both are there (--to_npz wrote it)


def read_release_config(path: str) -> ReleaseConfig:
  """The checked `ReleaseConfig` of a config.json file."""
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise BigGANImportError(f"{path} cannot be read as JSON ({e}).") from e
  rc = ReleaseConfig.from_dict(data, path)
  rc.check()
  return rc

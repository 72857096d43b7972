"""Image grids as PNG files and TensorBoard images.

Images are float NHWC in [-1, 1] (1 or 3 channels); grids are uint8 HxWx3.
"""

from typing import Optional

import numpy as np

from ppcd_tf import files

__all__ = ["to_uint8", "make_grid", "save_png", "save_grid", "save_side_by_side"]


def to_uint8(images) -> np.ndarray:
  """[-1, 1] floats -> uint8 [0, 255], grayscale repeated to RGB."""
  x = np.asarray(images, dtype=np.float32)
  if x.ndim == 3:
    x = x[None]
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f"images must be NHWC with 1 or 3 channels, got shape {x.shape}")
  x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
  x = np.clip((x + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return x


def make_grid(images, rows: Optional[int] = None, pad: int = 2) -> np.ndarray:
  """Tiles N images into `rows` rows (default: near-square), with a gray border."""
  x = to_uint8(images)
  n, h, w, c = x.shape
  if n == 0:
    raise ValueError("make_grid needs at least one image")
  rows = rows or int(np.floor(np.sqrt(n)))
  rows = max(1, min(rows, n))
  cols = int(np.ceil(n / rows))
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 128, np.uint8)
  for i in range(n):
    r, col = divmod(i, cols)
    y0, x0 = pad + r * (h + pad), pad + col * (w + pad)
    grid[y0:y0 + h, x0:x0 + w] = x[i]
  return grid


def save_png(array: np.ndarray, path: str) -> str:
  """Writes a uint8 HxWx3 array as PNG atomically (temp file, then rename)."""
  from PIL import Image
  return files.write_atomically(
      path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


def save_grid(images, path: str, rows: Optional[int] = None) -> str:
  """`make_grid` then `save_png`. Returns the path."""
  return save_png(make_grid(images, rows=rows), path)


def save_side_by_side(panels, path: str, dpi: int = 150) -> str:
  """One PNG with the PNG files `panels` = [(png_path, title), ...] in a row, titled."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.image as mpimg
  import matplotlib.pyplot as plt
  fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.2), squeeze=False)
  for ax, (png, title) in zip(axes[0], panels):
    ax.imshow(mpimg.imread(png))
    ax.set_title(title, fontsize=6)
    ax.axis("off")
  fig.tight_layout()
  try:
    return files.write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=dpi))
  finally:
    plt.close(fig)

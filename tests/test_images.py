import os
import tempfile

import numpy as np
from absl.testing import absltest
from PIL import Image

from ppcd_tf import images


class ImagesTest(absltest.TestCase):

  def test_to_uint8_range_and_gray(self):
    x = np.array([-1.0, 0.0, 1.0, 5.0], np.float32).reshape(1, 2, 2, 1)
    u = images.to_uint8(x)
    self.assertEqual(u.shape, (1, 2, 2, 3))
    np.testing.assert_array_equal(u[0, :, :, 0], [[0, 128], [255, 255]])

  def test_grid_layout_and_png(self):
    x = np.linspace(-1, 1, 6 * 4 * 4 * 3).reshape(6, 4, 4, 3)
    g = images.make_grid(x, rows=2, pad=1)
    self.assertEqual(g.shape, (2 * 5 + 1, 3 * 5 + 1, 3))
    np.testing.assert_array_equal(g[1:5, 1:5], images.to_uint8(x)[0])
    np.testing.assert_array_equal(g[6:10, 11:15], images.to_uint8(x)[5])
    with tempfile.TemporaryDirectory() as d:
      p = images.save_grid(x, os.path.join(d, "sub", "g.png"), rows=2)
      self.assertEqual(Image.open(p).size, (3 * 6 + 2, 2 * 6 + 2))  # default pad=2

  def test_side_by_side(self):
    d = tempfile.mkdtemp()
    panels = []
    for i, value in enumerate((-1.0, 1.0)):
      png = images.save_grid(np.full((4, 8, 8, 1), value, np.float32),
                             os.path.join(d, f"g{i}.png"))
      panels.append((png, f"panel {i}"))
    out = images.save_side_by_side(panels, os.path.join(d, "sub", "both.png"), dpi=100)
    self.assertEqual(sorted(os.listdir(os.path.join(d, "sub"))), ["both.png"])  # no temp left
    img = np.asarray(Image.open(out).convert("L"))
    self.assertEqual(img.shape, (320, 520))  # 2 panels of 2.6 x 3.2 inches at 100 dpi
    # The black grid on the left, the white one on the right.
    self.assertLess(img[100:220, 60:200].mean(), img[100:220, 320:460].mean())

  def test_bad_shape(self):
    with self.assertRaisesRegex(ValueError, "NHWC"):
      images.to_uint8(np.zeros((2, 4, 4, 2)))


if __name__ == "__main__":
  absltest.main()

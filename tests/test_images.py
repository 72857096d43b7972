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

  def test_bad_shape(self):
    with self.assertRaisesRegex(ValueError, "NHWC"):
      images.to_uint8(np.zeros((2, 4, 4, 2)))


if __name__ == "__main__":
  absltest.main()

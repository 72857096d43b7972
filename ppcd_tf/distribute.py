"""tf.distribute strategies by name (`--strategy`).

  mirrored      all local GPUs (or the CPU) in one process (the default)
  multi_worker  MultiWorkerMirroredStrategy; workers and their roles come from
                TF_CONFIG (see BUILD.md, "Several machines")
  one_device    the first GPU if any, else the CPU
  tpu           TPUStrategy with the TPU named by TPU_NAME (or a local TPU VM)

Only the chief of a multi-worker job writes checkpoints, summaries and samples
(`is_chief`).
"""

import json
import os

import tensorflow as tf

__all__ = ["make_strategy", "is_chief"]


def make_strategy(name: str) -> tf.distribute.Strategy:
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "one_device":
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
  if name == "multi_worker":
    if "TF_CONFIG" not in os.environ:
      raise ValueError("--strategy=multi_worker needs TF_CONFIG describing the cluster "
                       "and this worker's task (see BUILD.md, 'Several machines').")
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
        tpu=os.environ.get("TPU_NAME", ""))
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f"strategy={name!r} is not one of mirrored, multi_worker, one_device, tpu")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True for the process that writes files (always true outside multi-worker jobs)."""
  if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return True
  resolver = strategy.cluster_resolver
  task_type, task_id = resolver.task_type, resolver.task_id
  if task_type is None:
    return True
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  if "chief" in cluster:
    return task_type == "chief"
  return task_type == "worker" and task_id == 0

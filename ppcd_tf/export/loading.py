"""Loading any generator: a training workdir, a slim model dir or a SavedModel
(`load_generator`, `SavedModelGenerator`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Optional

import tensorflow as tf

from ppcd_tf import checkpoints
from ppcd_tf import slim
from ppcd_tf.export.common import (
    EXPORT_JSON, ExportError, GeneratorSpec, IMAGE_NAME, LABEL_NAME, SIGNATURE_KEY,
    Z_NAME, _spec_of, read_export_json)
from ppcd_tf.generator import build_generator


class SavedModelGenerator(tf.Module):
  """A SavedModel with a (z, class) -> image signature, callable like a Keras generator.

  `G((z, y), training=False) -> images`; it can be re-exported (e.g. a
  SavedModel converted to TFLite) because its variables are tracked. Accepts our
  signature (z, class_id) -> {"image"} and the one `ppcd_tf.slim` writes under
  `<slim dir>/saved_model` ((z, y) -> {"images"}).
  """

  def __init__(self, path: str):
    super().__init__(name="saved_model_generator")
    try:
      self._loaded = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as e:
      raise ExportError(f"{path} is not a readable SavedModel ({str(e)[:200]}); "
                        "re-export it with tools/export.py --format=saved_model.") from e
    if SIGNATURE_KEY not in self._loaded.signatures:
      raise ExportError(f"SavedModel {path} has no '{SIGNATURE_KEY}' signature "
                        f"(found {list(self._loaded.signatures)}); export it with "
                        "tools/export.py --format=saved_model.")
    self._fn = self._loaded.signatures[SIGNATURE_KEY]
    inputs = set(self._fn.structured_input_signature[1])
    outputs = set(self._fn.structured_outputs)
    labels = [n for n in (LABEL_NAME, "y") if n in inputs]
    images = [n for n in (IMAGE_NAME, "images") if n in outputs]
    if Z_NAME not in inputs or len(inputs) != 2 or not labels or len(outputs) != 1 \
        or not images:
      raise ExportError(f"SavedModel {path}: signature '{SIGNATURE_KEY}' maps "
                        f"{sorted(inputs)} -> {sorted(outputs)}; expected "
                        f"['{LABEL_NAME}', '{Z_NAME}'] -> ['{IMAGE_NAME}'].")
    self._label_name, self._image_name = labels[0], images[0]
    self.path = path
    self.spec = _saved_model_spec(path, self._loaded, self._fn, self._image_name)

  @property
  def variables(self):
    """The variables the signature reads (the loaded object's own tracking aside)."""
    return tuple(self._fn.variables)

  def __call__(self, inputs, training=False):
    del training
    z, y = inputs
    y = tf.cast(tf.reshape(y, [-1]), tf.int32)
    out = self._fn(**{Z_NAME: tf.convert_to_tensor(z, tf.float32), self._label_name: y})
    return out[self._image_name]


@dataclasses.dataclass
class LoadedGenerator:
  """A generator loaded by `load_generator`.

  Attributes:
    generator: callable `generator((z, y), training=False) -> images`; a dense
      ppcd_tf Generator (slim dir, workdir) or a `SavedModelGenerator`.
    spec: z_dim, num_classes, resolution, image_channels.
    kind: "slim", "workdir" or "saved_model".
    path: where it came from.
    step: training step of the restored checkpoint (workdirs), else None.
    slimmed_from_masked: a masked PP-Res generator was slimmed on load.
  """
  generator: Any
  spec: GeneratorSpec
  kind: str
  path: str
  step: Optional[int] = None
  slimmed_from_masked: bool = False

  def describe(self) -> str:
    extra = f", step {self.step}" if self.step is not None else ""
    extra += ", slimmed from the masked generator" if self.slimmed_from_masked else ""
    return f"{self.kind} {self.path}{extra}"


def _is_saved_model(path: str) -> bool:
  return os.path.isfile(os.path.join(path, "saved_model.pb"))


def _is_workdir(path: str) -> bool:
  return os.path.isfile(checkpoints.config_path(path))


def _is_slim_dir(path: str) -> bool:
  """A `ppcd_tf.slim.save_slim_generator` dir: config.json {"generator": ...} + weights/.

  A training workdir also has a config.json, but with the `Config` sections.
  """
  config = os.path.join(path, "config.json")
  if not (os.path.isfile(config) and os.path.isdir(os.path.join(path, "weights"))):
    return False
  try:
    with open(config) as f:
      return "generator" in json.load(f)
  except (OSError, ValueError):
    return False


_WHAT_TO_PASS = ("a slim model dir (ppcd_tf.slim.save_slim_generator), a training "
                 "workdir (config.json + checkpoints/) or a SavedModel dir "
                 "(tools/export.py --format=saved_model)")


def load_generator(path: str) -> LoadedGenerator:
  """Loads a generator for export or sampling; masks never survive loading.

  Args:
    path: a slim model dir (from `ppcd_tf.slim.save_slim_generator`), a training
      workdir (the EMA generator of its latest checkpoint is restored; a masked
      PP-Res generator is slimmed with `ppcd_tf.slim.slim_generator`), or a
      SavedModel dir with our serving signature.

  Returns:
    A `LoadedGenerator`.

  Raises:
    ExportError: the path is missing or is none of the above.
    ppcd_tf.checkpoints.CheckpointError: the workdir has no restorable checkpoint.
  """
  if not path or not os.path.exists(path):
    raise ExportError(f"model path {path!r} does not exist; pass {_WHAT_TO_PASS}.")
  if os.path.isfile(path):
    if path.endswith(".tflite"):
      raise ExportError(f"{path} is a TFLite file: it can be sampled (tools/sample.py) "
                        "but not re-exported; pass the slim dir, workdir or SavedModel "
                        "it was exported from.")
    raise ExportError(f"{path} is a file; pass {_WHAT_TO_PASS}.")
  if _is_slim_dir(path):
    g = slim.load_slim_generator(path)
    return LoadedGenerator(g, _spec_of(g), "slim", path)
  if _is_saved_model(path):
    g = SavedModelGenerator(path)
    return LoadedGenerator(g, g.spec, "saved_model", path)
  if _is_workdir(path):
    return _load_workdir(path)
  raise ExportError(f"{path} is not a model directory (no saved_model.pb, no "
                    f"config.json); pass {_WHAT_TO_PASS}.")


def _load_workdir(path: str) -> LoadedGenerator:
  cfg = checkpoints.read_config(path)
  masked = cfg.run.mode == "ppcd" and cfg.distill.use_masks
  g = build_generator(cfg.model, masked=masked, name="generator")
  prefix, step = checkpoints.restore_objects_from_workdir(path, ema_generator=g)
  checkpoints.require_finite(g, prefix, "ema_generator")
  if masked:
    g = slim.slim_generator(g, name="generator")
  return LoadedGenerator(g, _spec_of(g), "workdir", path, step=step,
                         slimmed_from_masked=masked)


def _saved_model_spec(path: str, loaded, fn, image_name: str) -> GeneratorSpec:
  """From export.json, else `model_info()`, else the signature and embedding shapes."""
  meta = read_export_json(path)
  if meta and "spec" in meta:
    return GeneratorSpec.from_dict(meta["spec"])
  if hasattr(loaded, "model_info"):
    return GeneratorSpec.from_dict({k: int(v.numpy()) for k, v in loaded.model_info().items()})
  z_spec = fn.structured_input_signature[1][Z_NAME]
  out = fn.structured_outputs[image_name]
  tables = [v for v in fn.variables if "shared/embeddings" in v.name]
  if not tables or out.shape.rank != 4:
    raise ExportError(f"SavedModel {path} has no {EXPORT_JSON}, no model_info() and no "
                      "class embedding; re-export it with tools/export.py.")
  return GeneratorSpec(int(z_spec.shape[-1]), int(tables[0].shape[0]), int(out.shape[1]),
                       int(out.shape[-1]))

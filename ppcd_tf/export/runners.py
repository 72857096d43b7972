"""Numpy-in, numpy-out runners of every format: Keras, SavedModel and TFLite through the
LiteRT interpreter (`open_generator`).
"""

from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from ppcd_tf.export.common import (
    ExportError, GeneratorSpec, IMAGE_NAME, LABEL_NAME, SIGNATURE_KEY, Z_NAME, _spec_of,
    export_json_path, read_export_json)
from ppcd_tf.export.loading import (
    SavedModelGenerator, _is_saved_model, _is_slim_dir, load_generator)
from ppcd_tf.export.serving import inference_generator


class GeneratorRunner:
  """Numpy-in, numpy-out generator of any format: `runner(z, y) -> images`.

  Attributes:
    kind: "keras", "saved_model" or "tflite".
    spec: GeneratorSpec (num_classes is what class ids are checked against).
    path: the model path ("" for in-memory models).
  """
  kind = "abstract"

  def __init__(self, spec: GeneratorSpec, path: str = ""):
    self.spec = spec
    self.path = path

  def __call__(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    raise NotImplementedError


class KerasRunner(GeneratorRunner):
  """A Keras generator through one `tf.function` with a dynamic batch."""
  kind = "keras"

  def __init__(self, generator, spec: Optional[GeneratorSpec] = None, path: str = ""):
    super().__init__(spec or _spec_of(generator), path)
    self.generator = generator
    self._fn = tf.function(
        lambda z, y: generator((z, y), training=False),
        input_signature=[tf.TensorSpec([None, self.spec.z_dim], tf.float32),
                         tf.TensorSpec([None], tf.int32)])

  def __call__(self, z, y):
    return self._fn(tf.constant(z, tf.float32), tf.constant(y, tf.int32)).numpy()


class SavedModelRunner(GeneratorRunner):
  """A SavedModel dir through its `serving_default` signature."""
  kind = "saved_model"

  def __init__(self, path: str):
    self.model = SavedModelGenerator(path)
    super().__init__(self.model.spec, path)

  def __call__(self, z, y):
    return self.model((tf.constant(z, tf.float32), tf.constant(y, tf.int32))).numpy()


class TFLiteRunner(GeneratorRunner):
  """A .tflite generator through the LiteRT interpreter (`ai_edge_litert`).

  Dynamic-batch models are resized (`resize_tensor_input` + `allocate_tensors`)
  when the batch size changes; fixed-batch models run in chunks of their batch,
  the last chunk padded by repeating its first row.

  Args:
    model: a .tflite path or the model bytes.
    spec: GeneratorSpec; default from `<path>.json`, else read from the model
      (z input width, output shape, rows of the GATHERed class embedding).
    num_threads: interpreter threads (None: LiteRT's default).
  """
  kind = "tflite"

  def __init__(self, model: Union[str, bytes], spec: Optional[GeneratorSpec] = None,
               num_threads: Optional[int] = None):
    path = model if isinstance(model, str) else ""
    try:
      if path:
        self.interpreter = Interpreter(model_path=path, num_threads=num_threads)
      else:
        self.interpreter = Interpreter(model_content=model, num_threads=num_threads)
    except (ValueError, RuntimeError) as e:
      raise ExportError(f"{path or 'model bytes'} is not a valid TFLite model "
                        f"({str(e)[:200]}); re-export it with tools/export.py.") from e
    self._z, self._y, self._out = self._find_io(path)
    self.fixed_batch = (None if self._z["shape_signature"][0] == -1
                        else int(self._z["shape"][0]))
    self._allocated_batch = None
    if self.fixed_batch is not None:
      self.interpreter.allocate_tensors()
      self._allocated_batch = self.fixed_batch
    if spec is None and path:
      meta = read_export_json(path)
      spec = GeneratorSpec.from_dict(meta["spec"]) if meta and "spec" in meta else None
    super().__init__(spec or self._spec_from_model(path), path)

  def _find_io(self, path):
    interp = self.interpreter
    if SIGNATURE_KEY in interp.get_signature_list():
      runner = interp.get_signature_runner(SIGNATURE_KEY)
      ins, outs = runner.get_input_details(), runner.get_output_details()
      if Z_NAME in ins and LABEL_NAME in ins and IMAGE_NAME in outs:
        return ins[Z_NAME], ins[LABEL_NAME], outs[IMAGE_NAME]
    ins = interp.get_input_details()
    zs = [d for d in ins if len(d["shape"]) == 2 and np.dtype(d["dtype"]).kind == "f"]
    ys = [d for d in ins if len(d["shape"]) == 1 and np.dtype(d["dtype"]).kind == "i"]
    if len(ins) != 2 or len(zs) != 1 or len(ys) != 1:
      raise ExportError(f"{path or 'TFLite model'} does not take (z float32 [B, z_dim], "
                        "class_id int32 [B]); export it with tools/export.py.")
    return zs[0], ys[0], interp.get_output_details()[0]

  def _spec_from_model(self, path) -> GeneratorSpec:
    resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    probe = (Interpreter(model_path=path, experimental_op_resolver_type=resolver)
             if path else None)
    rows = None
    if probe is not None:
      tensors = {t["index"]: t for t in probe.get_tensor_details()}
      for op in probe._get_ops_details():  # pylint: disable=protected-access
        if op["op_name"] == "GATHER" and op["inputs"][0] in tensors:
          rows = int(tensors[op["inputs"][0]]["shape"][0])
          break
    if rows is None:
      raise ExportError(f"cannot tell the number of classes of {path or 'the model'}: "
                        f"its export JSON ({export_json_path(path or 'model.tflite')}) "
                        "is missing; keep the .json beside the .tflite or re-export.")
    shape = self._out["shape_signature"]
    return GeneratorSpec(int(self._z["shape_signature"][1]), rows, int(shape[1]),
                         int(shape[3]))

  def _run(self, z, y):
    n = z.shape[0]
    interp = self.interpreter
    if self._allocated_batch != n:
      interp.resize_tensor_input(self._z["index"], [n, self.spec.z_dim])
      interp.resize_tensor_input(self._y["index"], [n])
      interp.allocate_tensors()
      self._allocated_batch = n
    interp.set_tensor(self._z["index"], z)
    interp.set_tensor(self._y["index"], y)
    interp.invoke()
    return np.array(interp.get_tensor(self._out["index"]), copy=True)

  def __call__(self, z, y):
    z = np.ascontiguousarray(z, np.float32)
    y = np.ascontiguousarray(np.reshape(y, [-1]), np.int32)
    if self.fixed_batch is None:
      return self._run(z, y)
    b, outs = self.fixed_batch, []
    for start in range(0, z.shape[0], b):
      zc, yc = z[start:start + b], y[start:start + b]
      k = zc.shape[0]
      if k < b:
        zc = np.concatenate([zc, np.repeat(zc[:1], b - k, 0)])
        yc = np.concatenate([yc, np.repeat(yc[:1], b - k, 0)])
      outs.append(self._run(zc, yc)[:k])
    return np.concatenate(outs, axis=0)


def open_generator(path: str, num_threads: Optional[int] = None) -> GeneratorRunner:
  """Opens any generator format for sampling / benchmarking.

  Args:
    path: a .tflite file, a SavedModel dir, a slim model dir or a training workdir.
    num_threads: LiteRT interpreter threads (.tflite only).

  Raises:
    ExportError: the path is missing or not a generator.
  """
  if not path or not os.path.exists(path):
    raise ExportError(f"model path {path!r} does not exist; pass a .tflite file, a "
                      f"SavedModel dir, a slim model dir or a training workdir.")
  if os.path.isfile(path):
    if not path.endswith(".tflite"):
      raise ExportError(f"{path} is not a .tflite file; pass a .tflite file or a model "
                        "directory.")
    return TFLiteRunner(path, num_threads=num_threads)
  if _is_saved_model(path) and not _is_slim_dir(path):
    return SavedModelRunner(path)
  loaded = load_generator(path)
  return KerasRunner(inference_generator(loaded.generator), loaded.spec, path)

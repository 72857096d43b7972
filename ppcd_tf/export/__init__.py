"""Export of a (slimmed) generator for serving and edge sampling.

Conventions: z is float32 [B, z_dim], class ids are int32 [B] in
[0, num_classes), images are float32 NHWC [B, R, R, C] in [-1, 1] (tanh).

Export is its own step (STYLE.md 8, METHOD.md "After training"): only what
inference reads reaches an exported file.

* `inference_generator(G)` makes the copy that is exported, with
  `ppcd_tf.slim.slim_generator`: a masked PP-Res generator loses its pruned
  channels and mask layers (the slim model computes exactly the masked function),
  and every spectral-norm layer is *frozen*: at inference a power-iteration layer
  computes sigma from its weights and the stored `sn_u` (one step, nothing
  stored), so the copy stores exactly that sigma in `sn_sigma` and runs with
  `sn_mode="frozen"`; `sn_u` is no longer read. The copy is named "generator"
  whatever the source was called (e.g. "ema_generator").
* The exported objects track only the variables the traced inference function
  captures: kernels, biases, the class embedding, the frozen sigmas, BatchNorm
  moving statistics and gains, attention gammas. Mask scores and `alive` flags,
  `sn_u`, EMA shadows and optimiser slots are never captured, hence never
  written. `training_state_names` re-checks the written names as a safety net.

Formats:
* SavedModel (`export_saved_model`): signature `serving_default(z float32[None,
  z_dim], class_id int32[None]) -> {"image": float32[None, R, R, C]}` with a
  dynamic batch, plus a `model_info()` function returning the spec constants.
  `out_dir/export.json` describes it.
* TFLite (`export_tflite`), converted with `tf.lite.TFLiteConverter` from the
  same concrete function (dynamic batch, or `fixed_batch=N`), run with the LiteRT
  interpreter (`ai_edge_litert`). `<out>.json` (e.g. `g.tflite.json`) describes it.
  Quantisation (`quantize=`):
  - "none": float32 throughout.
  - "float16": `optimizations=[DEFAULT]`, `supported_types=[tf.float16]`: weights
    stored as float16 and dequantised to float32 at load; compute is float32.
  - "dynamic": `optimizations=[DEFAULT]` without data (dynamic-range): weight
    tensors with >= 1024 values stored int8 (per output channel for conv/dense);
    activations stay float32 and are quantised on the fly inside the hybrid
    kernels. Small weights stay float32.
  - "int8": `optimizations=[DEFAULT]` plus a representative dataset of (z,
    class_id) batches (post-training integer quantisation): conv and dense
    weights int8 symmetric per output channel, biases int32, activations int8
    asymmetric per tensor, calibrated on the representative batches; the class
    embedding table int8 per tensor (GATHER keeps its scale). The interface stays
    float: z enters as float32 and is quantised by a QUANTIZE op, class_id stays
    int32 (indices are never quantised, so the label/embedding path needs no
    special handling), and the image leaves as float32 through DEQUANTIZE.
    The self-attention core - its two BATCH_MATMULs (theta phi^T and beta g,
    both operands activations) and the SOFTMAX between them - stays float32 by
    default (`keep_float_ops=INT8_FLOAT_OPS`): LiteRT's XNNPACK delegate has no
    int8 kernel for a batch matmul of two activations, so in int8 these ops fall
    back to TFLite's builtin kernels, which made the whole int8 generator slower
    than fp32 at the demo scale and 2.5x slower than with a float attention core
    at 128 px (docs/bench/bench_infer_scale.md, tflite_int8 vs tflite_int8_full);
    in float32 XNNPACK runs them (DEQUANTIZE before, QUANTIZE after, delegated).
    `keep_float_ops=()` gives a fully integer model (integer-only accelerators).
    `supported_ops` stays TFLITE_BUILTINS, so an op without an int8 kernel falls
    back to float instead of failing the conversion; the export then *checks* the
    converted model: every CONV_2D and FULLY_CONNECTED, and every BATCH_MATMUL
    not kept in float, must compute in int8 (else `ExportError`), and the JSON
    lists which ops run in which dtype.

Every export is verified before it is written: the exported artifact is run on a
fixed (z, class_id) batch and compared with the Keras model it came from (the
masked model, for a masked source), and the maximum and mean absolute
differences are recorded.

Sampling (`open_generator`, `sample_class_grid`) runs a .tflite file through
`ai_edge_litert.interpreter.Interpreter` (fixed-batch models in chunks,
dynamic-batch models through `resize_tensor_input`), a SavedModel through its
signature, or a slim dir / workdir through Keras.

The package, one concept a module (this module re-exports the public names, so
`from ppcd_tf import export; export.export_tflite(...)` is the way to use it):
  common       formats, quantizations, `GeneratorSpec`, training-state names, the
               export JSON and the checks every export runs before it is written
  serving      the exported copy (`inference_generator`) and its serving module
  loading      any generator from a workdir, slim dir or SavedModel (`load_generator`)
  saved_model  the SavedModel writer (`export_saved_model`)
  tflite       the TFLite writer (`export_tflite`) and its quantisation checks
  runners      Keras / SavedModel / TFLite (LiteRT) runners, `open_generator`
  sampling     truncated latents and class grids (`sample_class_grid`)
  latency      `median_latency_ms`, a quick single-model figure
"""

from ppcd_tf.export.common import (
    ExportError, QUANTIZATIONS, INT8_FLOAT_OPS, FORMATS, SIGNATURE_KEY, FLOAT_TOLERANCE,
    GeneratorSpec, training_state_names, export_json_path, read_export_json, _spec_of,
    _versions)
from ppcd_tf.export.serving import inference_generator, _param_count
from ppcd_tf.export.loading import LoadedGenerator, SavedModelGenerator, load_generator
from ppcd_tf.export.saved_model import export_saved_model
from ppcd_tf.export.tflite import export_tflite
from ppcd_tf.export.runners import (
    GeneratorRunner, KerasRunner, SavedModelRunner, TFLiteRunner, open_generator)
from ppcd_tf.export.sampling import check_sampling_args, truncated_normal, sample_class_grid
from ppcd_tf.export.latency import median_latency_ms

__all__ = [
    "ExportError", "QUANTIZATIONS", "INT8_FLOAT_OPS", "FORMATS", "SIGNATURE_KEY",
    "FLOAT_TOLERANCE", "GeneratorSpec", "LoadedGenerator", "SavedModelGenerator",
    "load_generator", "inference_generator", "training_state_names",
    "export_saved_model", "export_tflite", "export_json_path", "read_export_json",
    "GeneratorRunner", "KerasRunner", "SavedModelRunner", "TFLiteRunner",
    "open_generator", "check_sampling_args", "truncated_normal", "sample_class_grid",
    "median_latency_ms",
]

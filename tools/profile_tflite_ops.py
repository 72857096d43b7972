"""Per-op latency of a .tflite model: each operator timed alone in a one-op model.

LiteRT's Python wheel exposes no op profiler, so every operator of subgraph 0 is cut
out into its own model (its non-constant inputs become the model inputs, fed with the
values the full model computes at batch 1; all shapes made static), then timed with
the LiteRT interpreter, with XNNPACK (default resolver) and without
(BUILTIN_WITHOUT_DEFAULT_DELEGATES). An empty-work baseline (invoke overhead of a
one-op model) is measured the same way and reported.

  .venv/bin/python -m tools.profile_tflite_ops MODEL.tflite [MODEL2.tflite ...] --json=out.json

Used for BUILD.md "Why int8 was slower than fp32 at the demo scale" (models from
`tools.bench_infer` random mode, exported to a temp dir).
"""
import argparse, collections, copy, json, statistics, sys, time
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from ai_edge_litert.tools import flatbuffer_utils as fbu

NO_XNN = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
AUTO = OpResolverType.AUTO


def captured_values(content, seed=0):
  it = Interpreter(model_content=content, experimental_op_resolver_type=NO_XNN,
                   experimental_preserve_all_tensors=True)
  ins = it.get_input_details()
  for d in ins:
    it.resize_tensor_input(d["index"], [1] + list(d["shape_signature"][1:]))
  it.allocate_tensors()
  rng = np.random.default_rng(seed)
  for d in it.get_input_details():
    if np.dtype(d["dtype"]).kind == "f":
      it.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(d["dtype"]))
    else:
      it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]) + 3)
  it.invoke()
  vals = {}
  for t in it.get_tensor_details():
    try:
      vals[t["index"]] = np.array(it.get_tensor(t["index"]), copy=True)
    except ValueError:
      pass
  return vals


def one_op_model(model, k, vals):
  m = copy.deepcopy(model)
  sg = m.subgraphs[0]
  op = sg.operators[k]
  sg.operators = [op]
  def const(i):
    b = m.buffers[sg.tensors[i].buffer]
    return b.data is not None and len(b.data) > 0
  sg.inputs = [i for i in op.inputs if i >= 0 and not const(i)]
  sg.outputs = list(op.outputs)
  for i in list(op.inputs) + list(op.outputs):
    if i >= 0 and i in vals:
      sg.tensors[i].shape = list(vals[i].shape)
      sg.tensors[i].shapeSignature = None
  m.signatureDefs = []
  name = fbu.opcode_to_name(model, op.opcodeIndex)
  return bytes(fbu.convert_object_to_bytearray(m)), name, sg.inputs, list(op.outputs)


def time_model(content, feeds, resolver, threads, min_s=0.05, repeats=5):
  it = Interpreter(model_content=content, num_threads=threads,
                   experimental_op_resolver_type=resolver)
  it.allocate_tensors()
  for i, v in feeds.items():
    it.set_tensor(i, v)
  for _ in range(3):
    it.invoke()
  t0 = time.perf_counter(); n = 0
  while time.perf_counter() - t0 < min_s / 5:
    it.invoke(); n += 1
  calls = max(1, int(n * 5))
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    for _ in range(calls):
      it.invoke()
    times.append((time.perf_counter() - t0) / calls)
  return statistics.median(times) * 1e6


def full_model_us(content, vals, resolver, threads):
  it = Interpreter(model_content=content, num_threads=threads,
                   experimental_op_resolver_type=resolver)
  for d in it.get_input_details():
    it.resize_tensor_input(d["index"], [1] + list(d["shape_signature"][1:]))
  it.allocate_tensors()
  for d in it.get_input_details():
    it.set_tensor(d["index"], vals[d["index"]])
  for _ in range(10):
    it.invoke()
  times = []
  for _ in range(7):
    t0 = time.perf_counter()
    for _ in range(200):
      it.invoke()
    times.append((time.perf_counter() - t0) / 200)
  return statistics.median(times) * 1e6


def profile(path, threads):
  content = open(path, "rb").read()
  model = fbu.read_model_from_bytearray(content)
  vals = captured_values(content)
  tensors = model.subgraphs[0].tensors
  rows = []
  for k in range(len(model.subgraphs[0].operators)):
    sub, name, ins, outs = one_op_model(model, k, vals)
    feeds = {i: vals[i] for i in ins}
    dtype = fbu.type_to_name(tensors[outs[0]].type)
    in_dtype = fbu.type_to_name(tensors[[i for i in model.subgraphs[0].operators[k].inputs if i >= 0][0]].type)
    row = {"k": k, "op": name, "in_dtype": in_dtype, "out_dtype": dtype,
           "out_shape": list(vals[outs[0]].shape) if outs[0] in vals else None,
           "us_builtin": time_model(sub, feeds, NO_XNN, threads),
           "us_xnnpack": time_model(sub, feeds, AUTO, threads)}
    rows.append(row)
  full = {"us_builtin": full_model_us(content, vals, NO_XNN, threads),
          "us_xnnpack": full_model_us(content, vals, AUTO, threads)}
  return rows, full


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("models", nargs="+")
  ap.add_argument("--threads", type=int, default=2)
  ap.add_argument("--json", default="")
  a = ap.parse_args()
  out = {}
  for path in a.models:
    rows, full = profile(path, a.threads)
    by = collections.OrderedDict()
    for r in rows:
      key = f"{r['op']}[{r['in_dtype']}]"
      acc = by.setdefault(key, [0, 0.0, 0.0])
      acc[0] += 1; acc[1] += r["us_builtin"]; acc[2] += r["us_xnnpack"]
    out[path] = {"full_model_us": full, "ops": rows,
                 "by_op": {k: {"count": c, "us_builtin": b, "us_xnnpack": x}
                           for k, (c, b, x) in by.items()}}
    print(f"== {path}: full model builtin {full['us_builtin']:.1f} us, xnnpack "
          f"{full['us_xnnpack']:.1f} us; sum of one-op models builtin "
          f"{sum(r['us_builtin'] for r in rows):.1f}, xnnpack {sum(r['us_xnnpack'] for r in rows):.1f}")
    for k, (c, b, x) in sorted(by.items(), key=lambda kv: -kv[1][1]):
      print(f"  {k:<28} n={c:<3} builtin {b:8.1f} us  xnnpack {x:8.1f} us")
  if a.json:
    json.dump(out, open(a.json, "w"), indent=1)

if __name__ == "__main__":
  main()

"""Runs command lines of the entry points in one process (tests/test_reliability.py).

  python -m tests.cli_driver CASES.json RESULTS.json

CASES.json is a list of {"module": "tools.sample", "argv": ["--n=0", ...]}. Each
case runs exactly what `python -m MODULE ARGV...` runs: the module's code as
`__main__` (`runpy`), so absl's `app.run` parses the flags and calls `main`,
which wraps its work in `friendly_errors`. stdout and stderr are captured, and
the flags the module defined are deleted afterwards so the next case (of the same
or another entry point) defines its own. Paying the TensorFlow import once for
all cases makes many CLI checks cheap.

RESULTS.json gets one {"module", "argv", "code", "stdout", "stderr", "traceback", "wall_s"}
per case: `code` is the exit status (0 when main returns), `traceback` is set
when something other than SystemExit escaped (a bug: the tests require None).
"""

import contextlib
import io
import json
import os
import runpy
import sys
import time
import traceback

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _run_case(module: str, argv, baseline) -> dict:
  from absl import flags
  fv = flags.FLAGS
  fv.unparse_flags()
  out, err = io.StringIO(), io.StringIO()
  result = {"module": module, "argv": list(argv), "code": 0, "traceback": None}
  saved_argv = sys.argv
  sys.argv = [module] + list(argv)
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      runpy.run_module(module, run_name="__main__", alter_sys=True)
  except SystemExit as e:
    code = e.code
    result["code"] = 0 if code is None else (code if isinstance(code, int) else 1)
    if isinstance(code, str):
      err.write(code)
  except BaseException:  # noqa: BLE001  (recorded for the test to report)
    result["code"] = None
    result["traceback"] = traceback.format_exc()
  finally:
    sys.argv = saved_argv
    for name in set(fv) - baseline:
      delattr(fv, name)
  result["stdout"], result["stderr"] = out.getvalue(), err.getvalue()
  return result


def main() -> None:
  cases_path, results_path = sys.argv[1], sys.argv[2]
  with open(cases_path) as f:
    cases = json.load(f)
  import warnings
  # One process runs many modules as __main__; runpy warns when an earlier case
  # imported one of them as a library (tools.tune imports tools.experiment). A fresh
  # `python -m` never sees that.
  warnings.filterwarnings("ignore", message=".*found in sys.modules after import",
                          category=RuntimeWarning)
  from absl import app, flags
  import absl.logging  # noqa: F401  (defines its flags before the baseline)
  import ppcd_tf  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow loads)
  app.define_help_flags()
  baseline = set(flags.FLAGS)
  results = []
  for c in cases:
    start = time.perf_counter()
    results.append(_run_case(c["module"], c["argv"], baseline))
    results[-1]["wall_s"] = round(time.perf_counter() - start, 2)
  with open(results_path, "w") as f:
    json.dump(results, f, indent=1)


if __name__ == "__main__":
  main()

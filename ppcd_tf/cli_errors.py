"""Turns the errors users can fix into one clear message and a non-zero exit.

Entry points wrap their work in `with friendly_errors():`. Known error types
(bad config, bad data, unusable checkpoint, diverged training) print
`error: <message>` to stderr and exit with status 2 (1 for a diverged run),
instead of a TensorFlow stack trace. Training stopped by SIGTERM after saving
(`stop_signal.Stopped`) prints `stopped: <message>` and exits with 143. Anything else propagates unchanged so real
bugs keep their traceback.
"""

import contextlib
import sys

__all__ = ["friendly_errors", "USER_ERRORS"]


def _user_error_types():
  from ppcd_tf import checkpoints, config, data
  types = [config.ConfigError, data.DataError, checkpoints.CheckpointError]
  try:
    from ppcd_tf import train_lib
    types.append(train_lib.TrainingDivergedError)
  except ImportError:  # pragma: no cover - models not importable
    pass
  for mod_name, cls_name in (("ppcd_tf.features", "FeatureExtractorError"),
                             ("ppcd_tf.export", "ExportError"),
                             ("ppcd_tf.biggan_import", "BigGANImportError")):
    try:
      mod = __import__(mod_name, fromlist=[cls_name])
      types.append(getattr(mod, cls_name))
    except (ImportError, AttributeError):
      pass
  return tuple(types)


USER_ERRORS = None


@contextlib.contextmanager
def friendly_errors():
  global USER_ERRORS
  USER_ERRORS = USER_ERRORS or _user_error_types()
  from ppcd_tf import stop_signal
  try:
    yield
  except stop_signal.Stopped as e:  # SIGTERM: saved, resumable; not an error
    print(f"stopped: {e}", file=sys.stderr)
    sys.exit(stop_signal.exit_code(e.signal_name))
  except USER_ERRORS as e:  # type: ignore[misc]
    code = 1 if type(e).__name__ == "TrainingDivergedError" else 2
    print(f"error: {e}", file=sys.stderr)
    sys.exit(code)

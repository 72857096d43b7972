"""Turns the errors users can fix into one clear message and a non-zero exit.

Entry points start with `run(main)` (absl's `app.run` whose flag errors exit 2) and
wrap their work in `with friendly_errors():`. Known error types
(bad config, bad data, unusable checkpoint, diverged training) print
`error: <message>` to stderr and exit with status 2 (1 for a diverged run),
instead of a TensorFlow stack trace. Training stopped by SIGTERM after saving
(`stop_signal.Stopped`) prints `stopped: <message>` and exits with 143. Anything else propagates unchanged so real
bugs keep their traceback.
"""

import contextlib
import sys

__all__ = ["friendly_errors", "parse_flags", "run", "USER_ERRORS"]


def parse_flags(argv):
  """absl `app.run`'s flag parser, except that a bad flag (unknown, out of range, an
  unreadable --flagfile) is one `error:` line and exit status 2, like every other
  input error (absl's own parser exits with 1)."""
  from absl import flags
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    print(f"error: {_message(e)}. Pass --help to see every flag.", file=sys.stderr)
    sys.exit(2)


def _message(e: BaseException) -> str:
  """The error's text on one line, without absl's 'ERROR:: ' prefix."""
  text = " ".join(str(e).split())
  return text[len("ERROR:: "):] if text.startswith("ERROR:: ") else text


def run(main):
  """`absl.app.run(main)` with `parse_flags`, and `app.UsageError` (stray arguments)
  as one `error:` line and exit 2 too: how every entry point starts."""
  from absl import app

  def main_with_usage_errors(argv):
    try:
      return main(argv)
    except app.UsageError as e:
      print(f"error: {e}. Pass --help to see every flag.", file=sys.stderr)
      sys.exit(2)
  app.run(main_with_usage_errors, flags_parser=parse_flags)


def _user_error_types():
  from absl import flags
  from ppcd_tf import checkpoints, config, data
  # flags.Error: a config file named by a flag (--config) that absl cannot read.
  types = [config.ConfigError, data.DataError, checkpoints.CheckpointError, flags.Error]
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


def _is_flags_error(e: BaseException) -> bool:
  from absl import flags
  return isinstance(e, flags.Error)


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
    print(f"error: {_message(e) if _is_flags_error(e) else e}", file=sys.stderr)
    sys.exit(code)

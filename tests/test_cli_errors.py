"""ppcd_tf.cli_errors: every input error is one `error:` line and exit status 2."""
import contextlib
import io

from absl import app, flags
from absl.testing import absltest

from ppcd_tf import checkpoints, cli_errors, config


def _exit(fn, *args):
  """(exit code, stderr) of fn(*args), which must exit."""
  err = io.StringIO()
  with contextlib.redirect_stderr(err):
    try:
      fn(*args)
    except SystemExit as e:
      return e.code, err.getvalue()
  raise AssertionError(f"{fn} did not exit")


class ParseFlagsTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.fv = flags.FlagValues()
    flags.DEFINE_integer("steps", 3, "Steps.", lower_bound=1, flag_values=self.fv)
    self.enter_context(absltest.mock.patch.object(flags, "FLAGS", self.fv))

  def test_bad_flags_exit_2_with_one_line(self):
    for argv, fragment in ((["prog", "--steps=0"], "flag --steps=0: 0 is not"),
                           (["prog", "--nope=1"], "Unknown command line flag 'nope'"),
                           (["prog", "--flagfile=/no/such.cfg"],
                            "Unable to open flagfile")):
      code, err = _exit(cli_errors.parse_flags, argv)
      self.assertEqual(code, 2, err)
      self.assertTrue(err.startswith("error: "), err)
      self.assertIn(fragment, err)
      self.assertNotIn("ERROR::", err)
      self.assertEqual(err.count("\n"), 1, err)

  def test_good_flags_parse(self):
    self.assertEqual(cli_errors.parse_flags(["prog", "--steps=5", "rest"]), ["prog", "rest"])
    self.assertEqual(self.fv.steps, 5)


class FriendlyErrorsTest(absltest.TestCase):

  def _fail(self, error):
    def fn():
      with cli_errors.friendly_errors():
        raise error
    return _exit(fn)

  def test_user_errors_exit_2_and_bugs_propagate(self):
    for error in (config.ConfigError("--x=1 is bad."),
                  checkpoints.CheckpointError("ckpt-3 is bad."),
                  flags.Error("ERROR:: Unable to open flagfile: /x.cfg")):
      code, err = self._fail(error)
      self.assertEqual(code, 2, err)
      self.assertTrue(err.startswith("error: "), err)
      self.assertNotIn("ERROR::", err)
    with self.assertRaises(KeyError):
      with cli_errors.friendly_errors():
        raise KeyError("a bug keeps its traceback")

  def test_usage_errors_of_main_exit_2(self):
    def main(argv):
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    with absltest.mock.patch.object(app, "run", lambda m, flags_parser: m(["prog", "x"])):
      code, err = _exit(cli_errors.run, main)
    self.assertEqual(code, 2)
    self.assertEqual(err, "error: unexpected arguments: ['x']. Pass --help to see every "
                          "flag.\n")


if __name__ == "__main__":
  absltest.main()

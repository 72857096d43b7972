"""SIGTERM during training: the step finishes, its checkpoint is saved, fit returns."""

import json
import os
import signal
import tempfile
import threading

from absl.testing import absltest

from ppcd_tf import checkpoints
from ppcd_tf import config as config_lib
from ppcd_tf import stop_signal
from ppcd_tf import train_lib


class StopRequestTest(absltest.TestCase):

  def test_sigterm_sets_the_flag_and_the_old_handler_comes_back(self):
    before = signal.getsignal(signal.SIGTERM)
    with stop_signal.StopRequest() as req:
      self.assertIsNone(req.signal_name)
      os.kill(os.getpid(), signal.SIGTERM)  # would kill the test process without it
      self.assertEqual(req.signal_name, "SIGTERM")
    self.assertIs(signal.getsignal(signal.SIGTERM), before)
    self.assertEqual(stop_signal.exit_code("SIGTERM"), 128 + 15)

  def test_outside_the_main_thread_it_installs_nothing(self):
    before, seen = signal.getsignal(signal.SIGTERM), []

    def body():
      with stop_signal.StopRequest():
        seen.append(signal.getsignal(signal.SIGTERM))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    self.assertEqual(seen, [before])


class CliTest(absltest.TestCase):

  def test_entry_points_exit_143_with_one_line(self):
    from ppcd_tf import cli_errors
    with self.assertRaises(SystemExit) as exited:
      with cli_errors.friendly_errors():
        raise stop_signal.Stopped("SIGTERM", 7, "/tmp/wd")
    self.assertEqual(exited.exception.code, 143)


class TrainerStopTest(absltest.TestCase):

  def test_sigterm_saves_the_current_step_and_returns(self):
    wd = os.path.join(tempfile.mkdtemp(), "teacher")
    cfg = config_lib.tiny_config(
        run=dict(workdir=wd, mode="teacher", strategy="one_device", save_every=5,
                 sample_every=100, log_every=100),
        optim=dict(batch_size=4, num_steps=10))
    trainer = train_lib.Trainer(cfg)
    run_step = trainer.run_step

    def step_then_signal():
      out = run_step()
      if int(trainer.step.numpy()) == 3:  # mid-run, not a periodic save step
        os.kill(os.getpid(), signal.SIGTERM)
      return out

    trainer.run_step = step_then_signal
    before = signal.getsignal(signal.SIGTERM)
    with self.assertRaisesRegex(stop_signal.Stopped, "SIGTERM at step 3: stopped after "
                                "saving its checkpoint") as raised:
      trainer.fit(progress=False)
    self.assertEqual((raised.exception.step, raised.exception.workdir), (3, wd))
    self.assertIs(signal.getsignal(signal.SIGTERM), before)  # restored after fit
    saved = [os.path.basename(p) for p in
             checkpoints.all_checkpoints(checkpoints.checkpoint_dir(wd))]
    self.assertEqual(saved, ["ckpt-3"])
    with open(os.path.join(wd, "train_summary.json")) as f:
      summary = json.load(f)
    self.assertEqual((summary["step"], summary["stopped_by_signal"]), (3, "SIGTERM"))
    # A rerun resumes from the step the signal stopped at.
    self.assertEqual(int(train_lib.Trainer(cfg).step.numpy()), 3)


if __name__ == "__main__":
  absltest.main()

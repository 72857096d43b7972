"""Teacher and PPCD training on the tiny config: runs, outputs, pruning target, resume."""
import glob
import json
import os
import tempfile

import numpy as np
import tensorflow as tf
from absl.testing import absltest

from ppcd_tf import checkpoints
from ppcd_tf import config as config_lib
from ppcd_tf import flops
from ppcd_tf import train_lib
from tests import tiny_runs

_WORK = None


def _workroot():
  global _WORK
  if _WORK is None:
    _WORK = tempfile.mkdtemp(prefix="ppcd_train_test_")
  return _WORK


def _teacher_cfg(workdir, num_steps=4):
  return config_lib.tiny_config(
      run=dict(workdir=workdir, mode="teacher", strategy="one_device"),
      optim=dict(batch_size=4, num_steps=num_steps))


def _teacher_dir():
  """One tiny teacher shared by the tests of this module (trained on first use)."""
  wd = os.path.join(_workroot(), "teacher")
  if not os.path.exists(os.path.join(wd, "train_summary.json")):
    train_lib.train(_teacher_cfg(wd), progress=False)
  return wd


def _ppcd_cfg(workdir, **overrides):
  parts = dict(run=dict(workdir=workdir, mode="ppcd", strategy="one_device"),
               distill=dict(teacher_dir=_teacher_dir()),
               optim=dict(batch_size=4, num_steps=6),
               pruning=dict(begin_step=0, end_step=3, frequency=1, target_fraction=0.81,
                            slim_finetune=False))  # as tiny_runs.ppcd_cfg
  for k, v in overrides.items():
    parts[k] = {**parts.get(k, {}), **v}
  return config_lib.tiny_config(**parts)


class TeacherTest(absltest.TestCase):

  def test_teacher_writes_checkpoints_summaries_samples(self):
    wd = _teacher_dir()
    summary = json.load(open(os.path.join(wd, "train_summary.json")))
    self.assertEqual(summary["step"], 4)
    self.assertEqual(summary["mode"], "teacher")
    for k in ("d_loss", "g_adv", "d_real", "d_fake"):
      self.assertTrue(np.isfinite(summary["losses"][k]), k)
    self.assertEqual([os.path.basename(p) for p in
                      checkpoints.all_checkpoints(checkpoints.checkpoint_dir(wd))],
                     ["ckpt-2", "ckpt-4"])
    self.assertNotEmpty(glob.glob(os.path.join(wd, "train", "events.out.tfevents.*")))
    self.assertTrue(os.path.exists(os.path.join(wd, "samples", "step_000004.png")))
    self.assertEqual(checkpoints.read_config(wd).run.mode, "teacher")
    tags = set()
    for path in glob.glob(os.path.join(wd, "train", "events.out.tfevents.*")):
      for event in tf.compat.v1.train.summary_iterator(path):
        for value in event.summary.value:
          tags.add(value.tag)
    for tag in ("loss/d_loss", "loss/g_adv", "loss/d_real", "loss/d_fake",
                "cost/live_g_params", "cost/live_g_macs", "perf/steps_per_second",
                "lr/g", "lr/d", "samples/ema"):
      self.assertIn(tag, tags)


class PpcdTest(absltest.TestCase):

  def test_ppcd_run(self):
    """Student starts as the teacher, reaches the target, masks binary, terms logged."""
    wd = os.path.join(_workroot(), "ppcd")
    # The masked G to the end, to watch the frozen masks (the switch to the slim G
    # after the last event: tests/test_slim_finetune.py); ranked by the trained scores
    # (not the default Taylor importance), to watch them train and freeze.
    trainer = train_lib.Trainer(_ppcd_cfg(wd, distill=dict(lambda_pix=0.0),
                                          pruning=dict(slim_finetune=False,
                                                       importance="learned")))
    z = tf.random.stateless_normal([3, trainer.model_cfg.z_dim], seed=[5, 6])
    y = tf.constant([0, 4, 9], tf.int32)
    np.testing.assert_allclose(trainer.G((z, y), training=False).numpy(),
                               trainer.teacher_G((z, y), training=False).numpy(), atol=1e-6)
    teacher_params = flops.live_params(trainer.teacher_G)
    summary = trainer.fit(progress=False)
    self.assertEqual(summary["step"], 6)
    self.assertLessEqual(summary["live_params"], (1 - 0.81) * teacher_params)
    self.assertEqual(summary["live_params"], flops.live_params(trainer.G))
    self.assertTrue(summary["masks_binary"])
    for name, mask in trainer.G.masks:
      alive = mask.alive.numpy()
      self.assertTrue(set(np.unique(alive)) <= {0.0, 1.0}, name)
      self.assertGreaterEqual(alive.sum(), 1, name)
    # The EMA generator carries exactly the same masks.
    for (_, m), (_, e) in zip(trainer.G.masks, trainer.G_ema.masks):
      np.testing.assert_array_equal(m.alive.numpy(), e.alive.numpy())
    # Masks froze after end_step=3: the mask optimiser no longer moves scores.
    self.assertEqual(float(trainer.masks_trainable.numpy()), 0.0)
    self.assertEqual(float(trainer.mask_opt.learning_rate.numpy()), 0.0)
    initial = trainer.G.masks[0][1].initial_score
    self.assertTrue(any((s.numpy() != initial).any() for s in trainer.mask_scores),
                    "the scores never trained before the freeze")
    scores = [s.numpy() for s in trainer.mask_scores]
    weights = [v.numpy() for v in trainer.g_vars]
    for _ in range(2):  # two more steps, frozen: G trains, the scores stay put
      trainer.train_step()
    for (name, _), s, before in zip(trainer.G.masks, trainer.mask_scores, scores):
      np.testing.assert_array_equal(s.numpy(), before, err_msg=name)
    self.assertTrue(any((v.numpy() != w).any() for v, w in zip(trainer.g_vars, weights)))
    # lambda_pix=0 is the ablation: the term is not computed at all.
    for term in ("distill_att", "distill_cam", "g_adv", "sparsity"):
      self.assertIn(term, summary["losses"])
    self.assertNotIn("distill_pix", summary["losses"])
    tags = set()
    for path in glob.glob(os.path.join(wd, "train", "events.out.tfevents.*")):
      for event in tf.compat.v1.train.summary_iterator(path):
        tags |= {v.tag for v in event.summary.value}
    for tag in ("channels_kept/block0/out", "mask_scores/stem", "loss/distill_att",
                "cost/live_fraction", "pruning/scheduled_budget", "lr/mask"):
      self.assertIn(tag, tags)

  def test_mismatched_teacher_is_clear_error(self):
    wd = os.path.join(_workroot(), "ppcd_mismatch")
    cfg = _ppcd_cfg(wd).replace(model=dict(g_ch=8))
    with self.assertRaisesRegex(config_lib.ConfigError, "g_ch: 4 in teacher .* vs 8 here"):
      train_lib.Trainer(cfg)

  def test_distillation_without_pruning_narrower_student(self):
    """--nouse_masks --noinit_from_teacher --g_channels: a slim student distilled from scratch."""
    wd = os.path.join(_workroot(), "distill_slim")
    narrow = dict(g_channels=(8, 6, 8, 6, 8, 6, 8))
    cfg = _ppcd_cfg(wd, model=narrow, optim=dict(num_steps=3),
                    pruning=dict(begin_step=0, end_step=1),
                    distill=dict(use_masks=False, init_from_teacher=False))
    trainer = train_lib.Trainer(cfg)
    self.assertEqual(trainer.G.masks, [])
    self.assertLess(flops.live_params(trainer.G), flops.live_params(trainer.teacher_G) / 2)
    summary = trainer.fit(progress=False)
    self.assertEqual(summary["step"], 3)
    for term in ("distill_att", "distill_cam", "distill_pix"):
      self.assertTrue(np.isfinite(summary["losses"][term]), term)
      self.assertGreater(summary["losses"][term], 0.0, term)
    # Starting from the teacher, or pruning it, needs the teacher's widths.
    for distill in (dict(use_masks=False), dict(init_from_teacher=False)):
      with self.assertRaisesRegex(config_lib.ConfigError, "g_channels"):
        train_lib.Trainer(_ppcd_cfg(wd + "_bad", model=narrow, distill=distill))

  def test_progress_bar_in_a_log_file_writes_lines_not_redraws(self):
    import contextlib
    import io
    buf = io.StringIO()  # not a terminal, like nohup's or CI's log file
    with contextlib.redirect_stdout(buf):
      bar = train_lib.progress_bar(3, stateful_metrics=["live_params"], unit_name="step")
      for i in range(1, 4):
        bar.update(i, values=[("d_loss", 1.0), ("live_params", 100.0 * i)])
    out = buf.getvalue()
    self.assertNotIn("\r", out)
    self.assertNotIn("\b", out)
    self.assertIn("3/3", out)
    self.assertIn("live_params: 300", out)  # a state: shown as it is, not averaged
    self.assertTrue(out.endswith("\n"))

  def test_active_terms(self):
    from ppcd_tf import distill
    self.assertEqual(distill.active_terms(config_lib.DistillConfig()),
                     {"att": 1000.0, "cam": 30.0, "pix": 5.0})  # BUILD.md "Distillation weights"
    self.assertEqual(distill.active_terms(config_lib.DistillConfig(
        lambda_att=0.5, lambda_cam=0.0, lambda_pix=0.0)), {"att": 0.5})


# Resuming exactly (mid-pruning, across the switch to the slim generator, after it):
# tests/test_slim_finetune.py; after SIGKILLs of a real process: test_crash_resume.py.


class DivergenceTest(absltest.TestCase):

  def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(self):
    wd = os.path.join(_workroot(), "nan")
    trainer = train_lib.Trainer(_teacher_cfg(wd, num_steps=4))
    trainer.fit(progress=False, until_step=2)  # writes ckpt-2
    for v in trainer.D.trainable_variables:
      v.assign(tf.fill(v.shape, np.nan))
    with self.assertRaisesRegex(train_lib.TrainingDivergedError,
                                r"d_loss=nan.* at step 3.*ckpt-2"):
      trainer.fit(progress=False)
    ckpts = checkpoints.all_checkpoints(checkpoints.checkpoint_dir(wd))
    self.assertEqual([os.path.basename(p) for p in ckpts], ["ckpt-2"])
    # The kept checkpoint still restores to finite weights.
    resumed = train_lib.Trainer(_teacher_cfg(wd, num_steps=4))
    self.assertEqual(int(resumed.step.numpy()), 2)
    self.assertTrue(all(np.isfinite(v.numpy()).all() for v in resumed.D.variables))


def _state(trainer):
  """Every variable value of the student, the EMA and both teacher networks."""
  nets = [trainer.G, trainer.G_ema, trainer.D]
  if getattr(trainer, "teacher_G", None) is not None:
    nets += [trainer.teacher_G, trainer.teacher_D]
  return [(v, v.numpy()) for net in nets for v in net.variables]


def _restore(state):
  for v, value in state:
    v.assign(value)


def _reference_g_grads(trainer, step):
  """G's loss and gradients as the step computed them before the teacher passes
  left the tape: everything on one tape, the teacher D run on each image set."""
  from ppcd_tf import losses
  z, y = trainer._latents(step, trainer.cfg.optim.d_steps, 0)  # pylint: disable=protected-access
  var_list = trainer.g_vars + trainer.mask_scores
  with tf.GradientTape() as tape:
    fake, features = trainer.G.forward_with_features((z, y), training=True)
    total = losses.hinge_generator_loss(trainer.D((fake, y), training=True))
    t_images, t_features = trainer.teacher_G.forward_with_features((z, y), training=False)
    t_images = tf.stop_gradient(t_images)
    weights = trainer.teacher_G.class_channel_weights((z, y))
    terms = {
        "att": lambda: losses.attention_distillation_loss(features, t_features, weights),
        "cam": lambda: losses.cam_distillation_loss(
            trainer.teacher_D.class_activation_map((fake, y)),
            trainer.teacher_D.class_activation_map((t_images, y))),
        "pix": lambda: losses.pixel_l1_loss(fake, t_images)}
    for name, weight in trainer.terms.items():
      total = total + weight * terms[name]()
    if trainer.train_scores:  # the scores' L1 term ('learned' ranking only)
      total = total + trainer.cfg.pruning.sparsity_weight * losses.mask_sparsity_loss(
          trainer.mask_scores, [mk.alive for _, mk in trainer.G.masks],
          [float(c) for c in trainer.mask_costs.numpy()[:len(trainer.mask_scores)]])
  return total, tape.gradient(total, var_list)


def _reference_d_grads(trainer, images, labels, step):
  """D's loss and gradients with G's forward pass on the D tape (the old step)."""
  from ppcd_tf import losses
  z, y = trainer._latents(step, 0, 0)  # pylint: disable=protected-access
  with tf.GradientTape() as tape:
    fake = trainer.G((z, y), training=True)
    logits = trainer.D((tf.concat([images, tf.stop_gradient(fake)], 0),
                        tf.concat([labels, y], 0)), training=True)
    real, fake_logits = tf.split(logits, 2)
    loss = losses.hinge_discriminator_loss(real, fake_logits)
  return loss, tape.gradient(loss, trainer.D.trainable_variables)


def _assert_grads_close(test, got, want, rtol, atol):
  test.assertEqual(len(got), len(want))
  for i, (a, b) in enumerate(zip(got, want)):
    test.assertIsNotNone(a, f"gradient {i} is None")
    np.testing.assert_allclose(tf.convert_to_tensor(a).numpy(),
                               tf.convert_to_tensor(b).numpy(), rtol=rtol, atol=atol,
                               err_msg=f"gradient {i}")


class StepWorkTest(absltest.TestCase):
  """The step without the wasted work computes the same losses and gradients."""

  def test_g_and_d_gradients_equal_the_all_on_one_tape_step(self):
    wd = os.path.join(_workroot(), "step_work")
    trainer = train_lib.Trainer(_ppcd_cfg(wd), strategy=tf.distribute.get_strategy())
    self.assertEqual(sorted(trainer.terms), ["att", "cam", "pix"])
    trainer.fit(progress=False, until_step=2)  # masks partly pruned, Adam moved
    step = tf.constant(2, tf.int64)
    state = _state(trainer)
    want_loss, want = _reference_g_grads(trainer, step)
    _restore(state)
    got, logs = trainer._g_grads(*trainer._latents(step, 1, 0))  # pylint: disable=protected-access
    np.testing.assert_allclose(float(logs["g_total"]), float(want_loss), rtol=1e-6)
    _assert_grads_close(self, got, want, rtol=1e-5, atol=1e-8)
    # The teacher's forward passes are not on the student's tape: its variables
    # get no gradient entry at all when asked for.
    _restore(state)
    images, labels = next(trainer.iterator)
    want_loss, want = _reference_d_grads(trainer, images, labels, step)
    _restore(state)
    got, logs = trainer._d_grads(images, labels, *trainer._latents(step, 0, 0))  # pylint: disable=protected-access
    np.testing.assert_allclose(float(logs["d_loss"]), float(want_loss), rtol=1e-6)
    _assert_grads_close(self, got, want, rtol=1e-5, atol=1e-8)

  def test_teacher_is_not_recorded_on_the_student_tape(self):
    from ppcd_tf import distill
    wd = os.path.join(_workroot(), "untaped")
    trainer = train_lib.Trainer(_ppcd_cfg(wd), strategy=tf.distribute.get_strategy())
    z, y = trainer._latents(tf.constant(0, tf.int64), 1, 0)  # pylint: disable=protected-access
    ctx = distill.DistillationContext(trainer.teacher_G, trainer.teacher_D, z, y,
                                      student_generator=trainer.G).prepare(trainer.terms)
    teacher_vars = trainer.teacher_G.trainable_variables
    with tf.GradientTape() as tape:
      fake, features = trainer.G.forward_with_features((z, y), training=True)
      ctx.set_student(fake, features)
      total = tf.add_n([distill.DISTILLATION_TERMS[n].fn(ctx) for n in trainer.terms])
    watched = {v.ref() for v in tape.watched_variables()}
    self.assertFalse(any(v.ref() in watched for v in teacher_vars))
    # The teacher D is on the tape only through the student's CAM (its variables are
    # read there), and its pass over the teacher images is cached before the tape.
    self.assertIn("teacher_cam", ctx._cache)  # pylint: disable=protected-access
    self.assertTrue(np.isfinite(float(total)))

  def test_losses_are_read_on_the_host_only_every_log_every_steps(self):
    wd = os.path.join(_workroot(), "log_every")
    cfg = _teacher_cfg(wd, num_steps=6).replace(
        run=dict(log_every=3, save_every=6, sample_every=6))
    trainer = train_lib.Trainer(cfg)
    reads = []
    real = train_lib.read_logs

    def spy(logs):
      reads.append(int(trainer.step.numpy()))
      return real(logs)
    train_lib.read_logs = spy
    try:
      trainer.fit(progress=True)
    finally:
      train_lib.read_logs = real
    self.assertEqual(reads, [3, 6])
    events = glob.glob(os.path.join(wd, "train", "events.out.tfevents.*"))
    self.assertNotEmpty(events)


class XlaTest(absltest.TestCase):
  """--jit_compile: the XLA-compiled gradient functions agree with the plain ones."""

  # XLA on CPU fuses and reorders float32 reductions, so results differ in the last
  # bits. Stated tolerance: losses within 1e-4 relative; every gradient entry within
  # 1e-4 of the step's largest |gradient entry| (seen: 5e-5 against a largest entry
  # of 1.1, on conv biases that feed BatchNorm, whose true gradient is 0 and whose
  # computed one is round-off), and the whole gradient vector at cosine > 0.99999.
  RTOL, ATOL = 1e-4, 1e-6
  GRAD_TOL, MIN_COSINE = 1e-4, 0.99999

  def _assert_grads_match(self, got, want):
    self.assertEqual(len(got), len(want))
    got = [tf.convert_to_tensor(a).numpy().ravel() for a in got]
    want = [tf.convert_to_tensor(b).numpy().ravel() for b in want]
    scale = max(float(np.max(np.abs(b))) for b in want)
    for i, (a, b) in enumerate(zip(got, want)):
      np.testing.assert_allclose(a, b, rtol=0, atol=self.GRAD_TOL * scale,
                                 err_msg=f"gradient {i}")
    a, b = np.concatenate(got), np.concatenate(want)
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    self.assertGreater(cosine, self.MIN_COSINE)

  def test_xla_and_plain_steps_agree_on_a_tiny_ppcd_config(self):
    wd = os.path.join(_workroot(), "xla")
    cfg = _ppcd_cfg(wd).replace(run=dict(jit_compile=True))
    trainer = train_lib.Trainer(cfg, strategy=tf.distribute.get_strategy())
    trainer.fit(progress=False, until_step=2)  # the compiled step trains
    step = tf.constant(2, tf.int64)
    state = _state(trainer)
    zy = trainer._latents(step, 1, 0)  # pylint: disable=protected-access
    got, logs = trainer._compiled("g")(*zy)  # pylint: disable=protected-access
    _restore(state)
    want, want_logs = trainer._g_grads(*zy)  # pylint: disable=protected-access
    for k in want_logs:
      np.testing.assert_allclose(float(logs[k]), float(want_logs[k]),
                                 rtol=self.RTOL, atol=self.ATOL, err_msg=k)
    self._assert_grads_match(got, want)
    _restore(state)
    images, labels = next(trainer.iterator)
    zy = trainer._latents(step, 0, 0)  # pylint: disable=protected-access
    got, logs = trainer._compiled("d", 0)(images, labels, *zy)  # pylint: disable=protected-access
    _restore(state)
    want, want_logs = trainer._d_grads(images, labels, *zy)  # pylint: disable=protected-access
    np.testing.assert_allclose(float(logs["d_loss"]), float(want_logs["d_loss"]),
                               rtol=self.RTOL)
    self._assert_grads_match(got, want)
    self.assertEqual(set(trainer._jit_fns), {("d", 0), ("g", 0)})  # pylint: disable=protected-access


class EmaRestartTest(absltest.TestCase):

  def test_pruning_events_restart_ema_from_generator(self):
    trainer = train_lib.Trainer(tiny_runs.ppcd_cfg(
        os.path.join(tiny_runs.root(), "ema_restart"), tiny_runs.teacher(),
        optim=dict(ema_decay=0.999, num_steps=4), pruning=dict(end_step=2)))
    restarts, real_restart = [], trainer.restart_ema

    def spy():
      restarts.append(int(trainer.step.numpy()))
      real_restart()
    trainer.restart_ema = spy
    pruned_at = []
    real_maybe_prune = trainer.controller.maybe_prune

    def record(step):
      event = real_maybe_prune(step)
      if event is not None and event.channels_pruned:
        pruned_at.append(step)
      return event
    trainer.controller.maybe_prune = record
    trainer.fit(progress=False)
    self.assertNotEmpty(pruned_at)
    self.assertEqual(restarts, pruned_at)  # exactly at the events that removed channels
    # A restart makes the EMA generator an exact copy of the generator.
    trainer.restart_ema()
    for src, dst in trainer._ema_pairs + trainer._copy_pairs:  # pylint: disable=protected-access
      np.testing.assert_array_equal(dst.numpy(), src.numpy())
    # ... and restarts the warm-up: n steps after a restart the decay is
    # min(ema_decay, (1 + n) / (10 + n)), so the first update keeps 0.1 of the old EMA.
    step = int(trainer.step.numpy())
    self.assertEqual(int(trainer.ema_restart_step.numpy()), step)
    before = [dst.numpy() for _, dst in trainer._ema_pairs]  # pylint: disable=protected-access
    trainer.train_step()
    for (src, dst), old in zip(trainer._ema_pairs, before):  # pylint: disable=protected-access
      np.testing.assert_allclose(dst.numpy(), 0.1 * old + 0.9 * src.numpy(),
                                 rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
  absltest.main()

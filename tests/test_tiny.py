"""ppcd_tf.tiny: the tiny teacher and classifier are trained once per directory."""
import json
import os
import tempfile
from unittest import mock

from absl.testing import absltest

from ppcd_tf import classifier as classifier_lib
from ppcd_tf import tiny
from ppcd_tf import train_lib


class TinyTest(absltest.TestCase):

  def test_teacher_config(self):
    cfg = tiny.teacher_config("/x", num_steps=7)
    self.assertEqual((cfg.run.workdir, cfg.run.mode, cfg.run.strategy),
                     ("/x", "teacher", "one_device"))
    self.assertEqual((cfg.optim.batch_size, cfg.optim.num_steps), (4, 7))
    self.assertEqual(cfg.model.resolution, 32)

  def test_trains_once_per_directory(self):
    root = tempfile.mkdtemp()
    teacher_dir, classifier_dir = os.path.join(root, "t"), os.path.join(root, "c")

    def fake_train(cfg, progress):
      self.assertFalse(progress)
      os.makedirs(cfg.run.workdir)
      with open(os.path.join(cfg.run.workdir, "train_summary.json"), "w") as f:
        json.dump({}, f)

    def fake_classifier(data_cfg, model_cfg, out, train_cfg, width):
      self.assertEqual((train_cfg.epochs, train_cfg.max_train_examples, width), (1, 1000, 8))
      os.makedirs(out)
      with open(os.path.join(out, "classifier.json"), "w") as f:
        json.dump({}, f)

    with mock.patch.object(train_lib, "train", side_effect=fake_train) as train, \
         mock.patch.object(classifier_lib, "train_classifier",
                           side_effect=fake_classifier) as train_classifier:
      for _ in range(2):
        self.assertEqual(tiny.teacher(teacher_dir), teacher_dir)
        self.assertEqual(tiny.classifier(classifier_dir), classifier_dir)
    self.assertEqual(train.call_count, 1)
    self.assertEqual(train_classifier.call_count, 1)
    self.assertEqual(train.call_args.args[0].run.workdir, teacher_dir)


if __name__ == "__main__":
  absltest.main()

"""ppcd_tf.classifier / train_classifier: files written, reload, held-out accuracy."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from absl.testing import absltest

from ppcd_tf import classifier, config, data, features, metrics

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ClassifierTest(absltest.TestCase):

  def test_config_validation(self):
    for bad in (dict(resolution=4), dict(image_channels=2), dict(num_classes=1),
                dict(width=0), dict(dropout=1.0), dict(pooling="max")):
      with self.assertRaises(classifier.ClassifierError):
        classifier.ClassifierConfig(**bad).validate()
    for bad in (dict(epochs=0), dict(learning_rate=0.0), dict(augment_shift=-1),
                dict(max_train_examples=0)):
      with self.assertRaises(classifier.ClassifierError):
        classifier.ClassifierTrainConfig(**bad).validate()

  def test_build_outputs_and_param_count(self):
    cfg = classifier.ClassifierConfig(width=4, feature_dim=8, image_channels=1)
    model = classifier.build_classifier(cfg)
    f, l = model(np.zeros((2, 32, 32, 1), np.float32), training=False)
    self.assertEqual((tuple(f.shape), tuple(l.shape)), ((2, 8), (2, 10)))
    # convs (no bias) 9*(1*4 + 4*4 + 4*8 + 8*8 + 8*16 + 16*16) = 4500; BN 4*(2*4+2*8+2*16)
    # = 224; features (4*4*16 + 1) * 8 = 2056; logits (8 + 1) * 10 = 90.
    self.assertEqual(model.count_params(), 4500 + 224 + 2056 + 90)

  def test_fit_rejects_mismatched_arrays(self):
    cfg = classifier.ClassifierConfig(width=4, feature_dim=8)
    x = np.zeros((4, 28, 28, 3), np.float32)
    with self.assertRaisesRegex(classifier.ClassifierError, "expects"):
      classifier.fit_classifier((x, np.zeros(4, np.int32)), None, cfg)
    x = np.zeros((4, 32, 32, 3), np.float32)
    with self.assertRaisesRegex(classifier.ClassifierError, "num_classes"):
      classifier.fit_classifier((x, np.full(4, 10, np.int32)), None, cfg)

  def test_one_tiny_epoch_writes_directory(self):
    cfg = config.tiny_config()
    out = os.path.join(tempfile.mkdtemp(), "clf")
    train_cfg = classifier.ClassifierTrainConfig(epochs=1, batch_size=32,
                                                 max_train_examples=128, seed=3)
    results = classifier.train_classifier(cfg.data, cfg.model, out, train_cfg, width=4,
                                          feature_dim=8)
    self.assertCountEqual(os.listdir(out), [classifier.WEIGHTS_FILE,
                                            classifier.CONFIG_FILE,
                                            classifier.RESULTS_FILE])
    with open(os.path.join(out, classifier.RESULTS_FILE)) as f:
      saved = json.load(f)
    self.assertEqual(saved, json.loads(json.dumps(results)))
    for key, want in (("dataset", "mnist5k"), ("resolution", 32), ("image_channels", 3),
                      ("epochs", 1), ("seed", 3), ("num_train", 128), ("num_test", 500)):
      self.assertEqual(saved[key], want, key)
    self.assertBetween(saved["test_accuracy"], 0.0, 1.0)
    self.assertGreater(saved["wall_time_s"], 0.0)
    model, clf_cfg = classifier.load_classifier(out)
    self.assertEqual((clf_cfg.width, clf_cfg.feature_dim), (4, 8))
    # The extractor reproduces the stored held-out accuracy.
    x, y = data.load_arrays(cfg.data, cfg.model, split="test")
    _, logits = features.get_extractor(f"classifier:{out}")(x)
    self.assertAlmostEqual(metrics.class_accuracy(logits, y), saved["test_accuracy"])

  def test_load_errors_name_the_fix(self):
    d = tempfile.mkdtemp()
    with self.assertRaisesRegex(classifier.ClassifierError, "train_classifier"):
      classifier.load_classifier(d)
    cfg = classifier.ClassifierConfig(width=4, feature_dim=8)
    classifier.save_classifier(classifier.build_classifier(cfg), cfg, d)
    with open(os.path.join(d, classifier.CONFIG_FILE), "w") as f:
      json.dump({"classifier": dict(width=8, feature_dim=8)}, f)
    with self.assertRaisesRegex(classifier.ClassifierError, "does not match"):
      classifier.load_classifier(d)

  def test_cli_runs_and_reports(self):
    out = os.path.join(tempfile.mkdtemp(), "clf")
    env = dict(os.environ, PYTHONPATH=_REPO, TF_USE_LEGACY_KERAS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "ppcd_tf.train_classifier", "--dataset=mnist5k",
         f"--out={out}", "--epochs=1", "--batch_size=32", "--max_train_examples=64",
         "--classifier_width=4", "--feature_dim=8", "--seed=1"],
        cwd=_REPO, env=env, capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    self.assertIn("test_accuracy=", proc.stdout)
    with open(os.path.join(out, classifier.RESULTS_FILE)) as f:
      saved = json.load(f)
    self.assertEqual((saved["seed"], saved["batch_size"], saved["num_train"]), (1, 32, 64))


@pytest.mark.slow
class ClassifierAcceptanceTest(absltest.TestCase):

  def test_default_recipe_reaches_97_percent_held_out(self):
    cfg = config.Config()
    out = os.path.join(tempfile.mkdtemp(), "mnist_classifier")
    results = classifier.train_classifier(cfg.data, cfg.model, out)
    x, y = data.load_arrays(cfg.data, cfg.model, split="test")
    self.assertLen(y, 500)
    _, logits = features.get_extractor(f"classifier:{out}")(x)
    accuracy = metrics.class_accuracy(logits, y)
    print(f"held-out accuracy {accuracy:.4f}, wall time {results['wall_time_s']} s")
    self.assertAlmostEqual(accuracy, results["test_accuracy"])
    self.assertGreaterEqual(accuracy, 0.97)


if __name__ == "__main__":
  absltest.main()

r"""Trains the metrics classifier of a dataset (features for FID/IS/KID/intra-FID).

    python -m ppcd_tf.train_classifier --dataset=mnist5k --out=runs/mnist_classifier

Data and shape flags (--dataset, --resolution, --image_channels, --num_classes,
--batch_size, --seed, ...) are the shared ones of `ppcd_tf.flags`; --out, --epochs,
--learning_rate, --augment_shift, --classifier_width, --classifier_pooling,
--feature_dim and --max_train_examples are specific to the classifier. The
directory written is what `--extractor=classifier:<out>` reads (see
`ppcd_tf.classifier`). `--help` lists the flags this command uses.
"""

import sys

from absl import flags, logging

from ppcd_tf import classifier as classifier_lib
from ppcd_tf import cli_errors
from ppcd_tf import flags as flags_lib

__all__ = ["main"]

flags_lib.define_flags()
_D, _A = classifier_lib.ClassifierTrainConfig(), classifier_lib.ClassifierConfig()
_OUT = flags.DEFINE_string(
    "out", None, "Output directory of the classifier (weights.h5, config.json, "
    "classifier.json); pass it to evaluation as --extractor=classifier:<out>.")
_EPOCHS = flags.DEFINE_integer("epochs", _D.epochs, "Passes over the train split.",
                               lower_bound=1)
_LR = flags.DEFINE_float("learning_rate", _D.learning_rate,
                         "Initial Adam learning rate (cosine-decayed to 0).")
_SHIFT = flags.DEFINE_integer("augment_shift", _D.augment_shift,
                              "Largest random translation in pixels (0 = no "
                              "augmentation).", lower_bound=0)
_WIDTH = flags.DEFINE_integer("classifier_width", _A.width,
                              "Conv width of the first stage (x2, x4 in the next two).",
                              lower_bound=1)
_FEAT = flags.DEFINE_integer("feature_dim", _A.feature_dim,
                             "Size of the feature layer the metrics use.", lower_bound=1)
_POOL = flags.DEFINE_enum("classifier_pooling", _A.pooling, ["flatten", "global_avg"],
                          "How the last conv map becomes a vector before the feature "
                          "layer.")
_MAX = flags.DEFINE_integer("max_train_examples", None,
                            "Train on a seeded random subset of N training images "
                            "(quick runs).", lower_bound=1)
flags.mark_flag_as_required("out")
# The shared flags this command uses, listed by --help (--helpfull lists all).
for _name in ("dataset", "data_dir", "manual_dir", "eval_fraction", "resolution",
              "image_channels", "num_classes", "batch_size", "seed"):
  flags.declare_key_flag(_name)


def main(argv):
  del argv
  with cli_errors.friendly_errors():
    cfg = flags_lib.config_from_flags()
    train_cfg = classifier_lib.ClassifierTrainConfig(
        epochs=_EPOCHS.value, batch_size=cfg.optim.batch_size,
        learning_rate=_LR.value, augment_shift=_SHIFT.value, seed=cfg.run.seed,
        max_train_examples=_MAX.value)
    try:
      results = classifier_lib.train_classifier(
          cfg.data, cfg.model, _OUT.value, train_cfg, width=_WIDTH.value,
          feature_dim=_FEAT.value, pooling=_POOL.value, verbose=2)
    except classifier_lib.ClassifierError as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(2)
  logging.info("held-out accuracy %.4f on %d images; wall time %.1f s; wrote %s",
               results["test_accuracy"], results["num_test"], results["wall_time_s"],
               _OUT.value)
  print(f"test_accuracy={results['test_accuracy']:.4f} num_test={results['num_test']} "
        f"wall_time_s={results['wall_time_s']} out={_OUT.value}")


if __name__ == "__main__":
  cli_errors.run(main)

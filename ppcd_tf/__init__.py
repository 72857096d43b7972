"""ppcd_tf: PPCD-GAN compression of class-conditional GANs in TensorFlow 2 / tf_keras.

Conventions used across the package:
  * images are float32 NHWC in [-1, 1];
  * class labels are int32 in [0, num_classes);
  * Keras means tf_keras (Keras 2). Keras 3 is never used: tfmot only works with
    tf_keras, so the legacy switch is set here, before TensorFlow can be imported.
"""

import os as _os

# Must happen before anything imports tensorflow (../shared/design/TOOLCHAIN.md).
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
if _os.environ["TF_USE_LEGACY_KERAS"] not in ("1", "true", "True"):
  raise RuntimeError(
      "ppcd_tf needs tf_keras (Keras 2): TF_USE_LEGACY_KERAS is set to "
      f"{_os.environ['TF_USE_LEGACY_KERAS']!r}; unset it or set it to 1.")
# Start-up notices (oneDNN, "no CUDA driver", cuInit 303) off unless asked for; see
# ppcd_tf/quiet_start.py and BUILD.md "Reliability".
from ppcd_tf import quiet_start as _quiet_start  # noqa: E402
_quiet_start.install()

__version__ = "0.1.0"

"""The parts of `ppcd_tf.train_lib.Trainer`, one concept a module.

`Trainer` (in `ppcd_tf.train_lib`, with the fit loop, checkpoint saves and the best
checkpoint) is composed of these mixins; use it through `ppcd_tf.train_lib`:
  common          RNG salts, the sample seed, crash-test hooks, `TrainingDivergedError`
  building        checks, networks, optimisers, data, checkpoint, restore / initialise
  step            latents, D and G gradients, EMA update, Taylor importance, the step
  pruning_events  a pruning event (dead weights, EMA restart, mask costs) and the switch
                  to the slim width
  reporting       samples, TensorBoard summaries, gradient shares, evaluation, NaN check
"""

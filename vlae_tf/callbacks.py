"""Callbacks that `VLAE.fit` adds for you."""

from __future__ import annotations

import keras


class NonFiniteLossError(RuntimeError):
    """Training stopped: too many non-finite losses in a row."""


class NonFiniteGuard(keras.callbacks.Callback):
    """Stops training with a clear message after `max_consecutive` non-finite losses in a row.

    Each such step has already been skipped by the optimizer (no weight moved) and counted
    in the logs as `nonfinite_steps`; a few isolated ones are tolerated.
    """

    def __init__(self, max_consecutive: int):
        super().__init__()
        if int(max_consecutive) < 1:
            raise ValueError(f"max_consecutive: expected an int >= 1; got {max_consecutive!r}")
        self.max_consecutive = int(max_consecutive)

    def on_train_batch_end(self, batch, logs=None):
        consecutive = int(self.model.consecutive_nonfinite_steps.numpy())
        if consecutive >= self.max_consecutive:
            self.model.stop_training = True
            raise NonFiniteLossError(
                f"training stopped: {consecutive} non-finite (NaN/Inf) losses in a row at "
                f"batch {batch} (limit max_consecutive_nonfinite={self.max_consecutive}); "
                f"{int(self.model.nonfinite_steps.numpy())} skipped in total. The weights "
                "are those of the last finite step. Check the data and lower learning_rate.")

"""Objects that hidden tests pass to a submission's functions, which the kernel builds from their name.

A test in the judge (`judge`) cannot send code to the kernel; a class of course_lib travels by its
name (`wire`), and the kernel imports it from here.
"""

from __future__ import annotations

import keras

__all__ = ["FrozenStillTrains"]


class FrozenStillTrains(keras.layers.BatchNormalization):
    """The TF1 convention: with training=True the batch's statistics are used even when the layer is frozen."""

    def call(self, inputs, training=None, mask=None):
        """Batch statistics whenever training is true, trainable or not; the moving ones otherwise."""
        if not training:
            return super().call(inputs, training=False, mask=mask)
        mean, variance = keras.ops.moments(inputs, axes=[0])
        return (inputs - mean) / keras.ops.sqrt(variance + self.epsilon) * self.gamma + self.beta

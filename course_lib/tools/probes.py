"""Objects that hidden tests pass to a submission's functions, which the kernel builds from their name.

A test in the judge (`judge`) cannot send code to the kernel; a class of course_lib travels by its
name (`wire`), and the kernel imports it. `FrozenStillTrains` is built on first use (it needs Keras).
"""

from __future__ import annotations

__all__ = ["FrozenStillTrains"]

_MADE: dict = {}


def _frozen_still_trains():
    import keras

    class FrozenStillTrains(keras.layers.BatchNormalization):
        """The TF1 convention: with training=True the batch's statistics are used even when the layer is frozen."""

        def call(self, inputs, training=None, mask=None):
            if not training:
                return super().call(inputs, training=False, mask=mask)
            mean, variance = keras.ops.moments(inputs, axes=[0])
            return (inputs - mean) / keras.ops.sqrt(variance + self.epsilon) * self.gamma + self.beta

    FrozenStillTrains.__module__, FrozenStillTrains.__qualname__ = __name__, "FrozenStillTrains"
    return FrozenStillTrains


def __getattr__(name: str):
    if name == "FrozenStillTrains":
        if name not in _MADE:
            _MADE[name] = _frozen_still_trains()
        return _MADE[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

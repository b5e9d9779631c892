"""The model stage: weights sources, the Keras graph walked and replayed, receptive-field geometry,
and the layer table."""

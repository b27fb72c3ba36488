"""inference: the model registry and the batch worker that scores stored frames."""

"""inference: the model registry and the batch worker that scores stored frames."""

# Said by every command that loads a model file given on its command line (`model register`,
# `backtest --model`). Here, not in inference.registry, so the CLI can show it without importing torch.
TRUST_WARNING = "only load model files you trust: a fastai export is a pickle, and loading it runs any code it holds"

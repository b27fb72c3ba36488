"""One loaded model on one device: preprocessing, forward, probabilities, embedding, OOD."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bearwatch.errors import ConfigError
from inference.ood import OodReference, OodScorer
from inference.preprocess import Preprocessor, preprocessor_for


@dataclass(frozen=True)
class BatchOutput:
    probabilities: torch.Tensor  # (n, classes), on the CPU
    embeddings: torch.Tensor | None  # (n, d) float32 on the CPU, the penultimate layer
    ood_features: torch.Tensor | None  # (n, f) on the CPU, what the OOD score measures
    ood: torch.Tensor | None  # (n,) on the CPU


def pick_device(requested: str | None = None) -> torch.device:
    if requested and requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {requested} asked for, but no CUDA GPU is available")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _last_linear(model: torch.nn.Module) -> torch.nn.Linear | None:
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return linears[-1] if linears else None


def _middle_of_body(model: torch.nn.Module) -> torch.nn.Module | None:
    """The middle block of a fastai vision_learner's body (model[0]); for a ResNet, its
    first residual stage. Its feature statistics carry exposure, texture and sharpness,
    which the classification head learns to ignore and out-of-domain frames change."""
    body = model[0] if isinstance(model, torch.nn.Sequential) and len(model) > 1 else None
    if isinstance(body, torch.nn.Sequential) and len(body) > 1:
        return body[len(body) // 2]
    return None


def _channel_stats(feature_map: torch.Tensor) -> torch.Tensor:
    return torch.cat([feature_map.mean((2, 3)), feature_map.std((2, 3))], dim=1).float()


class ModelRunner:
    """Scores preprocessed uint8 batches with one learner's model.

    On CUDA: channels_last and fp16 autocast (results then differ from fp32 by ~1e-3);
    on the CPU: plain fp32, so probabilities equal ``learn.predict``'s."""

    def __init__(self, learner: Any, device: torch.device, reference: OodReference | None = None) -> None:
        self.preprocessor: Preprocessor = preprocessor_for(learner).on(device)
        self.device = device
        self.model = learner.model.to(device).eval()
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        loss_func = getattr(learner, "loss_func", None)
        self.activation = getattr(loss_func, "activation", None) or (lambda x: torch.softmax(x, dim=-1))
        self._captured: dict[str, torch.Tensor] = {}
        head = _last_linear(self.model)
        if head is not None:
            head.register_forward_hook(lambda _m, inp, _o: self._captured.__setitem__("embedding", inp[0]))
        middle = _middle_of_body(self.model)
        if middle is not None:
            middle.register_forward_hook(lambda _m, _i, out: self._captured.__setitem__("ood", _channel_stats(out)))
        self.ood = OodScorer(reference, device) if reference is not None else None

    @torch.inference_mode()
    def __call__(self, uint8_batch: torch.Tensor) -> BatchOutput:
        x = self.preprocessor.batch(uint8_batch, self.device)
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
            autocast: Any = torch.autocast("cuda", dtype=torch.float16)
        else:
            autocast = nullcontext()
        self._captured.clear()
        with autocast:
            logits = self.model(x)
        probs = self.activation(logits.float())
        emb = self._captured.get("embedding")
        emb = emb.float() if emb is not None else None
        features = self._captured.get("ood", emb)  # without a fastai body: the embedding
        ood = self.ood(features) if (self.ood is not None and features is not None) else None
        return BatchOutput(
            probabilities=probs.cpu(),
            embeddings=emb.cpu() if emb is not None else None,
            ood_features=features.cpu() if features is not None else None,
            ood=ood.cpu() if ood is not None else None,
        )


def embedding_bytes(embedding: torch.Tensor) -> bytes:
    """Stored compactly as float16 (drift statistics need no more precision)."""
    return embedding.numpy().astype(np.float16).tobytes()

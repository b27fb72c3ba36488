"""One loaded model on one device: preprocessing, forward, probabilities, embedding, OOD."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from bearwatch.errors import ConfigError
from inference.ood import OodReference, OodScorer
from inference.preprocess import Preprocessor, preprocessor_for

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
_AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class BatchOutput:
    probabilities: torch.Tensor  # (n, classes), on the CPU
    embeddings: torch.Tensor | None  # (n, d) float32 on the CPU, the penultimate layer
    ood: torch.Tensor | None  # (n,) on the CPU
    # (n, f) on the CPU, what the OOD score measures: only when asked for (fitting a
    # reference); scoring leaves it on the device uncopied.
    ood_features: torch.Tensor | None = None


@dataclass(frozen=True)
class RunnerOptions:
    """How the forward pass runs. ``precision`` "auto" is fp16 autocast on CUDA and plain
    fp32 on the CPU (so CPU probabilities equal ``learn.predict``'s). ``compile`` wraps the
    model in ``torch.compile``. ``fixed_batch``: inputs are padded to this many rows on CUDA
    and when compiled, so there is one input shape (one compilation, one cuDNN autotuning);
    rows are independent in eval mode, so padding changes no result."""

    precision: str = "auto"
    compile: bool = False
    fixed_batch: int | None = None


def pick_device(requested: str | None = None) -> torch.device:
    if requested and requested != "auto":
        device = torch.device(requested)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(f"device {requested} asked for, but no CUDA GPU is available")
        return device
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_precision(requested: str, device: torch.device) -> str:
    if requested not in PRECISIONS:
        raise ConfigError(f"unknown precision {requested!r}: expected one of {', '.join(PRECISIONS)}")
    if requested == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return requested


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


def _to_host(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """(n, k) tensors on the CPU: on a GPU packed into one tensor first, so there is one
    device-to-host copy (and one synchronisation) per batch instead of one per output."""
    if not tensors or tensors[0].device.type == "cpu":
        return tensors
    packed = torch.cat(tensors, dim=1).cpu()
    return list(packed.split([t.shape[1] for t in tensors], dim=1))


class ModelRunner:
    """Scores preprocessed uint8 batches with one learner's model.

    On CUDA: channels_last, cuDNN autotuning and fp16 (or bf16) autocast (results then
    differ from fp32 by ~1e-3); on the CPU: plain fp32 by default, so probabilities equal
    ``learn.predict``'s. Options: :class:`RunnerOptions`, set by :meth:`configure`."""

    def __init__(
        self, learner: Any, device: torch.device, reference: OodReference | None = None,
        options: RunnerOptions | None = None,
    ) -> None:
        self.preprocessor: Preprocessor = preprocessor_for(learner).on(device)
        self.device = device
        self.model = learner.model.to(device).eval()
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
            torch.backends.cudnn.benchmark = True  # one input shape (fixed_batch): kernels tuned once
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
        self.configure(options or RunnerOptions())

    def configure(self, options: RunnerOptions) -> None:
        self.options = options
        precision = resolve_precision(options.precision, self.device)
        dtype = _AUTOCAST_DTYPES.get(precision)
        self._autocast: Any = (lambda: torch.autocast(self.device.type, dtype=dtype)) if dtype else nullcontext
        # The hooks above stay on self.model's submodules; the compiled module calls them too.
        self._forward: Any = torch.compile(self.model) if options.compile else self.model
        padded = options.compile or self.device.type == "cuda"
        self._pad_to = options.fixed_batch if padded else None

    def warm_up(self) -> None:
        """One forward pass on a blank batch: compilation and cuDNN autotuning happen here,
        before the first frame (and outside any measurement), not in the first batch."""
        blank = self.preprocessor.item(Image.new("RGB", (1280, 720)))
        self(blank.unsqueeze(0).expand(self._pad_to or 1, -1, -1, -1).contiguous())
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.inference_mode()
    def __call__(self, uint8_batch: torch.Tensor, *, features: bool = False) -> BatchOutput:
        """Scores of the batch; ``features`` also returns the OOD features (for fitting a reference)."""
        n = len(uint8_batch)
        # A fastai TensorImage would send every op of the forward through fastai's
        # __torch_function__ (Python work per layer): a plain tensor view instead, no copy.
        x = self.preprocessor.batch(uint8_batch.as_subclass(torch.Tensor), self.device)
        if self._pad_to is not None and n < self._pad_to:
            x = torch.cat([x, x.new_zeros((self._pad_to - n, *x.shape[1:]))])
        if self.device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        self._captured.clear()
        with self._autocast():
            logits = self._forward(x)
        probs = self.activation(logits[:n].float())
        emb = self._captured.get("embedding")
        emb = emb[:n].float() if emb is not None else None
        ood_in = self._captured.get("ood")
        ood_in = ood_in[:n] if ood_in is not None else emb  # without a fastai body: the embedding
        ood = self.ood(ood_in) if (self.ood is not None and ood_in is not None) else None
        outputs = [probs] + [t for t in (emb, ood[:, None] if ood is not None else None) if t is not None]
        if features and ood_in is not None:
            outputs.append(ood_in)
        host = iter(_to_host(outputs))
        probs_h = next(host)
        emb_h = next(host) if emb is not None else None
        ood_h = next(host)[:, 0] if ood is not None else None
        return BatchOutput(
            probabilities=probs_h, embeddings=emb_h, ood=ood_h,
            ood_features=next(host) if features and ood_in is not None else None,
        )

"""A small training loop for the ``hf:`` backend: only the ``<Ano>``/``<Diff>`` embedding rows and the heads
learn; the vision tower and the language model stay frozen."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import torch

from zebra.errors import ConfigError

log = logging.getLogger(__name__)


class TokenTrainable(Protocol):
    """What the loop needs of a backend (:class:`vlm.backends.hf.HFVisionLanguageBackend` has it); a protocol,
    so that this module does not import the backend that calls it."""

    device: torch.device

    def token_training(self) -> AbstractContextManager[list[torch.nn.Parameter]]: ...

    def anomaly_loss(self, image: Any, label: float) -> torch.Tensor: ...

    def change_loss(self, prior: Any, current: Any, label: str) -> torch.Tensor: ...


def train_tokens(
    backend: TokenTrainable,
    samples: Sequence[tuple[Any, float]],
    *,
    pairs: Sequence[tuple[Any, Any, str]] = (),
    steps: int = 10,
    lr: float = 5e-3,
) -> list[float]:
    """Runs ``steps`` Adam steps, cycling through ``samples`` (and ``pairs`` when given), one example each.

    Adam without weight decay is used on purpose: rows whose gradient the hook zeroes then never move.

    Args:
        backend: The backend whose tokens and heads are trained (in place).
        samples: ``(image, label)`` with label 1 for anomalous, 0 for normal.
        pairs: ``(prior, current, change_label)`` for the ``<Diff>`` token and the change head.
        steps: Optimisation steps.
        lr: Learning rate.

    Returns:
        The loss of every step.

    Raises:
        ConfigError: When there is nothing to train on or ``steps`` is not positive.
    """
    if not samples and not pairs:
        raise ConfigError(
            "train_tokens needs labelled images or pairs.", hint="Pass samples=[(image, 0|1), ...]."
        )
    if steps < 1:
        raise ConfigError(f"steps must be positive, got {steps}.", hint="Use steps >= 1.")
    losses: list[float] = []
    with backend.token_training() as params:
        optimiser = torch.optim.Adam(params, lr=lr, weight_decay=0.0)
        for step in range(steps):
            optimiser.zero_grad(set_to_none=True)
            loss = torch.zeros((), device=backend.device)
            if samples:
                image, label = samples[step % len(samples)]
                loss = loss + backend.anomaly_loss(image, label)
            if pairs:
                prior, current, change = pairs[step % len(pairs)]
                loss = loss + backend.change_loss(prior, current, change)
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            log.debug("train_tokens step %d loss %.4f", step, losses[-1])
    log.info(
        "trained <Ano>/<Diff> rows and heads for %d steps: loss %.4f -> %.4f", steps, losses[0], losses[-1]
    )
    return losses

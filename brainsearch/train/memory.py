"""An exact count of the training memory the cost model estimates (``cost(arch).memory_bytes``), on any device.

Shape legend: B batch (the micro-batch), S sequence.

What is counted, in bytes (:class:`MemoryCount`):

- ``state_bytes = params_bytes + grads_bytes + optimizer_bytes``: every parameter (in its dtype: a model cast to
  bf16 on the CPU counts 2 bytes each), and its gradient; the optimiser's state. Without ``optimizer`` the state is
  the cost model's default accounting, AdamW's two fp32 moments per trainable parameter. With ``optimizer``
  (``"adamw"``, ``"adafactor"``) a real torch optimiser steps once after the backward and its state tensors are
  summed, leaving out the step counters (0-dim; the cost model leaves them out too: a few bytes per tensor, and
  Adafactor keeps them on the host). With ``optimizer_in_backward`` every parameter has its own optimiser, stepped
  from a post-accumulate-grad hook that then frees the gradient; ``grads_bytes`` is the most gradient bytes alive
  at once (the largest single gradient). Buffers (rotary tables) and the autocast weight cache's lifetime are not
  counted.
- ``saved_bytes``: what autograd keeps for the backward of one forward, observed with
  ``torch.autograd.graph.saved_tensors_hooks``: every saved tensor's storage, counted once however often or through
  whichever view it is saved, leaving out the storages of parameters and buffers (state, not activations). Copies
  made by autocast (bf16 weights, bf16 inputs) are new storages and are counted.
- ``logits_bytes``: the logits the training step holds (the model's output and its float32 copy for the loss, when
  that is a new storage and not already saved) plus the largest gradient with respect to the float32 logits that
  the backward materialises (observed with a tensor hook): at large vocabularies this is the transient that sets the
  peak at the start of the backward.

With activation checkpointing (``model.activation_checkpointing``), ``saved_bytes`` is what the checkpointed forward
keeps (observed the same way: non-reentrant checkpoint saves each block's inputs through the ambient hooks, while
what its blocks save goes to its own, innermost, hooks and is not kept) plus the largest bytes one block's
recomputation holds during the backward. Those cannot be seen through the ambient hooks (the recomputation runs
under checkpoint's own hooks too); they are counted in a second, uncheckpointed forward of the same batch, where
each saved storage is attributed to the block (``len(arch.block)`` sub-layers from a norm) in which it is first
saved, leaving out the block's input (already kept). The recomputation saves exactly the same tensors: checkpoint's
default determinism check compares every recomputed saved tensor's shape, dtype and device with the original's and
raises otherwise, and the backward run here performs it.

Not counted: allocator rounding and fragmentation, the CUDA context, cuBLAS / attention workspaces, tensors that live
only within one operation, and the transient gradients inside the backward other than the logits'.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:
    from brainsearch.model.lm import LanguageModel

__all__ = ["MemoryCount", "count_training_memory"]

_ADAM_MOMENT_BYTES = 2 * 4  # two float32 moments per trainable parameter


@dataclass(frozen=True)
class MemoryCount:
    """Peak training memory of one step, counted exactly (see the module docstring for what each term holds)."""

    state_bytes: int
    saved_bytes: int
    logits_bytes: int
    params_bytes: int = 0
    grads_bytes: int = 0
    optimizer_bytes: int = 0
    total_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_bytes", self.state_bytes + self.saved_bytes + self.logits_bytes)


class _SavedTensors:
    """Records the storages autograd saves (each once), attributing each to the block running when first saved."""

    def __init__(self, excluded: set[int]) -> None:
        self.excluded = excluded
        self.bytes_by_storage: dict[int, int] = {}
        self.block_of_storage: dict[int, int | None] = {}
        self.block: int | None = None
        self._alive: list[Tensor] = []  # keeps every saved storage alive, so no address is reused during a count

    def pack(self, t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in self.excluded and ptr not in self.bytes_by_storage:
            self.bytes_by_storage[ptr] = storage.nbytes()
            self.block_of_storage[ptr] = self.block
            self._alive.append(t)
        return t

    def total(self) -> int:
        return sum(self.bytes_by_storage.values())

    def by_block(self) -> dict[int | None, int]:
        out: dict[int | None, int] = {}
        for ptr, n in self.bytes_by_storage.items():
            block = self.block_of_storage[ptr]
            out[block] = out.get(block, 0) + n
        return out

    def release(self) -> None:
        self._alive.clear()


def _nbytes(t: Tensor) -> int:
    return t.numel() * t.element_size()


def _optimizer(params: list[Tensor], name: Literal["adamw", "adafactor"]) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(params)
    return torch.optim.Adafactor(params)


def _optimizer_state_bytes(optimizers: list[torch.optim.Optimizer]) -> int:
    """Bytes of the optimisers' state tensors, step counters (0-dim) left out."""
    return sum(
        _nbytes(t)
        for opt in optimizers
        for state in opt.state.values()
        for key, t in state.items()
        if isinstance(t, Tensor) and not (key == "step" and t.dim() == 0)
    )


class _StepInBackward:
    """One optimiser per parameter, stepped as soon as its gradient is accumulated, which is then freed; records
    the most gradient bytes alive at once."""

    def __init__(self, params: list[Tensor], name: Literal["adamw", "adafactor"]) -> None:
        self.params = params
        self.optimizers = {id(p): _optimizer([p], name) for p in params}
        self.peak_grad_bytes = 0
        self._handles = [p.register_post_accumulate_grad_hook(self._step) for p in params]  # type: ignore[no-untyped-call]

    def _step(self, p: Tensor) -> None:
        alive = sum(_nbytes(q.grad) for q in self.params if q.grad is not None)
        self.peak_grad_bytes = max(self.peak_grad_bytes, alive)
        self.optimizers[id(p)].step()
        p.grad = None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


@contextmanager
def _block_tracking(model: LanguageModel, saved: _SavedTensors) -> Iterator[None]:
    """Set ``saved.block`` to the block whose first pre-norm runs, and to None from the final norm on."""
    per_block = len(model.arch.block)
    handles = []
    for b in range(model.arch.num_blocks):

        def enter(*_: object, b: int = b) -> None:
            saved.block = b

        handles.append(model.norms[b * per_block].register_forward_pre_hook(enter))

    def leave(*_: object) -> None:
        saved.block = None

    handles.append(model.final_norm.register_forward_pre_hook(leave))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _forward_loss(
    model: LanguageModel, x_BS: Tensor, y_BS: Tensor, saved: _SavedTensors, bf16_autocast: bool
) -> tuple[Tensor, list[Tensor]]:
    """The training step's forward and loss (as ``brainsearch.train.loop.train_step``) under the counting hooks:
    ``(loss, logits tensors the step holds)``."""
    with (
        torch.autograd.graph.saved_tensors_hooks(saved.pack, lambda t: t),
        torch.autocast(x_BS.device.type, dtype=torch.bfloat16, enabled=bf16_autocast),
    ):
        out = model(x_BS)
        logits_TV = out.logits.float().flatten(0, 1)
        loss = F.cross_entropy(logits_TV, y_BS.flatten()) + out.aux_loss
    return loss, [out.logits, logits_TV]


def count_training_memory(
    model: LanguageModel,
    x_BS: Tensor,
    y_BS: Tensor,
    *,
    bf16_autocast: bool = False,
    optimizer: Literal["adamw", "adafactor"] | None = None,
    optimizer_in_backward: bool = False,
) -> MemoryCount:
    """Count the peak training memory of one step of ``model`` on the micro-batch ``x_BS -> y_BS`` (``[B, S]``).

    Runs the forward (under ``torch.autocast(bfloat16)`` with ``bf16_autocast``, as CUDA training does; a model
    cast to bf16 runs in bf16 without it) and the backward, leaving gradients in the parameters (none with
    ``optimizer_in_backward``); with ``optimizer`` one real optimiser step follows (see the module docstring), so
    the parameters change. The model's ``activation_checkpointing`` decides what is kept. The model must be in
    training mode.
    """
    if not model.training:
        raise ValueError("count_training_memory needs a model in training mode")
    if optimizer_in_backward and optimizer is None:
        raise ValueError("optimizer_in_backward needs an optimizer")
    excluded = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    checkpointing = model.activation_checkpointing
    largest_recompute = 0
    if checkpointing:
        # Per-block saved bytes, from an uncheckpointed forward of the same batch (see the module docstring).
        per_block = _SavedTensors(excluded)
        model.activation_checkpointing = False
        try:
            with _block_tracking(model, per_block):
                loss, _ = _forward_loss(model, x_BS, y_BS, per_block, bf16_autocast)
        finally:
            model.activation_checkpointing = True
        del loss
        input_bytes = _block_input_bytes(model, x_BS)
        largest_recompute = max(n for b, n in per_block.by_block().items() if b is not None) - input_bytes
        per_block.release()

    saved = _SavedTensors(excluded)
    loss, logits = _forward_loss(model, x_BS, y_BS, saved, bf16_autocast)
    held: dict[int, int] = {}
    for t in logits:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in saved.bytes_by_storage:
            held[ptr] = t.untyped_storage().nbytes()
    largest_grad = [0]

    def record(grad: Tensor) -> None:
        largest_grad[0] = max(largest_grad[0], grad.untyped_storage().nbytes())

    logits[1].register_hook(record)  # type: ignore[no-untyped-call]
    saved_bytes = saved.total() + largest_recompute
    saved.release()
    del logits
    trainable: list[Tensor] = [p for p in model.parameters() if p.requires_grad]
    in_backward = _StepInBackward(trainable, optimizer) if optimizer is not None and optimizer_in_backward else None
    try:
        loss.backward()  # type: ignore[no-untyped-call]
    finally:
        if in_backward is not None:
            in_backward.remove()
    params_bytes = sum(_nbytes(p) for p in model.parameters())
    if in_backward is not None:
        grads_bytes = in_backward.peak_grad_bytes
        optimizer_bytes = _optimizer_state_bytes(list(in_backward.optimizers.values()))
    else:
        grads_bytes = sum(_nbytes(p) for p in trainable)
        if optimizer is None:
            optimizer_bytes = _ADAM_MOMENT_BYTES * sum(p.numel() for p in trainable)
        else:
            stepped = _optimizer(trainable, optimizer)
            stepped.step()
            optimizer_bytes = _optimizer_state_bytes([stepped])
    return MemoryCount(
        state_bytes=params_bytes + grads_bytes + optimizer_bytes,
        saved_bytes=saved_bytes,
        logits_bytes=sum(held.values()) + largest_grad[0],
        params_bytes=params_bytes,
        grads_bytes=grads_bytes,
        optimizer_bytes=optimizer_bytes,
    )


def _block_input_bytes(model: LanguageModel, x_BS: Tensor) -> int:
    """Bytes of one block's input: the float32 residual stream ``[B, S, D]``."""
    return x_BS.numel() * model.arch.d_model * model.embed.weight.element_size()

"""Lifelong-MoE (Chen et al. 2023, arXiv 2305.12281): grow a trained MoE model for a new data distribution.

When new data arrives, every MoE sub-layer gets ``add_experts`` more experts (top-k, capacity factor and gating
unchanged); the old experts and their router rows are frozen; the new experts, the new router rows and every shared
parameter (embeddings, attention, dense FFNs, norms) train on the new data only, with

    L = L_LM + L_aux + lambda * KL(p_old || p_new)

where ``p_old`` is the frozen previous model's next-token distribution on the same batch (the old data is not
replayed). :func:`expand` also fine-tunes the un-expanded model plainly (``L_LM + L_aux``; same steps, batches,
optimiser and schedule) as the baseline, and reports validation loss on the old and the new corpus before and after
each method; *forgetting* is the old-corpus loss increase.

How the model grows - new experts as noisy copies of old ones, new router rows at the mean of the old rows, and
what happens to compute per token under token and expert choice - is :mod:`brainsearch.model.expand`. The paper
publishes neither the number of experts added nor lambda: ``kl_weight`` (lambda) defaults to 1.0, a choice of ours.

Measured on cpu-tiny GLaM (tests/train/test_lifelong.py: 300 steps on stdlib code, then 100 steps on English
documentation prose, add 4 experts to 4, 5 seeds): lifelong forgets 0.04-0.07 nats on the old corpus against
0.15-0.24 for plain fine-tuning, and gets 75-82% of plain fine-tuning's new-corpus improvement; it also beats, on
both corpora, plain fine-tuning at a third of the learning rate (expert choice, Brainformer-1, 2 seeds: forgetting
0.06-0.09 against 0.20-0.30). The distillation term does the protecting at this scale: with ``kl_weight=0`` the
expanded, frozen model forgets as much as plain fine-tuning (the shared layers drift, and the new experts end up
with 35-60% of the assignments on both corpora alike: no specialisation by corpus after 100 steps).

Both methods are configurations of the one training loop (:mod:`brainsearch.train.loop`), not copies of it: the
distillation term is a loss-term hook, and freezing is a gradient mask around the loop plus an after-step hook.

Freezing. AdamW's weight decay moves a parameter whose gradient is zero, so zeroing gradients is not enough: a
gradient hook zeroes the frozen slices' gradients (so they add nothing to the clipped norm or to Adam's moments) and
the slices are copied back from a snapshot after every optimiser step; they end bit-identical to the old model's.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor, nn

from brainsearch.arch.cost import cost
from brainsearch.arch.spec import Architecture, MoESpec
from brainsearch.data import BatchSampler, Corpus, load_corpus
from brainsearch.errors import DataError, Problem
from brainsearch.model import LanguageModel
from brainsearch.model.expand import ExpertInit, check_expandable, expand_model
from brainsearch.model.transplant import expert_params, moe_layers
from brainsearch.store import load_model, save_weights
from brainsearch.train.budget import StepBudget
from brainsearch.train.device import resolve_device
from brainsearch.train.evaluate import evaluate
from brainsearch.train.loop import Hooks, LossTerm, train_loop
from brainsearch.train.result import Status
from brainsearch.train.settings import TrainSettings

__all__ = [
    "CorpusLosses",
    "Expansion",
    "ExpansionReport",
    "ExpansionSettings",
    "FrozenExperts",
    "MethodResult",
    "TrainLog",
    "expand",
    "finetune",
    "lifelong_train",
    "run_expansion",
    "validation_loss",
]

DEFAULT_STEPS = 200


class ExpansionSettings(TrainSettings):
    """How both methods train on the new data (the same steps, batches, optimiser and schedule for each): the
    training loop's settings with expansion's own defaults, budget and knobs.

    The budget is ``steps`` or ``tokens``, the corpora are :func:`expand`'s arguments, the expanded model keeps the
    old model's router-loss weights and nothing is evaluated during training, so the inherited ``budget``, ``data``,
    ``load_balance_weight``, ``z_loss_weight`` and ``eval_interval`` are not read. The memory plan (``micro_batch``,
    ``activation_checkpointing``, ``memory_limit_bytes``) and ``compile`` apply as in every run of the loop.
    """

    lr: float = Field(default=1e-3, gt=0, le=10)
    warmup_steps: int = Field(default=10, ge=0, le=1_000_000, description="capped at 10% of the steps")
    steps: int | None = Field(
        default=None, ge=1, le=100_000_000, description=f"steps of each method; {DEFAULT_STEPS} if tokens is not given"
    )
    tokens: int | None = Field(
        default=None, ge=1, description="the budget in tokens instead: ceil(tokens / (batch_size * seq_len)) steps"
    )
    kl_weight: float = Field(
        default=1.0, ge=0, le=1e4, description="lambda of the distillation term (not published; 0 turns it off)"
    )
    expert_init: ExpertInit = "copy"
    init_noise: float = Field(default=0.01, ge=0, le=10, description="noise on copied experts, x the weight's std")
    baseline: bool = Field(default=True, description="also fine-tune the un-expanded model plainly, for comparison")

    @model_validator(mode="after")
    def _one_budget(self) -> Self:
        if self.steps is not None and self.tokens is not None:
            raise ValueError("give steps or tokens, not both")
        return self

    def num_steps(self, seq_len: int) -> int:
        """Training steps of each method for sequences of ``seq_len`` tokens."""
        if self.tokens is not None:
            return max(1, math.ceil(self.tokens / (self.batch_size * seq_len)))
        return self.steps if self.steps is not None else DEFAULT_STEPS


class CorpusLosses(BaseModel):
    """Validation loss (nats per token) of one model on the old and on the new corpus."""

    model_config = ConfigDict(frozen=True)
    old: float
    new: float


class TrainLog(BaseModel):
    """How one training run on the new data went."""

    model_config = ConfigDict(frozen=True)
    status: Status
    reason: str | None = None
    steps: int
    tokens: int
    seconds: float
    train_loss: float | None = Field(description="LM loss of the last step")
    kl: float | None = Field(default=None, description="KL(p_old || p_new) of the last step; lifelong only")


class MethodResult(BaseModel):
    """One method's outcome: its training log and its validation losses after training.

    ``forgetting`` = old-corpus loss after - before (lower is better); ``new_gain`` = new-corpus loss before - after
    (higher is better). ``new_expert_share_*``: fraction of routed assignments that went to the added experts on
    each corpus's validation batches (lifelong only).
    """

    model_config = ConfigDict(frozen=True)
    method: Literal["lifelong", "plain"]
    log: TrainLog
    losses: CorpusLosses | None
    forgetting: float | None
    new_gain: float | None
    new_expert_share_old: float | None = None
    new_expert_share_new: float | None = None


class ExpansionReport(BaseModel):
    """What :func:`run_expansion` measured (JSON-able). Parameter counts exclude embeddings (as ``cost``)."""

    model_config = ConfigDict(frozen=True)
    old_data: str
    new_data: str
    add_experts: int
    experts_before: list[int] = Field(description="experts of each MoE sub-layer of the block, before")
    experts_after: list[int]
    kl_weight: float
    steps: int
    tokens: int
    batch_size: int
    lr: float
    seed: int
    arch_digest_before: str
    arch_digest_after: str
    params_total_before: int
    params_total_after: int
    params_activated_before: int
    params_activated_after: int
    before: CorpusLosses = Field(description="the old model")
    expanded_start: CorpusLosses = Field(description="the expanded model before any training")
    lifelong: MethodResult
    plain: MethodResult | None = None
    seconds: float
    weights_path: str | None = None


@dataclass
class Expansion:
    """:func:`run_expansion`'s result: the report and the trained models (the plain one when the baseline ran)."""

    report: ExpansionReport
    expanded: LanguageModel
    finetuned: LanguageModel | None


# --- freezing ------------------------------------------------------------------------------------------------------


class FrozenExperts:
    """Keeps the first ``experts_before[i]`` experts of the i-th MoE sub-layer, weights and router rows, fixed.

    Use as a context manager around training and call :meth:`restore` after every optimiser step: the gradient
    hooks zero the frozen slices' gradients, and ``restore`` undoes what weight decay (or any other optimiser
    update without a gradient) did to them. Create it after the model is on its training device.
    """

    def __init__(self, model: LanguageModel, experts_before: Sequence[int]) -> None:
        moes = moe_layers(model)
        if len(moes) != len(experts_before):
            raise ValueError(f"{len(moes)} MoE sub-layers, but {len(experts_before)} expert counts")
        self._slices: list[tuple[nn.Parameter, int, int, Tensor]] = []
        for (_, moe), num_old in zip(moes, experts_before, strict=True):
            for _, p, dim in expert_params(moe, "expansion"):
                self._slices.append((p, dim, num_old, p.detach().narrow(dim, 0, num_old).clone()))
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> Self:
        for p, dim, num_old, _ in self._slices:
            self._handles.append(p.register_hook(_zero_slice_hook(dim, num_old)))  # type: ignore[no-untyped-call]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    @torch.no_grad()
    def restore(self) -> None:
        """Copy the frozen slices back from the snapshot taken at construction."""
        for p, dim, num_old, snapshot in self._slices:
            p.narrow(dim, 0, num_old).copy_(snapshot)


def _zero_slice_hook(dim: int, num_old: int) -> Callable[[Tensor], Tensor]:
    def hook(grad: Tensor) -> Tensor:
        grad = grad.clone()
        grad.narrow(dim, 0, num_old).zero_()
        return grad

    return hook


# --- training and evaluation ---------------------------------------------------------------------------------------


def lifelong_train(
    expanded: LanguageModel,
    teacher: LanguageModel,
    corpus: Corpus,
    experts_before: Sequence[int],
    settings: ExpansionSettings | None = None,
) -> TrainLog:
    """Train ``expanded`` in place on ``corpus`` with ``L_LM + L_aux + kl_weight * KL(p_teacher || p_expanded)``.

    The first ``experts_before[i]`` experts (and router rows) of the i-th MoE sub-layer stay bit-identical; the
    teacher (the old model) is put in eval mode and run without gradients; its weights are not changed. Both models
    are moved to the settings' device.
    """
    settings = settings or ExpansionSettings()
    device = resolve_device(settings)
    expanded.to(device)
    teacher.to(device).eval()
    terms = [LossTerm("kl", settings.kl_weight, _distillation(teacher))] if settings.kl_weight > 0 else []
    with FrozenExperts(expanded, experts_before) as frozen:
        return _train(expanded, corpus, settings, Hooks(loss_terms=terms, after_optimizer_step=[frozen.restore]))


def finetune(model: LanguageModel, corpus: Corpus, settings: ExpansionSettings | None = None) -> TrainLog:
    """The baseline: train every parameter of ``model`` in place on ``corpus`` with ``L_LM + L_aux``."""
    return _train(model, corpus, settings or ExpansionSettings(), Hooks())


def validation_loss(model: LanguageModel, corpus: Corpus, settings: ExpansionSettings | None = None) -> float:
    """Mean loss (nats per token) of ``model`` on ``settings.eval_batches`` validation batches of ``corpus``: the
    batches the report's losses use (the same for every model with the same settings)."""
    return evaluate(model, corpus, settings or ExpansionSettings()).loss


def _distillation(teacher: LanguageModel) -> Callable[[Tensor, Tensor], Tensor]:
    """``KL(p_teacher || p_student)`` averaged over tokens, the teacher run on the student's batch."""

    def kl(x_BS: Tensor, logits_TV: Tensor) -> Tensor:
        with torch.no_grad():
            old_logits_TV = teacher(x_BS).logits.float().flatten(0, 1)
        return F.kl_div(
            logits_TV.log_softmax(-1), old_logits_TV.log_softmax(-1), reduction="batchmean", log_target=True
        )

    return kl


def _train(model: LanguageModel, corpus: Corpus, settings: ExpansionSettings, hooks: Hooks) -> TrainLog:
    """Either method: the training loop for ``settings.num_steps`` steps, no evaluation inside it."""
    seq_len = model.arch.seq_len
    batches = BatchSampler(corpus.train, settings.batch_size, seq_len, settings.seed)
    budget = StepBudget(steps=settings.num_steps(seq_len))
    run = train_loop(lambda: model, batches, settings, budget, resolve_device(settings), hooks=hooks)
    return TrainLog(
        status=run.status,
        reason=run.reason,
        steps=run.steps,
        tokens=run.tokens,
        seconds=run.elapsed_s,
        train_loss=run.train_loss,
        kl=run.loss_terms.get("kl"),
    )


def _check_corpora(arch: Architecture, **corpora: Corpus) -> None:
    problems = []
    for field, corpus in corpora.items():
        if corpus.vocab_size != arch.vocab_size:
            problems.append(
                Problem(field, f"corpus vocabulary {corpus.vocab_size} != the model's {arch.vocab_size}", corpus.name)
            )
        for split, tokens in (("train", corpus.train), ("validation", corpus.val)):
            if tokens.size < arch.seq_len + 1:
                problems.append(
                    Problem(
                        field,
                        f"the {split} split has {tokens.size} tokens, fewer than one sequence of "
                        f"seq_len + 1 = {arch.seq_len + 1}",
                        corpus.name,
                    )
                )
    if problems:
        raise DataError(problems)


def run_expansion(
    model: LanguageModel,
    add_experts: int,
    old_corpus: Corpus,
    new_corpus: Corpus,
    settings: ExpansionSettings | None = None,
) -> Expansion:
    """Expand ``model`` by ``add_experts`` per MoE sub-layer and train it on ``new_corpus`` (Lifelong-MoE); with
    ``settings.baseline`` also fine-tune a copy of ``model`` plainly on it; evaluate everything on both corpora.

    ``model`` itself is not changed. Bad input raises :class:`~brainsearch.errors.InputError` (``add_experts < 1``,
    no MoE sub-layer) or :class:`~brainsearch.errors.DataError` (a corpus of another vocabulary, or too short).
    """
    settings = settings or ExpansionSettings()
    start = time.perf_counter()
    check_expandable(model.arch, add_experts)
    _check_corpora(model.arch, old_data=old_corpus, new_data=new_corpus)
    device = resolve_device(settings)
    experts_before = [moe.spec.experts for _, moe in moe_layers(model)]

    expanded = expand_model(
        model, add_experts, seed=settings.seed, expert_init=settings.expert_init, init_noise=settings.init_noise
    ).to(device)
    teacher = copy.deepcopy(model).to(device)

    def losses(
        m: LanguageModel, counts: Sequence[int] | None = None
    ) -> tuple[CorpusLosses, float | None, float | None]:
        old, new = evaluate(m, old_corpus, settings), evaluate(m, new_corpus, settings)
        if counts is None:
            return CorpusLosses(old=old.loss, new=new.loss), None, None
        return CorpusLosses(old=old.loss, new=new.loss), old.share_beyond(counts), new.share_beyond(counts)

    before, _, _ = losses(teacher)
    expanded_start, _, _ = losses(expanded, experts_before)

    def result(
        method: Literal["lifelong", "plain"], m: LanguageModel, log: TrainLog, counts: Sequence[int] | None
    ) -> MethodResult:
        if log.status != "completed":
            return MethodResult(method=method, log=log, losses=None, forgetting=None, new_gain=None)
        after, share_old, share_new = losses(m, counts)
        return MethodResult(
            method=method,
            log=log,
            losses=after,
            forgetting=after.old - before.old,
            new_gain=before.new - after.new,
            new_expert_share_old=share_old,
            new_expert_share_new=share_new,
        )

    log = lifelong_train(expanded, teacher, new_corpus, experts_before, settings)
    lifelong = result("lifelong", expanded, log, experts_before)
    finetuned: LanguageModel | None = None
    plain: MethodResult | None = None
    if settings.baseline:
        finetuned = copy.deepcopy(model).to(device)
        plain = result("plain", finetuned, finetune(finetuned, new_corpus, settings), None)

    c_before, c_after = cost(model.arch), cost(expanded.arch)
    seq_len = model.arch.seq_len
    report = ExpansionReport(
        old_data=old_corpus.name,
        new_data=new_corpus.name,
        add_experts=add_experts,
        experts_before=[layer.experts for layer in model.arch.block if isinstance(layer, MoESpec)],
        experts_after=[layer.experts for layer in expanded.arch.block if isinstance(layer, MoESpec)],
        kl_weight=settings.kl_weight,
        steps=settings.num_steps(seq_len),
        tokens=settings.num_steps(seq_len) * settings.batch_size * seq_len,
        batch_size=settings.batch_size,
        lr=settings.lr,
        seed=settings.seed,
        arch_digest_before=model.arch.digest,
        arch_digest_after=expanded.arch.digest,
        params_total_before=c_before.params_total,
        params_total_after=c_after.params_total,
        params_activated_before=c_before.params_activated,
        params_activated_after=c_after.params_activated,
        before=before,
        expanded_start=expanded_start,
        lifelong=lifelong,
        plain=plain,
        seconds=time.perf_counter() - start,
    )
    return Expansion(report=report, expanded=expanded, finetuned=finetuned)


# --- the entry point -----------------------------------------------------------------------------------------------


def _load(field: str, source: str, vocab_size: int, data_dir: Path | None) -> Corpus:
    try:
        return load_corpus(source, vocab_size, data_dir)
    except DataError as exc:
        raise DataError([Problem(field, p.message, p.source, p.line) for p in exc.problems]) from None


def expand(
    weights: Path | str | LanguageModel,
    add_experts: int,
    new_data: str,
    old_data: str = "default",
    settings: ExpansionSettings | None = None,
    *,
    data_dir: Path | None = None,
    output: Path | None = None,
) -> ExpansionReport:
    """Lifelong-MoE for a trained model: the entry point of ``brainsearch expand``.

    ``weights``: a safetensors file from :func:`~brainsearch.export.save_weights` (or a model). ``new_data`` and
    ``old_data`` are corpus sources as :func:`~brainsearch.data.load_corpus` takes them (``"default"``, a text file
    or folder, ``.jsonl``, a token array), tokenised with the model's vocabulary and cached under ``data_dir``.
    With ``output``, the expanded model's weights are saved there (the report's JSON in the file's metadata under
    ``brainsearch.lifelong``). Bad input raises :class:`~brainsearch.errors.InputError` (``DataError`` for data)
    naming the field, before any training.
    """
    model = weights if isinstance(weights, LanguageModel) else load_model(Path(weights))
    check_expandable(model.arch, add_experts)
    vocab = model.arch.vocab_size
    new_corpus = _load("new_data", new_data, vocab, data_dir)  # first: the default old corpus is slow to build
    old_corpus = _load("old_data", old_data, vocab, data_dir)
    run = run_expansion(model, add_experts, old_corpus, new_corpus, settings)
    report = run.report
    if output is not None:
        report = report.model_copy(update={"weights_path": str(output)})
        save_weights(
            run.expanded.state_dict(),
            run.expanded.arch,
            output,
            metadata={"brainsearch.lifelong": report.model_dump_json()},
        )
    return report

"""Training: one loop (``loop``: step, budget, evaluation, hooks, failures as results) configured as the proxy
trainer (``proxy``, what a trial or a scale-up rung runs) and as Lifelong-MoE expansion (``lifelong``).

``train`` (and ``Report``) import torch when first used, so settings and results can be imported by processes that
never train - the API, the dashboard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from brainsearch.train.result import CurvePoint, MoESummary, ProxyResult
from brainsearch.train.settings import TrainSettings

if TYPE_CHECKING:
    from brainsearch.train.proxy import Report, train

__all__ = ["CurvePoint", "MoESummary", "ProxyResult", "Report", "TrainSettings", "train"]


def __getattr__(name: str) -> Any:
    if name in ("train", "Report"):
        from brainsearch.train import proxy

        return getattr(proxy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

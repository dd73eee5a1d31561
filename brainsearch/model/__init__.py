"""The torch model library: attention, FFNs, routers, the MoE layer and the language model (imports torch)."""

from brainsearch.model.lm import LanguageModel, LMOutput, build_model
from brainsearch.model.moe import MoE, MoEStats
from brainsearch.model.routing import ExpertChoiceRouter, Router, Routing, TokenChoiceRouter

__all__ = [
    "ExpertChoiceRouter",
    "LMOutput",
    "LanguageModel",
    "MoE",
    "MoEStats",
    "Router",
    "Routing",
    "TokenChoiceRouter",
    "build_model",
]

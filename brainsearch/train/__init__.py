"""The proxy trainer: budgets, evaluation, step timing, MoE statistics, failures as results (imports torch)."""

from brainsearch.train.proxy import Report, train
from brainsearch.train.result import CurvePoint, MoESummary, ProxyResult
from brainsearch.train.settings import TrainSettings

__all__ = ["CurvePoint", "MoESummary", "ProxyResult", "Report", "TrainSettings", "train"]

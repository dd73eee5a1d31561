"""The ``pytorch`` export format: one self-contained Python file that rebuilds an architecture in plain PyTorch.

The file imports only the standard library and torch, so a user can take a searched model anywhere without
installing brainsearch. Its modules carry the same parameter names and shapes as :func:`brainsearch.build_model`
(so ``state_dict`` moves freely between the two) and compute the same logits; it reads the ``.safetensors`` weights
:func:`brainsearch.store.save_weights` writes with a small reader of its own.

The model code is :mod:`brainsearch.export.standalone_model`, a module linted and type-checked with the package;
an export is that module's text with three statements replaced: its docstring (now describing the architecture),
``ARCHITECTURE`` and ``PROVENANCE``. This module reads that text without importing it, so exporting does not
import torch.
"""

from __future__ import annotations

import ast
import functools
import json
import math
from importlib import resources

import brainsearch
from brainsearch.arch.cost import cost
from brainsearch.arch.spec import Architecture, MoESpec

__all__ = ["standalone_source"]

_LINE_LENGTH = 120  # the project's ruff line length; the generated file is laid out as ruff format would
_MODEL_MODULE = "standalone_model.py"


def standalone_source(arch: Architecture, *, provenance: dict[str, object] | None = None) -> str:
    """The text of one Python file that defines ``arch`` as a PyTorch model, with ``build(weights)`` to load it.

    ``provenance`` (search and trial ids, metrics, ...: JSON-able data; other values are written as strings) is
    embedded as the file's ``PROVENANCE``; the architecture JSON as ``ARCHITECTURE``.
    """
    provenance_data = None if provenance is None else json.loads(json.dumps(provenance, default=str))
    imports, between, model_code = _model_text()
    return "".join(
        [
            _docstring(arch, provenance_data),
            imports,
            _assignment("ARCHITECTURE: dict[str, Any]", arch.to_dict()),
            between,
            _assignment("PROVENANCE: dict[str, Any] | None", provenance_data),
            model_code,
        ]
    )


@functools.cache
def _model_text() -> tuple[str, str, str]:
    """The model module's text around the statements an export replaces: from its docstring to ``ARCHITECTURE``,
    from there to ``PROVENANCE``, and the rest."""
    source = resources.files(__package__).joinpath(_MODEL_MODULE).read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    statements = ast.parse(source).body
    docstring = statements[0]
    assert isinstance(docstring, ast.Expr) and isinstance(docstring.value, ast.Constant), "it starts with a docstring"
    assigned = {
        node.target.id: _span(node)
        for node in statements
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
    }
    docstring_end = _span(docstring)[1]
    architecture_start, architecture_end = assigned["ARCHITECTURE"]
    provenance_start, provenance_end = assigned["PROVENANCE"]
    return (
        "".join(lines[docstring_end:architecture_start]),
        "".join(lines[architecture_end:provenance_start]),
        "".join(lines[provenance_end:]),
    )


def _span(statement: ast.stmt) -> tuple[int, int]:
    """The lines of ``statement`` as ``lines[start:end]`` of its source's lines (ast counts lines from 1)."""
    assert statement.end_lineno is not None  # ast.parse sets it on every statement
    return statement.lineno - 1, statement.end_lineno


def _docstring(arch: Architecture, provenance: dict[str, object] | None) -> str:
    c = cost(arch)
    origin = f"Exported by brainsearch {brainsearch.__version__}"
    ids = [(name, (provenance or {}).get(f"{name}_id")) for name in ("search", "trial")]
    if known := [f"{name} {value}" for name, value in ids if _is_int(value)]:
        origin += " from " + ", ".join(known)
    times = "once" if arch.num_blocks == 1 else f"{arch.num_blocks} times"
    experts = sorted({layer.experts for layer in arch.block if isinstance(layer, MoESpec)})
    moe = f", {'/'.join(map(str, experts))} experts per MoE layer" if experts else ""
    return f'''"""A Brainformer-style mixture-of-experts language model in plain PyTorch.

{origin}.

Block:      {arch.pattern} (a attention, f dense FFN, g MoE), repeated {times}
Sizes:      d_model {arch.d_model}{moe}, vocabulary {arch.vocab_size}, context {arch.seq_len} tokens
Parameters: {c.params_all:,} in all; without embeddings {c.params_total:,}, {c.params_activated:,} activated per token

Needs Python >= 3.10 and PyTorch >= 2.4, nothing else. ``ARCHITECTURE`` is the architecture the model is built from
(brainsearch's Architecture JSON), ``PROVENANCE`` where it came from. Use it as::

    import model  # this file, saved as model.py

    lm = model.build("weights.safetensors")  # or model.build() for random weights; build(..., device="cuda")
    logits = lm(ids)  # token ids [batch, seq] (seq <= {arch.seq_len}) -> logits [batch, seq, vocab]
    lm.aux_loss  # after a forward: the auxiliary router loss to add to the LM loss when training

or run ``python model.py [weights.safetensors]`` for a smoke test (parameter count, one forward on random tokens).

The state_dict keys and shapes equal those of ``brainsearch.build_model(ARCHITECTURE)``: weights move freely between
the two, and the logits agree.

Shape legend (tensor names end in their shape): B batch, S sequence, T = B * S tokens, D model dim, V vocabulary,
N heads or routed assignments, K head dim or top-k, R rotary pairs or low rank, E experts, C slots per expert,
G groups (1 for a dense FFN, E for experts), H hidden dim, M input matrices (2 gated, 1 plain), X = M * H or M * R.
"""
'''


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _assignment(target: str, value: object) -> str:
    prefix = f"{target} = "
    return f"{prefix}{_literal(value, 0, _LINE_LENGTH - len(prefix))}\n"


def _literal(value: object, indent: int, room: int) -> str:
    """``value`` (JSON data) as Python source laid out the way ruff format would: on one line when it fits in
    ``room`` columns, else one item per line with a trailing comma (which ruff then keeps expanded)."""
    flat = _flat(value)
    if len(flat) <= room or not isinstance(value, dict | list) or not value:
        return flat
    pad = " " * (indent + 4)
    lines = []
    if isinstance(value, dict):
        for key, item in value.items():
            head = f"{pad}{_flat(key)}: "
            lines.append(f"{head}{_literal(item, indent + 4, _LINE_LENGTH - len(head) - 1)},\n")
        opening, closing = "{", "}"
    else:
        lines = [f"{pad}{_literal(item, indent + 4, _LINE_LENGTH - len(pad) - 1)},\n" for item in value]
        opening, closing = "[", "]"
    return f"{opening}\n{''.join(lines)}{' ' * indent}{closing}"


def _flat(value: object) -> str:
    """``value`` (JSON data: the output of ``json.loads``) as a one-line Python literal."""
    if value is None or isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, float):
        if math.isnan(value):
            return 'float("nan")'
        if math.isinf(value):
            return 'float("inf")' if value > 0 else '-float("inf")'
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_flat(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flat(key)}: {_flat(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"not JSON data: {value!r}")


def _string(text: str) -> str:
    # JSON's escapes (backslash, double quote, control characters) are valid Python escapes with the same meaning.
    body = json.dumps(text, ensure_ascii=False)[1:-1]
    if text.count('"') > text.count("'"):
        # ruff format picks single quotes when they need fewer escapes
        return "'" + body.replace('\\"', '"').replace("'", "\\'") + "'"
    return f'"{body}"'

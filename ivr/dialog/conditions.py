"""Branch conditions in `next: [{if: ..., then: ...}]`: a small, safe expression language.

Designers write Python-like comparisons over `slots.x` and `vars.x.y`:
`slots.confirm == true`, `slots.amount > 500 and vars.balance.blocked`, `not slots.email`,
`slots.plan in ["gold", "silver"]`. Parsed with `ast` and evaluated from a whitelist, so a flow
file can never run code. An unset slot or missing variable is `null` (falsy), not an error.
"""

from __future__ import annotations

import ast
import operator
from typing import Any


class ConditionError(ValueError):
    pass


_CONSTS = {"true": True, "false": False, "null": None, "none": None, "True": True, "False": False, "None": None}
_ROOTS = ("slots", "vars")
_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: b is not None and a in b,
    ast.NotIn: lambda a, b: b is None or a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}


def parse_condition(text: str, slots: set[str] | None = None) -> ast.Expression:
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise ConditionError(f"not a valid expression ({exc.msg})") from None
    _check(tree.body, slots)
    return tree


def _check(node: ast.AST, slots: set[str] | None) -> None:
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, slots)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
        _check(node.operand, slots)
    elif isinstance(node, ast.Compare):
        if not all(type(op) in _COMPARE for op in node.ops):
            raise ConditionError("unsupported comparison")
        for value in [node.left, *node.comparators]:
            _check(value, slots)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, (str, int, float, bool, type(None))):
            raise ConditionError("unsupported constant")
    elif isinstance(node, (ast.List, ast.Tuple)):
        for value in node.elts:
            _check(value, slots)
    elif isinstance(node, ast.Name):
        if node.id not in _CONSTS:
            raise ConditionError(f"unknown name '{node.id}': use slots.NAME or vars.NAME")
    elif isinstance(node, ast.Attribute):
        path = _path(node)
        if any(part.startswith("_") for part in path):
            raise ConditionError("names starting with '_' are not allowed")
        if path[0] not in _ROOTS:
            raise ConditionError(f"unknown name '{path[0]}': use slots.NAME or vars.NAME")
        if path[0] == "slots" and slots is not None and len(path) > 1 and path[1] not in slots:
            raise ConditionError(f"no slot '{path[1]}' is declared")
    else:
        raise ConditionError(f"'{ast.unparse(node)}' is not allowed in a condition")


def _path(node: ast.AST) -> list[str]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        raise ConditionError("only dotted names like slots.amount are allowed")
    parts.append(node.id)
    return parts[::-1]


def _numeric_pair(a: Any, b: Any) -> tuple[Any, Any]:
    """Money slots and JSON fields arrive as "42.50": compare them with numbers as numbers."""

    def num(v: Any) -> Any:
        if isinstance(v, str):
            try:
                return float(v)
            except ValueError:
                return v
        return v

    number = (int, float)
    if isinstance(a, number) and not isinstance(a, bool) and isinstance(b, str):
        return a, num(b)
    if isinstance(b, number) and not isinstance(b, bool) and isinstance(a, str):
        return num(a), b
    return a, b


def evaluate(text: str, slots: dict[str, Any], vars: dict[str, Any]) -> bool:
    tree = parse_condition(text)
    return bool(_eval(tree.body, {"slots": slots, "vars": vars}))


def _eval(node: ast.AST, scope: dict[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            result: Any = True
            for value in node.values:
                result = _eval(value, scope)
                if not result:
                    return result
            return result
        result = False
        for value in node.values:
            result = _eval(value, scope)
            if result:
                return result
        return result
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, scope)
        return (not value) if isinstance(node.op, ast.Not) else -value
    if isinstance(node, ast.Compare):
        left = _eval(node.left, scope)
        for op, right_node in zip(node.ops, node.comparators):
            right = _eval(right_node, scope)
            a, b = _numeric_pair(left, right)
            try:
                if not _COMPARE[type(op)](a, b):
                    return False
            except TypeError:
                return False  # comparing an unset slot with a number is simply false
            left = right
        return True
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(v, scope) for v in node.elts]
    if isinstance(node, ast.Name):
        return _CONSTS[node.id]
    if isinstance(node, ast.Attribute):
        value: Any = scope
        for part in _path(node):
            if isinstance(value, dict):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None  # only data is walked, never object attributes
            if value is None:
                return None
        return value
    raise ConditionError(f"cannot evaluate '{ast.unparse(node)}'")

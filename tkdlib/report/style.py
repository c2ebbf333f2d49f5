"""How the book names, orders, colours and formats methods and numbers, the same on every page."""

from __future__ import annotations


METHOD_LABELS = {
    "teacher_guided": "teacher-guided (ours)",
    "ce_gradient": "CE gradient (no teacher)",
    "magnitude": "magnitude",
    "random": "random",
    "snip": "SNIP",
    "grasp": "GraSP",
    "synflow": "SynFlow",
    "imp": "IMP (iterative, rewinding)",
    "colt": "COLT (our re-implementation)",
    "epsd": "EPSD (our re-implementation)",
}


def label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def method_order(method: str) -> tuple[int, str]:
    """Sort key: the order of `METHOD_LABELS`, unknown methods after them by name."""
    order = list(METHOD_LABELS)
    return (order.index(method) if method in order else len(order), method)


def and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]

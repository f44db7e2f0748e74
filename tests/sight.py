"""Whether an AppTest element is in sight when the page opens: not inside a collapsed expander
nor a tab (a page opens on its first tab; a reader coming back does not look in the others)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block, Expander, Tab


def in_sight(at: AppTest, key: str) -> bool:
    """True when the widget `key` is on the page outside every collapsed expander and every
    tab; AssertionError when it is not on the page."""

    def walk(node, hidden: bool):
        if getattr(node, "key", None) == key and not isinstance(node, Block):
            return hidden
        if isinstance(node, Block):
            closed = isinstance(node, Tab) or (isinstance(node, Expander) and not node.proto.expanded)
            for child in node.children.values():
                found = walk(child, hidden or closed)
                if found is not None:
                    return found
        return None

    found = walk(at._tree, False)
    assert found is not None, f"no element with key {key!r} on the page"
    return not found

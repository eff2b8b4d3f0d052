"""Reading a user's YAML: safe types only, duplicate keys refused, alias bombs refused before they expand."""
from __future__ import annotations

from typing import Any

import yaml

from llmbench.errors import BadInput

# A config, a templates file or a hardware profile has a few thousand nodes at most; a file of a
# few hundred bytes whose nested aliases expand to billions is refused before anything walks it.
MAX_NODES = 200_000


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys and documents whose aliases expand too far."""

    def compose_document(self):  # noqa: D401 - PyYAML hook
        node = super().compose_document()
        _check_expanded_size(node)
        return node

    def construct_mapping(self, node, deep=False):  # noqa: D401 - PyYAML hook
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue  # `<<: *base` merges; explicit keys after it override by design
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                key = key_node.value
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _check_expanded_size(root) -> None:
    # Size of the tree once every alias is expanded, memoised per node (an alias is the same node
    # object), so a bomb is measured in microseconds instead of being built.
    memo: dict[int, int] = {}

    def size(node) -> int:
        got = memo.get(id(node))
        if got is not None:
            return got
        memo[id(node)] = 1  # a recursive alias counts once instead of looping
        if isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(n) for n in node.value)
        elif isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            total = 1
        total = min(total, MAX_NODES + 1)
        memo[id(node)] = total
        return total

    if root is not None and size(root) > MAX_NODES:
        raise yaml.YAMLError(f"the document expands to more than {MAX_NODES:,} values (nested aliases?)")


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML text; BadInput naming `source`, the line and the problem on any fault."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except RecursionError:
        raise BadInput(f"{source}: not valid YAML: nested too deeply") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or (str(exc) if not mark else "invalid YAML")
        raise BadInput(f"{source}: not valid YAML{at}: {problem}") from None

"""YAML read from users, refused early when it could hang or mislead.

``yaml.safe_load`` is safe from code execution, not from size: a dozen lines of nested aliases
(the "billion laughs" file) expand to billions of nodes as soon as anything walks the result,
and a duplicated key silently keeps the last value. depsim's configuration files need neither
anchors nor aliases, so this loader refuses them outright, refuses duplicate keys, and bounds
file size and nesting depth. Every refusal is one :class:`YamlError` line naming the file and
line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from depsim_assets.secrets import secret_kind

MAX_BYTES = 1 << 20  # a registry of thousands of candidates is a few hundred KB
MAX_DEPTH = 64
MAX_NODES = 200_000


class YamlError(ValueError):
    """A YAML file (or text) that depsim will not read; the message is one line."""


class _Refused(Exception):
    """Raised inside the loader; turned into a :class:`YamlError` that names the file."""

    def __init__(self, line: int, reason: str):
        super().__init__(reason)
        self.line, self.reason = line, reason


def _shown_key(key: Any) -> str:
    text = str(key)
    if secret_kind(text) is not None:
        return "(a secret-looking key)"
    return repr(text if len(text) <= 60 else text[:57] + "...")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses anchors, aliases and duplicate keys, and bounds depth and size.

    The checks sit in the composer, before any node is built from an alias, so a file built
    to expand is refused after reading its first anchor, in microseconds.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            raise _Refused(line, "YAML aliases (*name) are not allowed in depsim files")
        if getattr(event, "anchor", None) is not None:
            raise _Refused(line, "YAML anchors (&name) are not allowed in depsim files")
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Refused(line, f"more than {MAX_NODES:,} values")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(line, f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise _Refused(key_node.start_mark.line + 1, "YAML merge keys (<<) are not "
                                   "allowed in depsim files")
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: the base constructor says so
                    break
                line = key_node.start_mark.line + 1
                if first is not None:
                    raise _Refused(
                        line, f"duplicate key {_shown_key(key)} (first at line {first})"
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def loads(text: str, where: str = "<text>") -> Any:
    """Parse ``text`` (from ``where``, for messages) with the strict loader."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise YamlError(f"{where}: larger than {MAX_BYTES // 1024} KB; refused")
    loader = _StrictLoader(text)
    try:
        return loader.get_single_data()
    except _Refused as exc:
        raise YamlError(f"{where}: line {exc.line}: {exc.reason}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        at = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YamlError(f"{where}:{at} not valid YAML ({problem})") from None
    except RecursionError:
        raise YamlError(f"{where}: nested too deeply") from None
    finally:
        loader.dispose()


def load_file(path: Path) -> Any:
    """Read and parse one YAML file; too large, unreadable or refused is one-line YamlError."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise YamlError(f"{path}: larger than {MAX_BYTES // 1024} KB; refused")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise YamlError(f"{path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    return loads(text, where=str(path))

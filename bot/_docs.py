"""The documentation's generated references: the command line from argparse, the configuration from its schema.

`docs/hooks.py` (the MkDocs hook) puts them into `docs/reference/cli.md` and `docs/reference/config.md` on
every build, so a new subcommand, flag or config key appears without anyone writing it down, and a config
key without a description stops the build (`UndescribedKeys`). Markdown only: nothing here imports MkDocs.
"""

from __future__ import annotations

import argparse
import html
import json
import re
from collections.abc import Iterator
from typing import Any


# -- the command line ----------------------------------------------------------------------------------------
def commands(parser: argparse.ArgumentParser) -> Iterator[tuple[list[str], argparse.ArgumentParser, str]]:
    """Every (sub)command, depth first: its words after the program's name, its parser, its one-line help."""

    def walk(words: list[str], node: argparse.ArgumentParser, summary: str) -> Iterator[
            tuple[list[str], argparse.ArgumentParser, str]]:
        yield words, node, summary
        for action in node._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
                seen: set[int] = set()
                for name, child in action.choices.items():
                    if id(child) not in seen:  # an alias names the same parser again
                        seen.add(id(child))
                        yield from walk([*words, name], child, helps.get(name, ""))

    yield from walk([], parser, parser.description or "")


def _plain(text: str) -> str:
    """Prose as it reads in `--help`: `<id>` is not an HTML tag, `GITHUB_*` starts no emphasis."""
    text = html.escape(text, quote=False)
    return re.sub(r"([\\*_\[\]|])", r"\\\1", text)  # a pipe in a code span needs no escape


def _cell(text: str) -> str:
    """Help or description text, on one line, fit for a Markdown table; its `code spans` stay code."""
    parts = re.split(r"(`+[^`]+`+)", " ".join(text.split()))
    return "".join(part if part.startswith("`") else _plain(part) for part in parts)


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if "`" in text else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=100)  # not the terminal's: the page is the same everywhere
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if action.default in (None, False, argparse.SUPPRESS) or action.nargs == 0:
        return ""
    return _code(str(action.default))


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:  # argparse's own substitutions, as `--help` shows them
        text = text % {**vars(action), "prog": prog}
    return _cell(text)


def cli_reference(parser: argparse.ArgumentParser) -> str:
    """Markdown for every command of `parser`: usage, description, and each argument with its help and default."""
    found = list(commands(parser))
    lines = ["| command | what it does |", "|---|---|"]
    for _, node, summary in found[1:]:
        lines.append(f"| [`{node.prog}`](#{'-'.join(node.prog.split())}) | {_cell(summary)} |")
    for words, node, summary in found:
        level = "#" * min(2 + max(len(words) - 1, 0), 6)
        lines += ["", f"{level} `{node.prog}`", ""]
        if node.description or summary:
            lines += [_cell(node.description or summary), ""]
        lines += ["```text", _usage(node), "```", ""]
        formatter = argparse.HelpFormatter(node.prog)
        arguments = [a for a in node._actions if a.help != argparse.SUPPRESS
                     and not isinstance(a, argparse._SubParsersAction | argparse._HelpAction)]
        if arguments:
            lines += ["| argument | description | default |", "|---|---|---|"]
            for action in arguments:
                lines.append(f"| {_code(formatter._format_action_invocation(action))} | {_help(action, node.prog)} "
                             f"| {_default(action)} |")
            lines.append("")
        children = [(w, n, s) for w, n, s in found if len(w) == len(words) + 1 and w[:-1] == words]
        if children and words:  # the root's are all in the table at the top
            lines += ["| command | what it does |", "|---|---|"]
            lines += [f"| [`{n.prog}`](#{'-'.join(n.prog.split())}) | {_cell(s)} |" for _, n, s in children]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# -- the configuration ---------------------------------------------------------------------------------------
class UndescribedKeys(ValueError):
    """Config keys whose schema has no description: the reference would show a blank."""


def _properties(schema: dict[str, Any], node: dict[str, Any], path: str) -> Iterator[
        tuple[str, dict[str, Any], dict[str, Any]]]:
    """(dotted key, its property as written, the schema it stands for) for every key, depth first."""
    definitions = schema.get("$defs", {})
    for name, prop in sorted(node.get("properties", {}).items()):
        target = definitions[prop["$ref"].split("/")[-1]] if "$ref" in prop else prop
        yield f"{path}{name}", prop, target
        yield from _properties(schema, target, f"{path}{name}.")


def undescribed(schema: dict[str, Any]) -> list[str]:
    """The dotted keys that have no description, neither beside their `$ref` nor in what it points to."""
    return [key for key, prop, target in _properties(schema, schema, "")
            if not (prop.get("description") or target.get("description"))]


def _type(target: dict[str, Any]) -> str:
    if "properties" in target:
        return "object"
    kind = target.get("type")
    if kind == "array":
        items = target.get("items", {})
        return f"list of {items.get('type', 'values')}s" if items.get("type") else "list"
    if isinstance(kind, list):
        return " or ".join(kind)
    if "anyOf" in target:
        return " or ".join(_type(option) for option in target["anyOf"])
    return str(kind or "any")


def _value(value: Any) -> str:
    return _code(json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value)


def _allowed(target: dict[str, Any]) -> str:
    rules = []
    if "enum" in target:
        rules.append(", ".join(_value(v) for v in target["enum"]))
    if "const" in target:
        rules.append(_value(target["const"]))
    low = ("≥", target["minimum"]) if "minimum" in target else (">", target.get("exclusiveMinimum"))
    high = ("≤", target["maximum"]) if "maximum" in target else ("<", target.get("exclusiveMaximum"))
    rules += [f"{sign} {bound}" for sign, bound in (low, high) if bound is not None]
    if "pattern" in target:
        rules.append(f"matches {_code(target['pattern'])}")
    if target.get("minLength") == 1:
        rules.append("not empty")
    elif "minLength" in target:
        rules.append(f"at least {target['minLength']} characters")
    return ", ".join(rules)


def config_reference(schema: dict[str, Any]) -> str:
    """Markdown for every key of the configuration: type, default, allowed values, description.

    Raises `UndescribedKeys` when a key has no description.
    """
    if missing := undescribed(schema):
        raise UndescribedKeys("config keys without a description in the schema (give their pydantic Field a "
                              f"description=, then run python -m bot.schemas): {', '.join(missing)}")
    objects: list[tuple[str, dict[str, Any], str]] = [("", schema, "")]
    objects += [(key, target, prop.get("description") or target.get("description", ""))
                for key, prop, target in _properties(schema, schema, "") if "properties" in target]
    lines: list[str] = []
    for key, node, description in objects:
        title = f"`{key}`" if key else "Top-level keys"
        lines += [f"## {title}", ""]
        if description:
            lines += [_cell(description), ""]
        lines += ["| key | type | default | allowed values | description |", "|---|---|---|---|---|"]
        definitions = schema.get("$defs", {})
        for name, prop in sorted(node.get("properties", {}).items()):
            target = definitions[prop["$ref"].split("/")[-1]] if "$ref" in prop else prop
            dotted = f"{key}.{name}" if key else name
            shown = f"[`{dotted}`](#{dotted.replace('.', '')})" if "properties" in target else f"`{dotted}`"
            default = _value(prop["default"]) if "default" in prop else ""
            lines.append(f"| {shown} | {_type(target)} | {default} | {_allowed(target)} "
                         f"| {_cell(prop.get('description') or target.get('description', ''))} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"

"""Where a name is defined and where it is used: Python by its syntax tree, other languages by pattern.

Python files (.py, .pyi) are parsed with `ast`, so strings and comments never count and a use is
told apart from a definition. Other languages get a regex heuristic: good enough to point the
model at the right file, cheap, and with no parser to install. A Python file that does not parse
falls back to the heuristic. Each file is first checked for the name as a plain substring, so
only the few files that mention it are parsed or scanned.

`scopes` says, for grep and references hits, which definition each line sits in.
"""

from __future__ import annotations

import ast
import gc
import re
import warnings
from collections.abc import Iterator
from functools import lru_cache

from bot.search._sdk import TREE_CACHE, Globs, Item, _cap, _current, _lines, _texts

PYTHON_SUFFIXES = (".py", ".pyi")
# Files the definition heuristic reads; elsewhere (docs, data) a "class Foo" is prose, not code.
CODE_SUFFIXES = frozenset({
    ".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx", ".mts", ".cts", ".vue", ".svelte",
    ".go", ".rs", ".java", ".kt", ".kts", ".scala", ".groovy", ".cs", ".swift", ".dart",
    ".c", ".h", ".cc", ".cpp", ".cxx", ".hh", ".hpp", ".hxx", ".m", ".mm",
    ".rb", ".php", ".pl", ".pm", ".lua", ".sh", ".bash", ".zsh", ".ex", ".exs", ".jl", ".r",
})
# First words that make `word name(` a call, not a C-like definition.
_NOT_A_TYPE = ("return|else|new|throw|await|yield|case|delete|typeof|sizeof|if|while|for|switch|do"
               "|not|and|or|in|of|goto|echo|print|puts|raise|assert|go|defer")


def definitions(name: str, *, glob: str = "**/*", exclude: Globs = None, limit: int = 50) -> list[Item]:
    """Where `name` is defined: [{path, line, end_line, kind, name, qualname, signature}].

    Python: functions, classes, methods, and module- or class-level (annotated) assignments, with
    kind function/class/method/variable. `name` is the bare name, or a dotted tail of
    "module.Qualname", so "method", "Class.method" and "package.module.Class.method" all find the
    method. `qualname` is the dotted path inside the file (a nested function is "outer.inner");
    `signature` is the first line of the definition. Other languages: kind "heuristic", matched
    on the last part of a dotted name, with `end_line` equal to `line` (see `_definition_pattern`).
    `exclude` leaves paths out as in `files`.
    """
    bare = _bare(name)
    hits: list[Item] = []
    for path, text in _texts(glob, exclude):
        if bare not in text:
            continue
        is_python = path.endswith(PYTHON_SUFFIXES)
        if is_python and not _may_define(bare).search(text):
            continue  # parsing is the slow part: skip files that only use the name
        tree = _tree(path, text)
        if tree is not None:
            found = _python_definitions(tree, _lines(text), path, name.strip())
        elif is_python or _is_code(path):
            found = _heuristic_definitions(_lines(text), path, bare)
        else:
            continue
        for hit in found:
            hits.append(hit)
            if len(hits) >= limit:
                return hits
    return hits


def references(name: str, *, glob: str = "**/*", exclude: Globs = None, limit: int = 200) -> list[Item]:
    """Uses of `name` (its last part when dotted), definitions excluded: [{path, line, kind, scope, text}].

    Python: loaded names ("name"), attribute access ("attribute", also `self.name = ...`), calls of
    either ("call"), imports ("import") and keyword arguments ("keyword"); one hit per line and
    kind. Other text files: whole-word matches, kind "text", leaving out lines the definition
    heuristic takes for the definition. `scope` is as in grep (see `scopes`); `exclude` as in `files`.
    """
    bare = _bare(name)
    word = re.compile(rf"(?<!\w){re.escape(bare)}(?!\w)")
    hits: list[Item] = []
    for path, text in _texts(glob, exclude):
        if bare not in text or not word.search(text):  # "parse" inside "parser" is no reason to parse
            continue
        tree = _tree(path, text)
        lines = _lines(text)
        found = (_python_references(tree, lines, path, bare) if tree is not None
                 else _text_references(lines, path, bare, word))
        where = scopes(path, text, lines) if found else None
        for hit in found:
            line = hit["line"]
            hit["scope"] = where[line - 1] if where and line <= len(where) else None
            hits.append({key: hit[key] for key in ("path", "line", "kind", "scope", "text")})
            if len(hits) >= limit:
                return hits
    return hits


def _bare(name: str) -> str:
    bare = name.strip().rsplit(".", 1)[-1] if isinstance(name, str) else ""
    if not bare:
        raise ValueError(f"give the name to look for, such as 'parse' or 'Parser.parse' (not {name!r})")
    return bare


def _is_code(path: str) -> bool:
    dot = path.rfind(".")
    return dot > path.rfind("/") and path[dot:].lower() in CODE_SUFFIXES


def _tree(path: str, text: str) -> ast.Module | None:
    """The parsed Python file, or None when it is not Python or does not parse (cached per program)."""
    if not path.endswith(PYTHON_SUFFIXES):
        return None
    trees: dict[str, ast.Module | None] = _current().trees
    if path not in trees:
        trees[path] = _parse(path, text)
        if len(trees) > TREE_CACHE:
            del trees[next(iter(trees))]
    return trees[path]


def _parse(path: str, text: str) -> ast.Module | None:
    # A tree is many small objects the cyclic collector can never free; collections during a
    # parse would walk every tree allocated so far, again and again.
    collecting = gc.isenabled()
    gc.disable()
    with warnings.catch_warnings():  # invalid escapes and the like would print to stderr
        warnings.simplefilter("ignore")
        try:
            return ast.parse(text, filename=path)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return None
        finally:
            if collecting:
                gc.enable()


# --- scopes ---------------------------------------------------------------------------------------

def scopes(path: str, text: str, lines: list[str]) -> list[str | None] | None:
    """Each line's scope (index 0 is line 1), or None for a file that is neither Python nor code.

    Python (from the syntax tree): the qualname of the innermost def or class whose span holds the
    line, its decorators and `def`/`class` line included ("Client.connect", a nested function
    "outer.inner"), else "<module>". Other code files, and Python that does not parse: the name
    on the nearest line at or above that the definition heuristic takes for a function, class or
    type (`_scope_pattern`), None above the first; the heuristic cannot see where a body ends, so
    a line after a function may still get its name. Computed once per file and program.
    """
    state = _current()
    cache = state.scopes
    if path not in cache:
        # grep may hit far more files than the tree cache holds: a tree not cached is not kept
        tree = state.trees.get(path) if path in state.trees else (
            _parse(path, text) if path.endswith(PYTHON_SUFFIXES) else None)
        if tree is not None:
            cache[path] = _python_scopes(tree, len(lines))
        elif path.endswith(PYTHON_SUFFIXES) or _is_code(path):
            cache[path] = _heuristic_scopes(lines)
        else:
            cache[path] = None
    return cache[path]


def _python_scopes(tree: ast.Module, count: int) -> list[str | None]:
    where: list[str | None] = ["<module>"] * count

    def mark(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qualname = prefix + node.name
                start = min([node.lineno, *(decorator.lineno for decorator in node.decorator_list)])
                end = min(node.end_lineno or node.lineno, count)
                where[start - 1:end] = [qualname] * (end - start + 1)  # outer first, inner overwrite
                mark(node.body, qualname + ".")
            else:
                mark(_nested_statements(node), prefix)

    mark(tree.body, "")
    return where


def _heuristic_scopes(lines: list[str]) -> list[str | None]:
    pattern = _scope_pattern()
    where: list[str | None] = []
    current: str | None = None
    for line in lines:
        if match := pattern.search(line):
            current = next(group for group in match.groups() if group)
        where.append(current)
    return where


# --- Python ---------------------------------------------------------------------------------------

@lru_cache(maxsize=64)
def _may_define(bare: str) -> re.Pattern[str]:
    """Text a Python definition of `bare` cannot lack: `def name`, `class name`, `name:`, or the
    name then `=` on one line (`==` being the first `=` after it rules the line out). Only a
    target list split over lines (`(a,\\n name) = ...`) escapes it.
    """
    name = re.escape(bare)
    return re.compile(rf"\b(?:def|class)\s+{name}(?!\w)|(?<![\w.]){name}\s*:"
                      rf"|(?<![\w.]){name}(?!\w)[^\n=]*=(?!=)")


def _python_definitions(tree: ast.Module, lines: list[str], path: str, query: str) -> list[Item]:
    module = path.rsplit(".", 1)[0].replace("/", ".").removesuffix(".__init__")
    hits = []
    for node, kind, bare, qualname in _defined(tree.body, [], "module"):
        if f".{module}.{qualname}".endswith("." + query):
            hits.append({"path": path, "line": node.lineno, "end_line": node.end_lineno or node.lineno,
                         "kind": kind, "name": bare, "qualname": qualname,
                         "signature": _cap(lines[node.lineno - 1].strip())})
    return sorted(hits, key=lambda hit: hit["line"])


def _defined(body: list[ast.stmt], scope: list[str], where: str) -> Iterator[tuple[ast.stmt, str, str, str]]:
    """(node, kind, name, qualname) of each definition in `body`; `where` is module, class or function.

    Statements nested in if/try/with/for/match stay in their scope, so a definition under
    `if sys.platform == ...` is still module-level. Assignments inside functions are locals and
    do not count; functions and classes inside functions do.
    """
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node, "method" if where == "class" else "function", node.name, ".".join([*scope, node.name])
            yield from _defined(node.body, [*scope, node.name], "function")
        elif isinstance(node, ast.ClassDef):
            yield node, "class", node.name, ".".join([*scope, node.name])
            yield from _defined(node.body, [*scope, node.name], "class")
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            if where != "function":
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    for bound in _bound_names(target):
                        yield node, "variable", bound, ".".join([*scope, bound])
        else:
            yield from _defined(_nested_statements(node), scope, where)


def _bound_names(target: ast.expr) -> Iterator[str]:
    """Names an assignment target binds: `a`, and each of `a, (b, *c)`; not `x.a` or `x[a]`."""
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for element in target.elts:
            yield from _bound_names(element)
    elif isinstance(target, ast.Starred):
        yield from _bound_names(target.value)


def _nested_statements(node: ast.stmt) -> list[ast.stmt]:
    nested: list[ast.stmt] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.stmt):
            nested.append(child)
        elif isinstance(child, (ast.ExceptHandler, ast.match_case)):
            nested.extend(child.body)
    return nested


def _python_references(tree: ast.Module, lines: list[str], path: str, bare: str) -> list[Item]:
    called = {id(node.func) for node in ast.walk(tree) if isinstance(node, ast.Call)}
    found: dict[tuple[int, str], int] = {}  # (line, kind) -> column, for one hit per line and kind
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == bare and isinstance(node.ctx, ast.Load):
            found.setdefault((node.lineno, "call" if id(node) in called else "name"), node.col_offset)
        elif isinstance(node, ast.Attribute) and node.attr == bare:
            # `.name` ends the expression, which may start lines earlier in a chained call
            line = node.end_lineno or node.lineno
            found.setdefault((line, "call" if id(node) in called else "attribute"), node.end_col_offset or 0)
        elif isinstance(node, ast.keyword) and node.arg == bare:
            found.setdefault((node.lineno, "keyword"), node.col_offset)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if isinstance(node, ast.ImportFrom) and bare in (node.module or "").split("."):
                found.setdefault((node.lineno, "import"), node.col_offset)
            for alias in node.names:
                if bare in alias.name.split(".") or alias.asname == bare:
                    found.setdefault((alias.lineno, "import"), alias.col_offset)
    return [{"path": path, "line": line, "kind": kind, "text": _cap(lines[line - 1].strip())}
            for (line, kind), _ in sorted(found.items(), key=lambda entry: (entry[0][0], entry[1]))]


# --- other languages --------------------------------------------------------------------------------

@lru_cache(maxsize=64)
def _definition_pattern(bare: str) -> re.Pattern[str]:
    """A line that defines `bare` in a common language; each alternative is one idiom:

    - a definition keyword before the name: `function name`, `def name` / `def self.name` (Ruby),
      `class`, `interface`, `trait`, `module`, `mod`, `type`, `fn`, `func`, `macro_rules!`;
    - `struct|union|enum name` followed by `{ ( < : ;`, `where` or the end of the line (C uses
      `struct name *p` for variables too);
    - `const|let|var|val|static [mut] name` followed by `= : ; ,` or the end of the line;
    - a Go method `func (r *T) name(`, a C macro `#define name`, a C typedef `typedef ... name;`;
    - a function assigned in JS: `name = function`, `name: (a) =>`, `exports.name = async x =>`;
    - a shell function `name() {` (the brace on the same line: a bare `name()` is a call);
    - C-like `type name(` at the start of a line: one or more type words (`static int`,
      `public Map<K, V>`, `char *`), then the name (optionally `Class::name`) and `(`;
    - a JS/TS class method `[async|static|get|set|public|...] name(args) {`.
    """
    return re.compile("|".join(f"(?:{alternative})" for alternative in _definition_alternatives(re.escape(bare))))


@lru_cache(maxsize=1)
def _scope_pattern() -> re.Pattern[str]:
    """The definition heuristic for any name, capturing it: only the idioms that open a body
    (functions, classes, types), not variables, macros or typedefs."""
    name = (rf"(?!(?:{_NOT_A_TYPE}|catch|elif|elsif|unless|until|foreach|with|when|match|loop)(?![\w$]))"
            r"([A-Za-z_$][\w$]*)")
    chosen = [alternative for index, alternative in enumerate(_definition_alternatives(name)) if index not in (2, 4, 5)]
    return re.compile("|".join(f"(?:{alternative})" for alternative in chosen))


def _definition_alternatives(name: str) -> list[str]:
    """The alternatives of `_definition_pattern`, around the regex `name` (indexes 2, 4 and 5 are
    the variable, #define and typedef idioms)."""
    end = r"(?![\w$])"
    return [
        rf"\b(?:function\*?|def|class|interface|trait|module|mod|type|fn|func|macro_rules!)\s+(?:self\.)?{name}{end}",
        rf"\b(?:struct|union|enum)\s+{name}\s*(?:[{{(<:;]|where\b|$)",
        rf"\b(?:const|let|var|val|static)\s+(?:mut\s+)?{name}\s*(?:[=:;,]|$)",
        rf"\bfunc\s*\([^)]*\)\s*{name}\s*[\[(]",
        rf"^\s*#\s*define\s+{name}{end}",
        rf"^\s*typedef\b[^;]*[\s*]{name}\s*;",
        rf"(?<![\w$]){name}\s*[:=]\s*(?:async\s+)?(?:function\b|\([^)]*\)\s*=>|[\w$]+\s*=>)",
        rf"^\s*{name}\s*\(\s*\)\s*\{{",
        # type words and separators share no character, so a long line cannot backtrack for ever
        rf"^\s*(?!(?:{_NOT_A_TYPE})\b)(?:[\w$:<>,\[\].~]+[\s*&]+)+(?:[\w$]+::)*{name}\s*\(",
        (rf"^\s*(?:(?:async|static|get|set|public|private|protected|override|readonly)\s+)*"
         rf"{name}\s*(?:<[^>]*>)?\([^)]*\)[^;]*\{{"),
    ]


def _heuristic_definitions(lines: list[str], path: str, bare: str) -> list[Item]:
    pattern = _definition_pattern(bare)
    return [{"path": path, "line": number, "end_line": number, "kind": "heuristic", "name": bare,
             "qualname": bare, "signature": _cap(line.strip())}
            for number, line in enumerate(lines, 1) if bare in line and pattern.search(line)]


def _text_references(lines: list[str], path: str, bare: str, word: re.Pattern[str]) -> list[Item]:
    definition = _definition_pattern(bare) if path.endswith(PYTHON_SUFFIXES) or _is_code(path) else None
    return [{"path": path, "line": number, "kind": "text", "text": _cap(line.strip())}
            for number, line in enumerate(lines, 1)
            if bare in line and word.search(line) and not (definition and definition.search(line))]

"""Dependency upgrades as a ready campaign: `fixloop campaign upgrade PACKAGE --to VERSION --org ORG`.

The repositories of the organisation that depend on the package are found through GitHub's API, by
their dependency files on the default branch (`pyproject.toml` and `requirements*.txt`,
`package.json`, `go.mod`). The campaign's codemod bumps the version with each ecosystem's own tool
(`go get`, the lockfile's npm, pnpm or yarn, `uv add` or `poetry add`; plain requirement files and
PEP 621 dependencies get their specifier rewritten), each command doing nothing in a repository of
another ecosystem; the agent then fixes what the new version breaks.

The package and the version are checked against each ecosystem's naming rules before they are put
into a command, and quoted there.
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

import yaml

from bot.errors import ConfigError

Ecosystem = Literal["python", "node", "go"]
# PEP 508 names; npm names (scoped too); Go module paths; versions as the three write them.
_PYTHON_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_NODE_NAME = re.compile(r"(?:@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*")
_GO_MODULE = re.compile(r"[a-z0-9.-]+\.[a-z]{2,}(?:/[A-Za-z0-9._~-]+)+")
_VERSION = re.compile(r"v?[0-9]+(?:\.[0-9]+){0,3}(?:[-+.]?[A-Za-z0-9]+(?:\.[A-Za-z0-9]+)*)?")
FILES = ("pyproject.toml", "package.json", "go.mod")  # and requirements*.txt, found in the root's listing


@dataclass(frozen=True)
class Dependent:
    repository: str
    ecosystems: tuple[Ecosystem, ...]


def ecosystems_of(package: str) -> tuple[Ecosystem, ...]:
    """The ecosystems whose names `package` could be (a Go module path is only Go's)."""
    if _GO_MODULE.fullmatch(package):
        return ("go",)
    found: list[Ecosystem] = []
    if _PYTHON_NAME.fullmatch(package):
        found.append("python")
    if _NODE_NAME.fullmatch(package):
        found.append("node")
    return tuple(found)


def check(package: str, version: str) -> None:
    if not ecosystems_of(package):
        raise ConfigError(f"{package!r} is not a package name of Python, npm or Go (a module path)")
    if not _VERSION.fullmatch(version):
        raise ConfigError(f"{version!r} is not a version, such as 3.0.0 or v1.4.2")


def _python_key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(lines: Iterable[str]) -> set[str]:
    names = set()
    for line in lines:
        found = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line.split("#", 1)[0])
        if found and not line.lstrip().startswith("-"):
            names.add(_python_key(found[1]))
    return names


def depends(package: str, files: dict[str, str]) -> tuple[Ecosystem, ...]:
    """The ecosystems in which the repository whose dependency files are `files` (path → text) uses `package`."""
    found: list[Ecosystem] = []
    possible = ecosystems_of(package)
    if "python" in possible:
        names = set()
        for path, text in files.items():
            if re.fullmatch(r"requirements[^/]*\.txt", path):
                names |= _requirement_names(text.splitlines())
        if "pyproject.toml" in files:
            try:
                project = tomllib.loads(files["pyproject.toml"])
            except tomllib.TOMLDecodeError:
                project = {}
            declared = [*project.get("project", {}).get("dependencies", []),
                        *(d for group in project.get("project", {}).get("optional-dependencies", {}).values()
                          for d in group)]
            names |= _requirement_names(str(d) for d in declared)
            names |= {_python_key(n) for n in project.get("tool", {}).get("poetry", {}).get("dependencies", {})}
        if _python_key(package) in names:
            found.append("python")
    if "node" in possible and "package.json" in files:
        try:
            manifest = json.loads(files["package.json"])
        except ValueError:
            manifest = {}
        sections = ("dependencies", "devDependencies", "peerDependencies", "optionalDependencies")
        if isinstance(manifest, dict) and any(package in (manifest.get(s) or {}) for s in sections):
            found.append("node")
    if "go" in possible and re.search(rf"^\s*(?:require\s+)?{re.escape(package)}\s+v", files.get("go.mod", ""),
                                      re.MULTILINE):
        found.append("go")
    return tuple(found)


def bump_commands(package: str, version: str, ecosystems: Iterable[Ecosystem]) -> list[str]:
    """The codemod: one guarded command per ecosystem (it does nothing where its files are absent)."""
    commands = []
    plain = version.removeprefix("v")
    if "go" in ecosystems:
        module = shlex.quote(f"{package}@v{plain}")
        commands.append(f"if [ -f go.mod ]; then go get {module} && go mod tidy; fi")
    if "node" in ecosystems:
        spec = shlex.quote(f"{package}@{plain}")
        commands.append(f"if [ -f package.json ]; then if [ -f pnpm-lock.yaml ]; then pnpm add {spec}; "
                        f"elif [ -f yarn.lock ]; then yarn add {spec}; else npm install --ignore-scripts --no-audit "
                        f"--no-fund {spec}; fi; fi")
    if "python" in ecosystems:
        spec = shlex.quote(f"{package}>={plain}")
        rewrite = _PYTHON_REWRITE.replace("PACKAGE", json.dumps(_python_key(package))).replace(
            "VERSION", json.dumps(plain))
        commands.append(f"if [ -f uv.lock ]; then uv add {spec}; elif [ -f poetry.lock ]; then poetry add "
                        f"{shlex.quote(f'{package}@>={plain}')}; else python3 -c {shlex.quote(rewrite)}; fi")
    return commands


# Plain requirement files and PEP 621 dependency strings: the package's specifier becomes `==VERSION`
# where it was pinned, `>=VERSION` otherwise (its extras and markers are kept).
_PYTHON_REWRITE = r"""
import glob, re
name, version = PACKAGE, VERSION
pattern = re.compile(r'(^|["\'])([ \t]*)(' + r'[-_.]+'.join(map(re.escape, name.split('-'))) +
                     r')(?![A-Za-z0-9._-])([ \t]*\[[^\]\n]*\])?([ \t]*)((?:===?|~=|>=|<=|!=|>|<)[^;#"\'\n]*?)?'
                     r'(?=[ \t]*(?:;|#|["\']|$))', re.I | re.M)
def bump(found):
    pinned = (found.group(6) or '').lstrip().startswith('==')
    return (found.group(1) + found.group(2) + found.group(3) + (found.group(4) or '') + found.group(5) +
            ('==' if pinned else '>=') + version)
for path in glob.glob('requirements*.txt') + glob.glob('pyproject.toml'):
    text = open(path, encoding='utf-8').read()
    new = pattern.sub(bump, text)
    if new != text:
        open(path, 'w', encoding='utf-8').write(new)
"""


def dependents(org: str, package: str, *, repositories: Callable[[str], list[dict[str, object]]],
               read: Callable[[str, str], str | None], listing: Callable[[str], list[str]]) -> list[Dependent]:
    """The organisation's repositories (not archived) that depend on `package`. `repositories(org)` lists
    them (API objects), `read(repository, path)` reads a file on its default branch (None: absent),
    `listing(repository)` names the files of its root."""
    found = []
    for repo in repositories(org):
        if repo.get("archived"):
            continue
        name = str(repo["full_name"])
        root = set(listing(name))
        paths = [p for p in (*FILES, *sorted(p for p in root if re.fullmatch(r"requirements[^/]*\.txt", p)))
                 if p in root]
        files = {path: text for path in paths if (text := read(name, path)) is not None}
        if ecosystems := depends(package, files):
            found.append(Dependent(name, ecosystems))
    return found


def campaign_text(package: str, version: str, org: str, found: list[Dependent], tracking: str) -> str:
    """The campaign file, as YAML a person reviews before `fixloop campaign start`."""
    ecosystems = sorted({e for dependent in found for e in dependent.ecosystems})
    slug = re.sub(r"[^a-z0-9]+", "-", f"upgrade-{package.rsplit('/', 1)[-1]}-{version}".lower()).strip("-")[:63]
    data = {
        "name": slug,
        "instructions": (f"Upgrade {package} to {version}. The codemod has already bumped the version with the "
                         "ecosystem's own tool; make the code, the tests and the build work with the new version. "
                         "Do not pin it back or work around the upgrade."),
        "codemod": bump_commands(package, version, ecosystems),
        "targets": {"repositories": [dependent.repository for dependent in found]},
        "branch": f"fixloop/{slug}",
        "pull_request": {"title": f"Upgrade {package} to {version}",
                         "body": f"Part of the campaign `{{campaign}}`: {package} {version} in `{{target}}`.",
                         "labels": ["dependencies"]},
        "concurrency": 5,
        "tracking": tracking,
    }
    header = (f"# {len(found)} repositories of {org} depend on {package} "
              f"({', '.join(ecosystems) or 'none'}); review, then: fixloop campaign start FILE\n")
    return header + str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))

#!/usr/bin/env python3
"""Build fixloop's starter suite for `fixloop eval`: small real bugs in code nobody here wrote.

Each task takes a module of a real project, re-introduces one bug by a small edit, and keeps the
project's own tests as the hidden grading:

- Python: modules of CPython 3.11's standard library (PSF licence), graded by their tests from
  `Lib/test` (`python3 -m unittest`);
- Go: packages of Go 1.19's standard library (BSD licence) as a module `example.com/<name>`, graded by
  their own `_test.go` files (`go test`; external test packages import the copy instead of the
  standard library's, the one change made to them);
- JavaScript: minimist 1.2.8 from npm (MIT), graded by its own tape tests run by `node --test` through a
  small shim of tape's API (`hidden/node_modules/tape`).

The agent's validation only checks that the code loads; the problem statement says what a user saw.
Grading applies the agent's change to the file with the bug alone (`graded_paths`): a change elsewhere
(a module deleted so that the installed one is tested, a test runner shadowed) cannot pass it.
Every task is checked when it is built: the project's tests pass on the original code and fail with the
bug. Writes the tasks (task.yml, repo.bundle, hidden/) and two scripted configurations (`configs/`), whose
answers fix some tasks and not others, for trying `fixloop eval` without a model.

    python benchmarks/eval-starter/build.py [--only ID,...]    # needs python3.11, go 1.19+, node, npm
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
DATE = "2026-12-01T00:00:00Z"  # of every task's one commit: a rebuild makes the same bundles
PYTHON = Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
GO = Path(subprocess.run(["go", "env", "GOROOT"], capture_output=True, text=True, check=True).stdout.strip()) / "src"


@dataclass
class Spec:
    id: str
    language: str
    problem: str
    file: str  # the file in the task's repository that holds the bug
    old: str  # the original text ...
    new: str  # ... and the bug
    sources: dict[str, Path]  # repository path -> where it comes from
    tests: dict[str, Path]  # hidden path -> where it comes from
    validate: list[str]
    grade: list[str]
    origin: str
    licence: Path
    rewrite: dict[str, str] = field(default_factory=dict)  # in the tests: text -> replacement
    module: str = ""  # Go: the module the package becomes


def python(id: str, module: str, old: str, new: str, problem: str) -> Spec:
    return Spec(id, "python", problem, f"{module}.py", old, new, {f"{module}.py": PYTHON / f"{module}.py"},
                {f"test_{module}.py": PYTHON / "test" / f"test_{module}.py"}, [f"python3 -c \"import {module}\""],
                [f"test -f {module}.py", f"python3 -m unittest -q test_{module}"],
                f"CPython {sys.version.split()[0]} standard library, Lib/{module}.py (PSF licence)",
                PYTHON / "LICENSE.txt")


def go(id: str, package: str, file: str, old: str, new: str, problem: str, tests: list[str]) -> Spec:
    name = package.rsplit("/", 1)[-1]
    sources = {path.name: path for path in sorted((GO / package).glob("*.go")) if not path.name.endswith("_test.go")}
    return Spec(id, "go", problem, file, old, new, sources, {test: GO / package / test for test in tests},
                ["go build ./..."], ["go test ./..."], f"Go 1.19 standard library, src/{package} (BSD licence)",
                GO.parent / "LICENSE" if (GO.parent / "LICENSE").exists() else
                Path("/usr/share/doc/golang-1.19-src/copyright"),
                rewrite={f'"{package}"': f'"example.com/{name}"'}, module=f"example.com/{name}")


def minimist(id: str, old: str, new: str, problem: str, tests: list[str]) -> Spec:
    return Spec(id, "javascript", problem, "index.js", old, new, {"index.js": Path("index.js"),
                "package.json": Path("package.json")}, {f"test/{t}": Path(f"test/{t}") for t in tests},
                ["node -e \"require('./')\""], ["node --test test/"], "minimist 1.2.8 from npm (MIT licence)",
                Path("LICENSE"))


SPECS = [
    python("py-textwrap-dedent", "textwrap", "        elif indent.startswith(margin):\n            pass",
           "        elif indent.startswith(margin):\n            margin = indent",
           "textwrap.dedent() no longer removes the common indentation when a later line is indented more than "
           "the first: dedent('  a\\n    b\\n') should be 'a\\n  b\\n'."),
    python("py-calendar-isleap", "calendar", "year % 400 == 0", "year % 300 == 0",
           "calendar.isleap(2000) returns False, and isleap(1800)... 2000 was a leap year; the century rule is off."),
    python("py-difflib-ratio", "difflib", "return 2.0 * matches / length", "return matches / length",
           "difflib.SequenceMatcher(None, 'abcd', 'bcde').ratio() returns 0.375; the documented value is 0.75."),
    python("py-string-capwords", "string", "return (sep or ' ').join(map(str.capitalize, s.split(sep)))",
           "return (sep or ' ').join(map(str.title, s.split(sep)))",
           "string.capwords(\"don't stop\") returns \"Don'T Stop\"; it should give \"Don't Stop\"."),
    python("py-shlex-quote", "shlex", "_find_unsafe = re.compile(r'[^\\w@%+=:,./-]', re.ASCII).search",
           "_find_unsafe = re.compile(r'[^\\w@%+=:,./ -]', re.ASCII).search",
           "shlex.quote('a b') returns a b unquoted, which a shell splits into two words."),
    python("py-colorsys-hls", "colorsys", "        h = 4.0+gc-rc\n    h = (h/6.0) % 1.0\n    return h, l, s",
           "        h = 4.0+rc-gc\n    h = (h/6.0) % 1.0\n    return h, l, s",
           "colorsys.rgb_to_hls(0.2, 0.4, 0.8) gives the wrong hue for colours whose largest component is blue "
           "(rgb_to_hsv gets them right)."),
    python("py-fnmatch-star", "fnmatch", "            if (not res) or res[-1] is not STAR:\n                add(STAR)",
           "            add(STAR)",
           "fnmatch.translate('a**b') no longer folds consecutive '*' into one, so its regular expression differs "
           "from the documented one (and patterns with many stars get slow)."),
    python("py-graphlib-cycle", "graphlib", "        cycle = self._find_cycle()\n        if cycle:",
           "        cycle = self._find_cycle()\n        if cycle and len(cycle) > 2:",
           "graphlib.TopologicalSorter({'a': {'a'}}).prepare() accepts a node that depends on itself instead of "
           "raising CycleError."),
    go("go-heap-up", "container/heap", "heap.go", "\t\tif i == j || !h.Less(j, i) {",
       "\t\tif i == j || h.Less(j, i) {",
       "heap.Push no longer keeps the heap in order: after pushing 3, 1, 2 onto an empty heap of ints, Pop "
       "returns 3 first instead of 1.", ["heap_test.go"]),
    go("go-base32-nopadding", "encoding/base32", "base32.go", "\t\treturn (n*8 + 4) / 5",
       "\t\treturn (n * 8) / 5",
       "base32.StdEncoding.WithPadding(base32.NoPadding).EncodedLen(1) returns 1; one byte takes two characters.",
       ["base32_test.go"]),
    go("go-list-remove", "container/list", "list.go", "\tif e.list == l {\n\t\t// if e.list == l, l must",
       "\tif e.list != nil {\n\t\t// if e.list == l, l must",
       "list.Remove on an element of another list corrupts that other list: Remove must only act on elements of "
       "its own list.", ["list_test.go"]),
    go("go-ring-len", "container/ring", "ring.go", "\t\tn = 1\n\t\tfor p := r.Next(); p != r; p = p.next {",
       "\t\tn = 0\n\t\tfor p := r.Next(); p != r; p = p.next {",
       "ring.New(5).Len() returns 4: the ring it is called on is not counted.", ["ring_test.go"]),
    go("go-utf16-surrogate", "unicode/utf16", "utf16.go", "\treturn surr1 <= r && r < surr3",
       "\treturn surr1 <= r && r < surr2",
       "utf16.IsSurrogate(0xdc00) is false: trailing (low) surrogates are not recognised.",
       ["utf16_test.go", "export_test.go"]),
    go("go-hex-encodedlen", "encoding/hex", "hex.go", "func EncodedLen(n int) int { return n * 2 }",
       "func EncodedLen(n int) int { return n*2 + 1 }",
       "hex.EncodeToString([]byte{0xab}) returns \"ab\\x00\": a zero byte trails every encoded string.",
       ["hex_test.go"]),
    go("go-html-amp", "html", "escape.go", "\t`&`, \"&amp;\",", "\t`&`, \"&\",",
       "html.EscapeString(\"fish & chips\") leaves the ampersand as it is, so UnescapeString(EscapeString(s)) "
       "is no longer s.", ["escape_test.go", "entity_test.go"]),
    minimist("js-minimist-dash", "\t\tnotFlags = args.slice(args.indexOf('--') + 1);",
             "\t\tnotFlags = args.slice(args.indexOf('--'));",
             "minimist(['-a', '--', 'b']) puts '--' itself into argv._: only what follows it belongs there.",
             ["dash.js"]),
    minimist("js-minimist-number", "\treturn (/^[-+]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)(e[-+]?\\d+)?$/).test(x);",
             "\treturn (/^[-+]?(?:\\d+(?:\\.\\d*)?|\\.\\d+)$/).test(x);",
             "minimist(['-z', '1e7']) keeps '1e7' as a string: numbers in exponent notation are not read as "
             "numbers.", ["num.js"]),
    minimist("js-minimist-bool", "\t		if (flags.bools[key]) {", "\t		if (flags.allBools) {",
             "minimist(['--no-verbose'], {boolean: ['verbose']}) and other boolean flags given as --name=value "
             "are read as strings, not booleans.", ["bool.js"]),
    minimist("js-minimist-stop-early", "\t		if (opts.stopEarly) {", "\t		if (!opts.stopEarly) {",
             "minimist(args, {stopEarly: true}) keeps parsing flags after the first non-option argument.",
             ["stop_early.js"]),
    minimist("js-minimist-unknown", "\t	if (arg && flags.unknownFn && !argDefined(key, arg)) {",
             "\t	if (arg && flags.unknownFn && argDefined(key, arg)) {",
             "minimist's `unknown` callback is called for known options and never for unknown ones.",
             ["unknown.js"]),
]

TAPE_SHIM = '''// A shim of tape's API over node:test and node:assert, so that minimist's own tests run with
// `node --test` (offline, no dependency). Only what those tests use.
'use strict';
const nodeTest = require('node:test');
const assert = require('node:assert');

function wrap() {
  return {
    plan() {}, end() {}, comment() {},
    equal: (a, b, m) => assert.strictEqual(a, b, m),
    strictEqual: (a, b, m) => assert.strictEqual(a, b, m),
    notEqual: (a, b, m) => assert.notStrictEqual(a, b, m),
    deepEqual: (a, b, m) => assert.deepStrictEqual(a, b, m),
    same: (a, b, m) => assert.deepStrictEqual(a, b, m),
    ok: (v, m) => assert.ok(v, m),
    notOk: (v, m) => assert.ok(!v, m),
    throws: (fn, e, m) => assert.throws(fn, e, m),
  };
}

module.exports = function test(name, fn) {
  nodeTest(name, () => fn(wrap()));
};
'''


def build(spec: Spec, out: Path, npm_package: Path | None) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="fixloop-starter-") as scratch:
        work = Path(scratch)
        repo, hidden = work / "repo", work / "hidden"
        repo.mkdir()
        for name, source in spec.sources.items():
            shutil.copy(npm_package / source if npm_package and spec.language == "javascript" else source, repo / name)
        if spec.module:
            (repo / "go.mod").write_text(f"module {spec.module}\n\ngo 1.19\n")
        licence = npm_package / spec.licence if npm_package and spec.language == "javascript" else spec.licence
        shutil.copy(licence, repo / "LICENSE")
        for name, source in spec.tests.items():
            target = hidden / name
            target.parent.mkdir(parents=True, exist_ok=True)
            text = (npm_package / source if npm_package and spec.language == "javascript" else source).read_text()
            for old, new in spec.rewrite.items():
                text = text.replace(old, new)
            target.write_text(text)
        if spec.language == "javascript":
            shim = hidden / "node_modules" / "tape" / "index.js"
            shim.parent.mkdir(parents=True)
            shim.write_text(TAPE_SHIM)
        original = (repo / spec.file).read_text()
        if original.count(spec.old) != 1:
            raise SystemExit(f"{spec.id}: the text to change is not found exactly once in {spec.file}")
        if not grades(repo, hidden, spec, work / "check-original"):
            raise SystemExit(f"{spec.id}: the project's tests fail on the original code")
        (repo / spec.file).write_text(original.replace(spec.old, spec.new))
        if grades(repo, hidden, spec, work / "check-bug"):
            raise SystemExit(f"{spec.id}: the project's tests pass with the bug: it is not a task")
        task = out / spec.id
        shutil.rmtree(task, ignore_errors=True)
        task.mkdir(parents=True)
        for command in (["init", "-q", "-b", "main"], ["add", "-A"],
                        ["-c", "user.name=fixloop", "-c", "user.email=fixloop@example.invalid", "commit", "-qm",
                         f"{spec.origin}, with a bug"], ["bundle", "create", "-q", str(task / "repo.bundle"), "main"]):
            subprocess.run(["git", *command], cwd=repo, check=True, capture_output=True,
                           env={**os.environ, "GIT_AUTHOR_DATE": DATE, "GIT_COMMITTER_DATE": DATE})  # same bytes
        shutil.copytree(hidden, task / "hidden")
        (task / "task.yml").write_text(yaml.safe_dump({
            "repo": "repo.bundle", "commit": "main", "problem": spec.problem, "validate": spec.validate,
            "grade": spec.grade, "graded_paths": [spec.file], "language": spec.language, "origin": spec.origin},
            sort_keys=False, width=100))
    return {"say": "Put the code back as the tests expect.",
            "file": spec.file, "old": spec.new, "new": spec.old}


def grades(repo: Path, hidden: Path, spec: Spec, where: Path) -> bool:
    shutil.copytree(repo, where)
    shutil.copytree(hidden, where, dirs_exist_ok=True)
    result = subprocess.run(["bash", "-c", " && ".join(spec.grade)], cwd=where, capture_output=True, text=True)
    shutil.rmtree(where)
    return result.returncode == 0


def fetch_minimist(work: Path) -> Path:
    subprocess.run(["npm", "pack", "--quiet", "minimist@1.2.8"], cwd=work, check=True, capture_output=True)
    with tarfile.open(work / "minimist-1.2.8.tgz") as archive:
        archive.extractall(work, filter="data")
    return work / "package"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated task ids (default: all)")
    args = parser.parse_args()
    wanted = set(args.only.split(",")) if args.only else {spec.id for spec in SPECS}
    fixes: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="fixloop-npm-") as npm:
        package = fetch_minimist(Path(npm)) if any(s.language == "javascript" and s.id in wanted for s in SPECS) \
            else None
        for spec in SPECS:
            if spec.id in wanted:
                fixes[spec.id] = build(spec, HERE / "tasks", package)
                print(f"{spec.id}: built and checked", flush=True)
    scripts = HERE / "configs"
    scripts.mkdir(exist_ok=True)
    every = sorted(fixes)
    for name, chosen in (("fixes-all", every), ("fixes-half", every[::2])):
        answers = {task: [{"say": fix["say"], "calls": [{"tool": "str_replace_based_edit_tool", "input": {
            "command": "str_replace", "path": fix["file"], "old_str": fix["old"], "new_str": fix["new"]}}]},
            {"say": "Done: the code is as the tests expect."}] for task, fix in fixes.items() if task in chosen}
        (scripts / f"{name}.answers.yml").write_text(yaml.safe_dump(answers, sort_keys=True, width=100))
        (scripts / f"{name}.yml").write_text(f"# Scripted answers in place of a model: {name.replace('-', ' ')} "
                                             f"tasks.\nname: {name}\nscript: {name}.answers.yml\n"
                                             "limits: {iterations: 2}\n")
    print(json.dumps({"tasks": len(fixes)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

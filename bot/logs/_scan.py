"""One streaming pass over a failed log: the candidate lines, in bounded memory.

Blocks of whole lines are searched for failure keywords (`bytes.find` over the block, lowercased
with ASCII-only `bytes.lower`, so byte offsets still map to lines). Only lines with a keyword
are cleaned and classified; an anchor keeps `BEFORE` lines above it and `AFTER` below it
(taken from the block, the end of the previous block, or the next block). Anchors live in a
min-heap capped at `MAX_ANCHORS` (the weakest and earliest go first) and the stored lines are
garbage-collected down to the surviving anchors' windows when they pass `MAX_STORED_LINES`.
The last lines of the log (at least `TAIL`, and as many as `keep_bytes` of excerpt allow: a log
that fits the budget is then held whole, and a short one can fill the budget with its end), the
GitHub Actions step headers with their echoed script, and the last summary line of each rank are
kept too. Nothing else is retained, whatever the size of the log.

With a passing log of the same job, a second pass marks the stored lines that also occur there
(after `normalise`): they are noise, and the lines only the failed log has are preferred.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field

from bot.logs import _patterns as P
from bot.logs._reader import (
    LogSource,
    clean_line,
    clean_text,
    decode,
    iter_blocks,
    open_source,
)

BEFORE = 8
AFTER = 24
MAX_RUN = 150  # a stack trace (consecutive frames) below an anchor is kept up to this far
STEP_SCRIPT = 30  # lines kept after a `##[group]Run` header: the step's echoed script
TAIL = 60
MAX_ANCHORS = 3000
MAX_STORED_LINES = 40000
MAX_STEPS = 256
MAX_SHAPES = 50000
MAX_SHOWN_CHARS = 400  # a longer line is shown as its head and tail
_HEAD, _TAIL_CHARS = 300, 80
KEY_CHARS = 300  # lines are compared with the passing log on this many characters


def shown(line: str) -> str:
    """A cleaned line as the excerpt shows it: very long lines keep their head and tail."""
    if len(line) <= MAX_SHOWN_CHARS:
        return line
    return f"{line[:_HEAD]} [... {len(line) - _HEAD - _TAIL_CHARS} chars ...] {line[-_TAIL_CHARS:]}"


@dataclass
class Scan:
    """What survives the pass: enough to score and choose lines, never the whole log."""

    total_lines: int = 0
    lines: dict[int, str] = field(default_factory=dict)  # line number -> shown text
    anchors: dict[int, P.Kind] = field(default_factory=dict)
    novel: set[int] = field(default_factory=set)  # anchors whose shape appeared first there
    steps: list[int] = field(default_factory=list)  # GitHub Actions step headers, in order
    last_of_rank: dict[int, int] = field(default_factory=dict)  # summary rank -> last line with it
    last_gha_error: int | None = None  # the last `##[error]` line (GitHub Actions ends a failed step with one)
    tail_start: int = 1
    in_pass: set[int] = field(default_factory=set)  # the same line, numbers included, is in the passing log
    in_pass_loose: set[int] = field(default_factory=set)  # the same line up to its numbers
    pass_given: bool = False

    @property
    def final_summary(self) -> int | None:
        """The line that closes the failure: the last `##[error]` of a GitHub Actions log (what
        follows it is the job's cleanup), else the last summary line of any rank."""
        if self.last_gha_error is not None:
            return self.last_gha_error
        return max(self.last_of_rank.values(), default=None)


def excerpt_cost(number: int, text: str) -> int:
    """Bytes a line takes in the excerpt (`N: text` and its newline)."""
    return len(f"{number}: {text}".encode()) + 1


class _Scanner:
    def __init__(self, keep_bytes: int = 0) -> None:
        self.keep_bytes = keep_bytes
        self.tail_bytes = 0
        self.scan = Scan()
        self.heap: list[tuple[float, int]] = []  # (score, line) of anchors, weakest first
        self.shapes: set[str] = set()
        self.want_until = 0  # store every line up to this one (after-context)
        self.next_after = 1  # first line not yet considered for after-context
        self.run_limit = 0  # a stack trace extends the after-context up to this line
        self.previous: dict[int, str] = {}  # the last BEFORE raw lines of the previous block
        self.tail: deque[tuple[int, str, int]] = deque()  # (number, shown text, excerpt_cost)
        self.steps: deque[int] = deque(maxlen=MAX_STEPS)

    # --- the pass ------------------------------------------------------------------------
    def feed(self, block: bytes) -> None:
        base = self.scan.total_lines  # lines before this block
        text = decode(block)
        raw = text.split("\n")
        count = len(raw)
        for index in _keyword_lines(block):
            self._anchor_at(base + index + 1, raw, base)
        self._store_until(base + count, raw, base)
        self.next_after = max(self.next_after, base + count + 1)
        keep = raw[-BEFORE:]
        self.previous = {base + count - len(keep) + i + 1: line for i, line in enumerate(keep)}
        self._extend_tail(raw, base)
        self.scan.total_lines = base + count
        if len(self.scan.lines) > MAX_STORED_LINES:
            self._collect()

    def _extend_tail(self, raw: list[str], base: int) -> None:
        """Add the block's last lines to the tail, then trim it to `TAIL` lines or `keep_bytes`."""
        added: list[tuple[int, str, int]] = []
        size = 0
        index = len(raw) - 1
        while index >= 0 and (len(added) < TAIL or size < self.keep_bytes):
            number = base + index + 1
            text = shown(clean_line(raw[index]))
            added.append((number, text, excerpt_cost(number, text)))
            size += added[-1][2]
            index -= 1
        if index >= 0:  # the block alone fills the tail: what came before goes
            self.tail.clear()
            self.tail_bytes = 0
        self.tail.extend(reversed(added))
        self.tail_bytes += size
        while len(self.tail) > TAIL and self.tail_bytes - self.tail[0][2] >= self.keep_bytes:
            self.tail_bytes -= self.tail.popleft()[2]

    def _raw(self, number: int, raw: list[str], base: int) -> str | None:
        index = number - base - 1
        if 0 <= index < len(raw):
            return raw[index]
        return self.previous.get(number)

    def _keep(self, number: int, raw: list[str], base: int) -> str | None:
        lines = self.scan.lines
        if number in lines:
            return lines[number]
        line = self._raw(number, raw, base)
        if line is None:
            return None
        lines[number] = shown(clean_line(line))
        return lines[number]

    def _store_until(self, limit: int, raw: list[str], base: int) -> None:
        """Store the after-context up to `limit`; a stack trace extends it, frame by frame."""
        number = self.next_after
        while number <= min(self.want_until, limit):
            text = self._keep(number, raw, base)
            if number == self.want_until and text is not None and P.is_frame(text) and number < self.run_limit:
                self.want_until += 1
            number += 1
        self.next_after = max(self.next_after, number)

    def _anchor_at(self, number: int, raw: list[str], base: int) -> None:
        self._store_until(number - 1, raw, base)
        line = shown(clean_line(raw[number - base - 1]))  # bounded length from here on
        if P.STEP_START.match(line):
            self.steps.append(number)
            self.scan.lines[number] = line
            self.want_until = max(self.want_until, number + STEP_SCRIPT)
            self.next_after = max(self.next_after, number + 1)
            return
        kind = P.classify(line)
        if kind.rank:
            self.scan.last_of_rank[kind.rank] = number
            self.scan.lines[number] = line
            if line.startswith("##[error]"):
                self.scan.last_gha_error = number
        if kind.score < 5:
            return
        self.scan.anchors[number] = kind
        score = kind.score
        if len(self.shapes) < MAX_SHAPES:
            line_shape = P.shape(line)
            if line_shape not in self.shapes:
                self.shapes.add(line_shape)
                self.scan.novel.add(number)
        heapq.heappush(self.heap, (score, number))
        if len(self.heap) > MAX_ANCHORS:
            _, dropped = heapq.heappop(self.heap)
            self.scan.anchors.pop(dropped, None)
        lines = self.scan.lines
        for before in range(max(1, number - BEFORE), number):
            if before not in lines:
                self._keep(before, raw, base)
        self.scan.lines[number] = line
        self.want_until = max(self.want_until, number + AFTER)
        self.run_limit = number + MAX_RUN
        self.next_after = max(self.next_after, number + 1)

    def _collect(self) -> None:
        """Drop stored lines that no surviving anchor, step or summary needs; halve anchors if needed."""
        while True:
            needed: set[int] = set(self.scan.last_of_rank.values()) | set(self.steps)
            if self.scan.last_gha_error is not None:
                needed.add(self.scan.last_gha_error)
            lines = self.scan.lines
            for number in self.scan.anchors:
                needed.update(range(number - BEFORE, number + AFTER + 1))
                last = number + AFTER + 1  # and the stack trace that goes on below the window
                while last <= number + MAX_RUN and last in lines and P.is_frame(lines[last]):
                    needed.add(last)
                    last += 1
            for number in self.steps:
                needed.update(range(number, number + STEP_SCRIPT + 1))
            needed.update(range(self.next_after - BEFORE, self.want_until + 1))
            self.scan.lines = {n: t for n, t in self.scan.lines.items() if n in needed}
            if len(self.scan.lines) <= MAX_STORED_LINES // 2 or len(self.heap) < 16:
                return
            for _ in range(len(self.heap) // 2):
                _, dropped = heapq.heappop(self.heap)
                self.scan.anchors.pop(dropped, None)

    def finish(self) -> Scan:
        scan = self.scan
        for number, line, _ in self.tail:
            scan.lines.setdefault(number, line)
        scan.tail_start = self.tail[0][0] if self.tail else 1
        scan.steps = list(self.steps)
        scan.novel &= set(scan.anchors)
        return scan


def _keyword_lines(block: bytes) -> list[int]:
    """Indexes of the lines of a block that contain a failure keyword, in order."""
    low = block.lower()
    hits: set[int] = set()
    for keyword in P.KEYWORDS:
        find = low.find
        position = find(keyword)
        while position >= 0:
            hits.add(position)
            end = find(b"\n", position + len(keyword))
            if end < 0:
                break
            position = find(keyword, end)
    if not hits:
        return []
    indexes: list[int] = []
    line, last = 0, 0
    count = low.count
    for position in sorted(hits):
        line += count(b"\n", last, position)
        last = position
        if not indexes or indexes[-1] != line:
            indexes.append(line)
    return indexes


def scan_log(source: LogSource, keep_bytes: int = 0) -> Scan:
    """The candidate lines of a log, with at least its last `keep_bytes` of excerpt."""
    scanner = _Scanner(keep_bytes)
    with open_source(source) as stream:
        for block in iter_blocks(stream):
            scanner.feed(block)
    return scanner.finish()


def mark_noise(scan: Scan, pass_log: LogSource) -> None:
    """Mark the stored lines that also occur in the passing log (normalised), streaming it.

    Normalising every line of a big passing log would be slow, so a passing line is normalised
    only when its `skeleton` (what normalisation cannot change) is one of a stored line's.
    """
    strict_of: dict[str, list[int]] = {}
    loose_of: dict[str, list[int]] = {}
    skeletons: set[str] = set()
    for number, line in scan.lines.items():
        normalised = P.normalise(line)
        strict_of.setdefault(normalised[:KEY_CHARS], []).append(number)
        loose_of.setdefault(P.loose(normalised)[:KEY_CHARS], []).append(number)
        skeletons.add(P.skeleton(line))
    seen_strict: set[str] = set()
    seen_loose: set[str] = set()
    done: set[str] = set()  # passing lines already looked up (logs repeat themselves)
    with open_source(pass_log) as stream:
        for block in iter_blocks(stream):
            text = clean_text(decode(block))
            for line, line_skeleton in zip(text.split("\n"), P.skeleton(text).split("\n"), strict=True):
                if len(line) > MAX_SHOWN_CHARS:
                    line = shown(line)
                    line_skeleton = P.skeleton(line)
                if line_skeleton not in skeletons or line in done:
                    continue
                if len(done) < MAX_STORED_LINES // 2:
                    done.add(line)
                normalised = P.normalise(line)
                if normalised[:KEY_CHARS] in strict_of:
                    seen_strict.add(normalised[:KEY_CHARS])
                loose_key = P.loose(normalised)[:KEY_CHARS]
                if loose_key in loose_of:
                    seen_loose.add(loose_key)
    scan.pass_given = True
    scan.in_pass = {n for key in seen_strict for n in strict_of[key]}
    scan.in_pass_loose = {n for key in seen_loose for n in loose_of[key]}

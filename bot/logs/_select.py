"""Scoring the candidate lines and choosing the ones that fit the token budget.

Score of a line = max(its own class score, what it inherits as context of a nearby anchor),
times: recency (later lines weigh more), the failing GitHub Actions step (the step that ends in
the final error summary), novelty (the first line of its shape), and, with a passing log,
noise (0.15 for an anchor that also occurs there, 0.3 for a context line) or news (1.2 for a line
the passing log does not have). Blank lines and rulers weigh little.

Choice: the final error summary first (cut to fit if it must), then greedily by score, each line
costing its own text plus the change in gap markers; a repeated shape counts for less each
time (0.7^k, for the order only), so ten copies of one error do not crowd out the one line that
differs. Blank lines and rulers only join kept lines, never stand alone, and a gap whose lines
cost no more than its marker is shown instead. Whatever budget the evidence (lines scoring at
least `MIN_SCORE`) leaves is filled with the best remaining context: weaker lines near anchors,
then the lines nearest the end of the failure. If the whole log fits, it is shown whole.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, bisect_right, insort
from collections import Counter

from bot.logs import _patterns as P
from bot.logs._scan import AFTER, BEFORE, MAX_RUN, STEP_SCRIPT, Scan

MIN_SCORE = 2.5
MANDATORY = float("inf")
_RANK_SCORES = {P.RESULT: 1000.0, P.ANNOTATION: 900.0, P.EXIT: 800.0}
_STEP_HEADER, _STEP_SCRIPT, _OTHER_STEP = 50.0, 30.0, 4.0
_STEP_SCRIPT_END = ("shell:", "env:", "with:", "##[endgroup]")


def marker(gap: int) -> str:
    return f"[... {gap} line{'s' if gap != 1 else ''} omitted ...]"


def numbered(number: int, text: str) -> str:
    return f"{number}: {text}"


def _cost(part: str) -> int:
    return len(part.encode("utf-8")) + 1  # the part and its newline


def _marker_cost(gap: int) -> int:
    return _cost(marker(gap)) if gap > 0 else 0


class Layout:
    """The chosen lines and the exact byte size of the excerpt they make."""

    def __init__(self, total_lines: int) -> None:
        self.total = total_lines
        self.kept: list[int] = []
        self.texts: dict[int, str] = {}
        self.size = _marker_cost(total_lines)  # bytes, counting one newline per part

    def _neighbours(self, number: int) -> tuple[int, int]:
        at = bisect_left(self.kept, number)
        before = self.kept[at - 1] if at > 0 else 0
        after = self.kept[at] if at < len(self.kept) else self.total + 1
        return before, after

    def delta(self, number: int, text: str) -> int:
        before, after = self._neighbours(number)
        return (
            _cost(numbered(number, text))
            + _marker_cost(number - before - 1)
            + _marker_cost(after - number - 1)
            - _marker_cost(after - before - 1)
        )

    def add(self, number: int, text: str) -> None:
        self.size += self.delta(number, text)
        insort(self.kept, number)
        self.texts[number] = text

    def bytes(self) -> int:
        return max(self.size - 1, 0)  # no newline after the last part

    def render(self) -> str:
        parts: list[str] = []
        previous = 0
        for number in self.kept:
            if number - previous > 1:
                parts.append(marker(number - previous - 1))
            parts.append(numbered(number, self.texts[number]))
            previous = number
        if self.total - previous > 0:
            parts.append(marker(self.total - previous))
        return "\n".join(parts)

    def ranges(self) -> list[tuple[int, int]]:
        merged: list[tuple[int, int]] = []
        for number in self.kept:
            if merged and merged[-1][1] == number - 1:
                merged[-1] = (merged[-1][0], number)
            else:
                merged.append((number, number))
        return merged


def _final_line(scan: Scan) -> int | None:
    final = scan.final_summary
    if final is not None:
        return final
    strong = [n for n, kind in scan.anchors.items() if kind.score >= 50]
    if strong:
        return max(strong)
    if scan.anchors:
        return max(scan.anchors)
    for number in range(scan.total_lines, scan.tail_start - 1, -1):
        if scan.lines.get(number, "").strip():
            return number
    return None


def _failed_steps(scan: Scan, final: int | None) -> set[int]:
    """The headers of the GitHub Actions steps that hold an error annotation or exit status."""
    if not scan.steps:
        return set()
    ends = [n for n, kind in scan.anchors.items() if kind.rank in (P.ANNOTATION, P.EXIT)]
    if final is not None:
        ends.append(final)
    headers: set[int] = set()
    for number in ends:
        at = bisect_right(scan.steps, number)
        if at:
            headers.add(scan.steps[at - 1])
    return headers


def _script(scan: Scan, header: int) -> range:
    """The lines of the script a step echoes below its header, up to its settings (`shell:`,
    `env:`, ...); none if they do not come within `STEP_SCRIPT` lines (then it echoed no script)."""
    for number in range(header + 1, header + STEP_SCRIPT + 2):
        text = scan.lines.get(number)
        if text is None:
            break
        if text.lstrip().startswith(_STEP_SCRIPT_END):
            return range(header + 1, number)
    return range(0)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _recency(number: int, total: int) -> float:
    """Later lines weigh more (0.7 at the start of the log, 1.3 at its end)."""
    return 0.7 + 0.6 * min(number / total, 1.0)


def score_lines(scan: Scan) -> dict[int, float]:
    """Every stored line's score (lines not stored score nothing)."""
    lines = scan.lines
    final = _final_line(scan)
    after_end = scan.last_gha_error is not None
    # recency is measured up to the end of the failure (a GitHub Actions job goes on after it)
    total = final if after_end and final else max(scan.total_lines, 1)
    base: dict[int, float] = {}
    for number, kind in scan.anchors.items():
        score = kind.score * (1.25 if number in scan.novel else 1.0)
        if scan.pass_given and number in scan.in_pass:
            score *= 0.15
        base[number] = score * _recency(number, total)
    # The first line of a repeated error is usually the root cause: it ranks first in its group.
    best_of_shape: dict[str, float] = {}
    for number, score in base.items():
        key = P.shape(lines[number])
        best_of_shape[key] = max(best_of_shape.get(key, 0.0), score)
    for number in scan.novel:
        base[number] = max(base[number], best_of_shape[P.shape(lines[number])] * 1.05)

    inherited: dict[int, float] = {}
    continuation: set[int] = set()  # lines of a multi-line message of an anchor that is no noise
    frame = {n: P.is_frame(t) for n, t in lines.items()}
    blank = {n: P.is_separator(t) for n, t in lines.items()}
    command = {n: P.is_command(t) for n, t in lines.items()}
    for number, score in base.items():
        anchor = scan.anchors.get(number)
        # an exit status or an error annotation ends its step: what follows belongs to the next one
        ends_step = anchor is not None and anchor.rank in (P.ANNOTATION, P.EXIT)
        factor = 0.7
        next_line = number + 1
        indent = _indent(lines[number])
        inside = True  # still in the anchor's own message (indented continuation lines)
        while not ends_step and next_line in lines and next_line - number <= MAX_RUN:
            if next_line - number > AFTER and not frame[next_line]:
                break  # past the window only a stack trace goes on
            following = scan.anchors.get(next_line)
            if following is not None and following.name in P.BLOCK_HEADERS:
                break  # the next failure's own block begins
            inside = inside and not blank[next_line] and (frame[next_line] or _indent(lines[next_line]) > indent)
            if inside and (anchor is None or not scan.pass_given or number not in scan.in_pass):
                continuation.add(next_line)
            factor *= 0.6 if blank[next_line] else 0.97 if frame[next_line] or inside else 0.82
            if score * factor > inherited.get(next_line, 0.0):
                inherited[next_line] = score * factor
            if following is not None and following.rank in (P.ANNOTATION, P.EXIT):
                break  # the step ends there
            next_line += 1
        factor = 0.6
        for previous_line in range(number - 1, number - 1 - BEFORE, -1):
            if previous_line not in lines:
                break
            factor *= 0.5 if blank[previous_line] else 0.9 if frame[previous_line] or command[previous_line] else 0.75
            if score * factor > inherited.get(previous_line, 0.0):
                inherited[previous_line] = score * factor

    step = max((s for s in scan.steps if final is not None and s <= final), default=None)
    for header in scan.steps:  # every step's name orients the reader; a failed step's more
        if header in lines:
            base[header] = max(base.get(header, 0.0), _OTHER_STEP * _recency(header, total))
    for failed_step in _failed_steps(scan, final):
        base[failed_step] = max(base.get(failed_step, 0.0), _STEP_HEADER * _recency(failed_step, total))
        for offset, script_line in enumerate(_script(scan, failed_step)):
            score = _STEP_SCRIPT * 0.97**offset * _recency(script_line, total)
            base[script_line] = max(base.get(script_line, 0.0), score)

    if not scan.anchors:  # nothing looks like a failure: show how the log ends
        for number in range(scan.tail_start, scan.total_lines + 1):
            if number in lines:
                base[number] = max(base.get(number, 0.0), 10.0 * number / total)

    scores: dict[int, float] = {}
    for number in lines:
        score = max(base.get(number, 0.0), inherited.get(number, 0.0))
        if not score:
            continue
        if blank[number]:
            score *= 0.3
        if after_end and final is not None and number > final:
            score *= 0.3  # after the failed step of a GitHub Actions job: cleanup and consequences
        if step is not None and final is not None and step <= number <= final:
            score *= 1.3
        if scan.pass_given and number not in scan.anchors:
            score *= 0.3 if number in scan.in_pass_loose and number not in continuation else 1.2
        elif scan.pass_given and number not in scan.in_pass:
            score *= 1.2
        scores[number] = score

    for rank, number in scan.last_of_rank.items():
        if not (after_end and final is not None and number > final):
            scores[number] = max(scores.get(number, 0.0), _RANK_SCORES[rank])
    if final is not None:
        scores[final] = MANDATORY
    return scores


def _cut_to_fit(layout: Layout, number: int, text: str, limit: int) -> str | None:
    """The longest head of `text` (with an ellipsis) whose line fits, or None."""
    if layout.size + layout.delta(number, text) - 1 <= limit:
        return text
    low, high = 0, len(text)
    best: str | None = None
    while low <= high:
        middle = (low + high) // 2
        candidate = text[:middle] + "…"
        if layout.size + layout.delta(number, candidate) - 1 <= limit:
            best, low = candidate, middle + 1
        else:
            high = middle - 1
    return best


def choose(scan: Scan, budget: int) -> Layout:
    """The lines to show within `budget` tokens (4 bytes each, see bot.tokens)."""
    limit = budget * 4
    layout = Layout(scan.total_lines)
    if scan.total_lines and all(n in scan.lines for n in range(1, scan.total_lines + 1)):
        whole = Layout(scan.total_lines)
        for number in range(1, scan.total_lines + 1):
            whole.add(number, scan.lines[number])
        if whole.bytes() <= limit:
            return whole

    scores = score_lines(scan)
    shapes = {n: P.shape(scan.lines[n]) for n in scores}
    used: Counter[str] = Counter()
    final = [n for n, s in scores.items() if s == MANDATORY]
    for number in final:
        text = _cut_to_fit(layout, number, scan.lines[number], limit)
        if text is None:  # not even a few characters of the final summary fit: show nothing else
            return layout if layout.bytes() <= limit else Layout(0)
        layout.add(number, text)
        used[shapes[number]] += 1

    # One queue per shape, and a queue of shapes by the score of their best line waiting, times
    # 0.7 for each line of that shape already chosen.
    waiting: dict[str, list[tuple[float, int]]] = {}
    edges: list[tuple[float, int]] = []  # blank lines and rulers: never alone, only next to kept lines
    for number, score in scores.items():
        if MIN_SCORE <= score != MANDATORY:
            if P.is_separator(scan.lines[number]):
                edges.append((-score, number))
            else:
                waiting.setdefault(shapes[number], []).append((-score, -number))
    queue: list[tuple[float, str]] = []
    for key, lines in waiting.items():
        heapq.heapify(lines)
        queue.append((lines[0][0] * 0.7 ** used[key], key))
    heapq.heapify(queue)
    while queue:
        _, key = heapq.heappop(queue)
        lines = waiting[key]
        _, negative_number = heapq.heappop(lines)
        number = -negative_number
        text = scan.lines[number]
        if layout.size + layout.delta(number, text) - 1 <= limit:
            layout.add(number, text)
            used[key] += 1
        if lines:
            heapq.heappush(queue, (lines[0][0] * 0.7 ** used[key], key))
    kept = set(layout.kept)
    for _, number in sorted(edges):
        text = scan.lines[number]
        if (number - 1 in kept or number + 1 in kept) and layout.size + layout.delta(number, text) - 1 <= limit:
            layout.add(number, text)
            kept.add(number)
    _fill(layout, scan, scores, limit)
    _fill_small_gaps(layout, scan, limit)
    if layout.bytes() > limit:  # only the bare marker of an empty excerpt can be too long
        layout = Layout(0)
    return layout


def _fill(layout: Layout, scan: Scan, scores: dict[int, float], limit: int) -> None:
    """Spend what the budget has left on the best remaining context.

    Weak evidence first (the context of far anchors), then the lines nearest the end of the
    failure (going up from it, then down after it) until one does not fit; with a passing log,
    lines it also has last. Blank lines and rulers only join kept lines.
    """
    kept = set(layout.kept)
    if layout.bytes() >= limit or not kept:
        return
    end = max((n for n, score in scores.items() if score == MANDATORY), default=scan.total_lines)

    def order(number: int) -> tuple[bool, float, int]:
        noise = scan.pass_given and number in scan.in_pass_loose
        distance = end - number if number <= end else number - end + scan.total_lines
        return noise, -scores.get(number, 0.0), distance

    waiting: set[int] = set()  # separators not yet next to a kept line

    def add(number: int) -> bool:
        text = scan.lines[number]
        if layout.size + layout.delta(number, text) - 1 > limit:
            return False
        layout.add(number, text)
        kept.add(number)
        for neighbour in (number - 1, number + 1):
            if neighbour in waiting:
                waiting.discard(neighbour)
                add(neighbour)
        return True

    for number in sorted((n for n in scan.lines if n not in kept), key=order):
        if number in kept:
            continue
        if P.is_separator(scan.lines[number]) and number - 1 not in kept and number + 1 not in kept:
            waiting.add(number)
        elif not add(number) and number not in scores:
            break  # the context nearest the failure stops here: no scattered scraps further away


def _fill_small_gaps(layout: Layout, scan: Scan, limit: int) -> None:
    """Show the lines of a gap instead of its marker when that costs no more."""
    kept = list(layout.kept)
    for before, after in zip([0, *kept], [*kept, scan.total_lines + 1], strict=True):
        gap = range(before + 1, after)
        if not gap or len(gap) > 3 or any(n not in scan.lines for n in gap):
            continue
        cost = sum(_cost(numbered(n, scan.lines[n])) for n in gap)
        if cost <= _marker_cost(len(gap)):
            for number in gap:
                layout.add(number, scan.lines[number])

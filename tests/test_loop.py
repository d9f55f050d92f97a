import os
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

from bot.agent.budget import Budget
from bot.agent.events import Event, IterationEnded, LimitReached, ToolCalled
from bot.agent.loop import AgentLoop
from bot.agent.model import Block, Message, ModelReply, ScriptedModel, Text, tool_use
from bot.agent.pricing import price_for
from bot.agent.tools import BASH, EDITOR, Toolbox
from bot.agent.usage import Usage
from bot.config import Limits
from bot.secrets import scrubbed_environment
from bot.validation import Validator


@dataclass
class Recorder:
    events: list[Event] = field(default_factory=list)

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def build(tmp_path: Path, model, limits: Limits, clock=None) -> tuple[AgentLoop, Recorder]:
    root = tmp_path / "work"
    root.mkdir(exist_ok=True)
    env = scrubbed_environment(os.environ)
    recorder = Recorder()
    price = price_for("anthropic", model.name)
    budget = Budget(limits, price, clock=clock) if clock else Budget(limits, price)
    loop = AgentLoop(
        model=model,
        tools=Toolbox(root, env=env, deny=[], command_timeout=5),
        validation=Validator(["grep -q fixed answer.txt"], cwd=root, env=env, timeout=10, scratch=tmp_path / "v"),
        limits=limits,
        budget=budget,
        emit=recorder,
        system="test",
    )
    return loop, recorder


def write(text: str, n: int) -> list[Block]:
    return [tool_use(EDITOR, {"command": "create", "path": "answer.txt", "file_text": text}, id=f"toolu_{n}")]


DONE = [Text("done")]


def test_validated_after_feedback_names_the_failure(tmp_path):
    model = ScriptedModel([write("wrong", 1), DONE, write("fixed", 2), DONE])
    loop, events = build(tmp_path, model, Limits(iterations=3))
    ending = loop.run("make answer.txt say fixed")
    assert ending.status == "validated"
    first, second = events.of(IterationEnded)
    assert not first.passed and "grep -q fixed answer.txt" in first.feedback
    assert second.passed and second.feedback is None
    # The failure account was the model's next user turn.
    assert "grep -q fixed answer.txt" in loop.messages[4].content[0].text


def test_iteration_limit_ends_not_validated(tmp_path):
    model = ScriptedModel(lambda messages: write("wrong", len(messages)) if len(messages) % 4 == 1 else DONE)
    loop, events = build(tmp_path, model, Limits(iterations=2))
    ending = loop.run("task")
    assert ending.status == "not_validated" and "iteration limit reached: 2" in ending.reason
    assert len(events.of(IterationEnded)) == 2


def test_turn_cap_still_validates_and_says_so(tmp_path):
    model = ScriptedModel(lambda messages: [tool_use(BASH, {"command": "true"}, id=f"toolu_{len(messages)}")])
    loop, events = build(tmp_path, model, Limits(iterations=2, turns=3))
    ending = loop.run("task")
    assert ending.status == "not_validated"
    assert [e.turns for e in events.of(IterationEnded)] == [3, 3]
    assert len(events.of(ToolCalled)) == 6
    said = " ".join(block.text for block in loop.messages[6].content if isinstance(block, Text))
    assert "You used all 3 turns" in said
    # Alternation holds: the feedback joined the pending tool results instead of a second user turn.
    roles = [m.role for m in loop.messages]
    assert all(a != b for a, b in pairwise(roles))


class CostlyModel:
    name = "claude-sonnet-5-5"

    def complete(self, *, system, tools, messages) -> ModelReply:
        return ModelReply([tool_use(BASH, {"command": "true"}, id=f"t{len(messages)}")], "tool_use",
                          Usage(input_tokens=400_000, output_tokens=100_000))


def test_token_limit(tmp_path):
    loop, events = build(tmp_path, CostlyModel(), Limits(tokens=1_000_000, cost_usd=1_000))
    ending = loop.run("task")
    assert ending.status == "not_validated" and ending.reason.startswith("token limit reached: 1,000,000")
    assert events.of(LimitReached)[0].limit == "tokens"


def test_cost_limit(tmp_path):
    loop, _ = build(tmp_path, CostlyModel(), Limits(cost_usd=5.0))
    ending = loop.run("task")
    # Each call costs 0.4 M × $2 + 0.1 M × $10 = $1.80; the third pushes it past $5.
    assert ending.status == "not_validated" and "cost limit reached: $5.40 of $5.00" in ending.reason


def test_wall_time_limit_with_a_fake_clock(tmp_path):
    now = [0.0]

    def clock() -> float:
        now[0] += 50
        return now[0]

    loop, _ = build(tmp_path, CostlyModel(), Limits(wall_time=120, tokens=10**9, cost_usd=10**6), clock=clock)
    ending = loop.run("task")
    assert ending.status == "not_validated" and ending.reason.startswith("time limit reached")


@dataclass
class StopReasons:
    replies: list[tuple[list[Block], str]]
    name: str = "scripted"
    seen: list[list[Message]] = field(default_factory=list)

    def complete(self, *, system, tools, messages) -> ModelReply:
        self.seen.append(list(messages))
        content, stop = self.replies.pop(0)
        return ModelReply(content, stop, Usage())


def test_refusal_ends_honestly(tmp_path):
    loop, _ = build(tmp_path, StopReasons([([Text("no")], "refusal")]), Limits())
    ending = loop.run("task")
    assert ending.status == "not_validated" and "declined" in ending.reason


def test_cut_off_reply_is_asked_to_continue(tmp_path):
    model = StopReasons([([Text("I will wri")], "max_tokens"), (write("fixed", 1), "tool_use"), (DONE, "end_turn")])
    loop, _ = build(tmp_path, model, Limits())
    assert loop.run("task").status == "validated"
    assert "cut off" in model.seen[1][-1].content[-1].text

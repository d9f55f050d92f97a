"""Running campaigns. In the runner: one target of a campaign, as the App dispatches it (kind
`campaign`), goes codemod → agent → the campaign's validation → a draft pull request on the
campaign's branch. In the App: a campaign started through the API fans its targets out as workflow
runs, never more than `concurrency` at once, follows them as their runs end, keeps a tracking
issue, and is steered (pause, resume after a pilot, cancel, retry)."""

from __future__ import annotations

import json

import pytest

from bot.task import CampaignWork, Origin, Task, to_inputs
from tests.fakes.messages_api import MessagesAPIServer, Reply, edit, text
from tests.fixtures import load_payload
from tests.test_action_e2e import REPO, Runner, checks

MONOREPO = {
    ".github/fixloop.yml": "validate: [python -m pytest -q]\n",
    "packages/api/lib.py": "def old_api(x):\n    return x * 2\n",
    "packages/api/app.py": "from lib import old_api\n\n\ndef double(x):\n    return old_api(x)\n",
    "packages/api/test_app.py": "from app import double\n\n\ndef test_double():\n    assert double(2) == 4\n",
    "packages/web/lib.py": "def old_api(x):\n    return x\n",
}


def campaign_dispatch(work: CampaignWork, instructions: str) -> dict:
    """The workflow_dispatch event of one campaign target, with the inputs the App sends."""
    task = Task(kind="campaign", title=work.title, instructions=instructions, source="the campaign rename-api")
    payload = load_payload("workflow_dispatch")
    payload["inputs"] = to_inputs(task, Origin(repository=REPO, target=work, requester="maintainer",
                                               correlation_id="cmp_1-t1-a1"))
    payload["sender"]["login"] = "maintainer"
    return payload


def test_a_campaign_target_runs_its_codemod_then_the_agent_and_opens_the_campaigns_draft(tmp_path, fake_github,
                                                                                          monkeypatch):
    with MessagesAPIServer() as api:
        runner = Runner(tmp_path, fake_github, api, monkeypatch, files=MONOREPO)
        work = CampaignWork(id="cmp_1", campaign="rename-api", path="packages/api",
                            branch="fixloop/campaign/rename-api/packages-api", title="rename-api: packages/api",
                            body="Part of the campaign `rename-api`.", labels=["campaign"],
                            codemod=["sed -i 's/old_api/new_api/g' app.py"], validation=["python -m pytest -q"])
        # The codemod renamed the call; the library still has the old name: the agent fixes what it broke.
        api.push(Reply([edit("str_replace", "packages/api/lib.py", old_str="def old_api(x):",
                             new_str="def new_api(x):")]), Reply([text("lib.py now offers new_api.")]))
        assert runner.run("workflow_dispatch", campaign_dispatch(work, "Rename old_api to new_api.")) == 0
        assert api.violations == []
    prompt = api.requests[0].body["messages"][0]["content"][0]["text"]
    assert "Rename old_api to new_api." in prompt
    assert "ImportError" in prompt or "cannot import name 'new_api'" in prompt, "the codemod's breakage reached it"
    assert "cd packages/api && python -m pytest -q" in prompt, "the campaign's validation, in the package"
    (pull,) = fake_github.pulls(REPO)
    assert pull.pull.head_ref == work.branch and pull.pull.draft and pull.title == work.title
    assert pull.body.startswith("Part of the campaign `rename-api`.") and "correlation=cmp_1-t1-a1" in pull.body
    assert "campaign" in pull.labels
    assert "new_api(x)" in runner.origin.show(work.branch, "packages/api/app.py"), "the codemod's change is kept"
    assert "def new_api" in runner.origin.show(work.branch, "packages/api/lib.py")
    assert runner.origin.show(work.branch, "packages/web/lib.py") == MONOREPO["packages/web/lib.py"]


def test_a_codemod_that_fails_ends_the_target_as_an_error_before_any_model_call(tmp_path, fake_github, monkeypatch):
    with MessagesAPIServer() as api:
        runner = Runner(tmp_path, fake_github, api, monkeypatch, files=MONOREPO)
        work = CampaignWork(id="cmp_1", campaign="rename-api", path="packages/api", branch="fixloop/campaign/x",
                            title="rename-api: packages/api", codemod=["exit 3"])
        assert runner.run("workflow_dispatch", campaign_dispatch(work, "Rename.")) == 3
        assert api.requests == [] and fake_github.pulls(REPO) == []
    assert runner.outputs_map()["status"] == "error"
    summary = checks(fake_github)["fixloop"].output_summary or ""
    assert "codemod command `cd packages/api && exit 3` exited with 3" in summary


@pytest.mark.parametrize("branch", ["main", "../evil"])
def test_a_campaign_branch_that_is_the_default_or_unsafe_is_refused(tmp_path, fake_github, monkeypatch, branch):
    with MessagesAPIServer() as api:
        runner = Runner(tmp_path, fake_github, api, monkeypatch, files=MONOREPO)
        work = CampaignWork(id="cmp_1", campaign="c", branch="x", title="c: octo/calc")
        payload = campaign_dispatch(work, "Change.")
        unsafe = json.dumps({"branch": branch})[1:-1]
        payload["inputs"]["head"] = payload["inputs"]["head"].replace('"branch":"x"', unsafe)
        assert runner.run("workflow_dispatch", payload) == 0
        assert api.requests == [] and fake_github.pulls(REPO) == []

"""A loopback fake of GitHub's REST API, validated against GitHub's OpenAPI description.

    from tests.fakes.github import FakeGitHub

    with FakeGitHub(tokens=["t0k"]) as gh:
        gh.add_repo("octo/demo", files={"fixloop.yml": "model: x\n"})
        client = github.Github(auth=github.Auth.Token("t0k"), base_url=gh.url)
        ...
        assert gh.violations == []

See ``server.FakeGitHub`` (constructor, fault injection), ``state.GitHubState`` (seeding and
introspection), ``routes`` (the operations served) and ``fixture`` (pytest fixtures).
"""

from .model import (
    CheckRun,
    Dispatch,
    Issue,
    IssueComment,
    IssuedToken,
    Job,
    Reaction,
    RecordedRequest,
    WorkflowRun,
)
from .server import FakeGitHub
from .spec import load_spec

__all__ = [
    "CheckRun", "Dispatch", "FakeGitHub", "Issue", "IssueComment", "IssuedToken", "Job",
    "Reaction", "RecordedRequest", "WorkflowRun", "load_spec",
]

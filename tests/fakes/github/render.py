"""Render state records as the JSON objects GitHub's schemas describe.

Every object carries all *required* properties of its schema (with ``null`` where the schema
allows it); URLs point back at the fake so PyGithub can follow them.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from .model import (
    ACCESS_RANK,
    LEGACY_PERMISSION,
    App,
    Artifact,
    CheckRun,
    Commit,
    Installation,
    Issue,
    IssueComment,
    Job,
    Label,
    Reaction,
    Repo,
    User,
    Workflow,
    WorkflowRun,
    blob_sha,
    iso,
    node_id,
)

JsonObj = dict[str, Any]


@dataclass(frozen=True)
class Urls:
    api: str  # e.g. http://127.0.0.1:1234 or http://127.0.0.1:1234/api/v3
    web: str  # html_url root
    git: str  # clone_url root

    def repo(self, repo: Repo) -> str:
        return f"{self.api}/repos/{repo.full_name}"

    def repo_html(self, repo: Repo) -> str:
        return f"{self.web}/{repo.full_name}"


def user(urls: Urls, u: User) -> JsonObj:
    api = f"{urls.api}/users/{u.login}"
    return {
        "login": u.login, "id": u.id, "node_id": node_id("U", u.id),
        "avatar_url": f"{urls.web}/avatars/u/{u.id}", "gravatar_id": "",
        "url": api, "html_url": f"{urls.web}/{u.login}",
        "followers_url": f"{api}/followers", "following_url": f"{api}/following{{/other_user}}",
        "gists_url": f"{api}/gists{{/gist_id}}", "starred_url": f"{api}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{api}/subscriptions", "organizations_url": f"{api}/orgs",
        "repos_url": f"{api}/repos", "events_url": f"{api}/events{{/privacy}}",
        "received_events_url": f"{api}/received_events", "type": u.type,
        "site_admin": u.site_admin, "user_view_type": "public",
    }


def repository(urls: Urls, repo: Repo, *, full: bool = False,
               permissions: dict[str, bool] | None = None) -> JsonObj:
    """``repository`` / ``minimal-repository``; ``full=True`` adds ``full-repository`` fields."""
    api = urls.repo(repo)
    created = iso(repo.created_at)
    head = repo.branches.get(repo.default_branch)
    pushed = iso(repo.commits[head].date) if head else created
    open_issues = sum(1 for i in repo.issues.values() if i.state == "open")
    data: JsonObj = {
        "id": repo.id, "node_id": node_id("R", repo.id), "name": repo.name,
        "full_name": repo.full_name, "owner": user(urls, repo.owner), "private": repo.private,
        "html_url": urls.repo_html(repo), "description": repo.description, "fork": False,
        "url": api,
        "archive_url": f"{api}/{{archive_format}}{{/ref}}",
        "assignees_url": f"{api}/assignees{{/user}}",
        "blobs_url": f"{api}/git/blobs{{/sha}}", "branches_url": f"{api}/branches{{/branch}}",
        "collaborators_url": f"{api}/collaborators{{/collaborator}}",
        "comments_url": f"{api}/comments{{/number}}", "commits_url": f"{api}/commits{{/sha}}",
        "compare_url": f"{api}/compare/{{base}}...{{head}}",
        "contents_url": f"{api}/contents/{{+path}}", "contributors_url": f"{api}/contributors",
        "deployments_url": f"{api}/deployments", "downloads_url": f"{api}/downloads",
        "events_url": f"{api}/events", "forks_url": f"{api}/forks",
        "git_commits_url": f"{api}/git/commits{{/sha}}", "git_refs_url": f"{api}/git/refs{{/sha}}",
        "git_tags_url": f"{api}/git/tags{{/sha}}", "hooks_url": f"{api}/hooks",
        "issue_comment_url": f"{api}/issues/comments{{/number}}",
        "issue_events_url": f"{api}/issues/events{{/number}}",
        "issues_url": f"{api}/issues{{/number}}", "keys_url": f"{api}/keys{{/key_id}}",
        "labels_url": f"{api}/labels{{/name}}", "languages_url": f"{api}/languages",
        "merges_url": f"{api}/merges", "milestones_url": f"{api}/milestones{{/number}}",
        "notifications_url": f"{api}/notifications{{?since,all,participating}}",
        "pulls_url": f"{api}/pulls{{/number}}", "releases_url": f"{api}/releases{{/id}}",
        "stargazers_url": f"{api}/stargazers", "statuses_url": f"{api}/statuses/{{sha}}",
        "subscribers_url": f"{api}/subscribers", "subscription_url": f"{api}/subscription",
        "tags_url": f"{api}/tags", "teams_url": f"{api}/teams",
        "trees_url": f"{api}/git/trees{{/sha}}",
        "clone_url": f"{urls.git}/{repo.full_name}.git",
        "git_url": f"{urls.git}/{repo.full_name}.git".replace("http://", "git://", 1),
        "ssh_url": f"git@fake-github:{repo.full_name}.git",
        "svn_url": urls.repo_html(repo), "mirror_url": None, "homepage": None,
        "language": repo.language, "forks": 0, "forks_count": 0, "stargazers_count": 0,
        "watchers": 0, "watchers_count": 0, "size": 0, "default_branch": repo.default_branch,
        "open_issues": open_issues, "open_issues_count": open_issues, "is_template": False,
        "topics": list(repo.topics), "has_issues": True, "has_projects": False, "has_wiki": False,
        "has_pages": False, "has_downloads": True, "has_discussions": False, "archived": repo.archived,
        "disabled": False, "visibility": "private" if repo.private else "public",
        "pushed_at": pushed, "created_at": created, "updated_at": pushed, "license": None,
        "allow_forking": True, "web_commit_signoff_required": False,
    }
    if permissions is not None:
        data["permissions"] = permissions
    if full:
        data.update({
            "network_count": 0, "subscribers_count": 0, "allow_merge_commit": True,
            "allow_squash_merge": True, "allow_rebase_merge": True,
            "allow_auto_merge": False, "delete_branch_on_merge": False,
        })
    return data


def repo_permissions(role: str) -> dict[str, bool]:
    """The ``permissions`` flags GitHub adds to a repository for the authenticated caller."""
    order = ["read", "triage", "write", "maintain", "admin"]
    rank = order.index(role) if role in order else -1
    return {"admin": rank >= 4, "maintain": rank >= 3, "push": rank >= 2, "triage": rank >= 1,
            "pull": rank >= 0}


def collaborator_permission(urls: Urls, u: User, role: str) -> JsonObj:
    collaborator = user(urls, u) | {"role_name": role,
                                    "permissions": repo_permissions(role)}
    return {"permission": LEGACY_PERMISSION[role], "role_name": role, "user": collaborator}


def file_content(urls: Urls, repo: Repo, path: str, text: str, ref: str) -> JsonObj:
    links = _content_links(urls, repo, path, blob_sha(text), ref)
    raw = text.encode("utf-8")
    encoded = base64.encodebytes(raw).decode("ascii")  # GitHub wraps at 60/76 columns, too
    return {
        "type": "file", "encoding": "base64", "size": len(raw), "name": path.rsplit("/", 1)[-1],
        "path": path, "content": encoded, "sha": blob_sha(text), **links,
    }


def directory_entry(urls: Urls, repo: Repo, path: str, text: str | None, ref: str) -> JsonObj:
    sha = blob_sha(text) if text is not None else blob_sha("tree:" + path)
    return {
        "type": "file" if text is not None else "dir",
        "size": len(text.encode("utf-8")) if text is not None else 0,
        "name": path.rsplit("/", 1)[-1], "path": path, "sha": sha,
        **_content_links(urls, repo, path, sha, ref, is_dir=text is None),
    }


def _content_links(urls: Urls, repo: Repo, path: str, sha: str, ref: str,
                   is_dir: bool = False) -> JsonObj:
    url = f"{urls.repo(repo)}/contents/{quote(path)}?ref={quote(ref, safe='')}"
    kind = "tree" if is_dir else "blob"
    html = f"{urls.repo_html(repo)}/{kind}/{quote(ref)}/{quote(path)}"
    git = f"{urls.repo(repo)}/git/{kind}s/{sha}"
    download = None if is_dir else f"{urls.web}/raw/{repo.full_name}/{quote(ref)}/{quote(path)}"
    return {"url": url, "html_url": html, "git_url": git, "download_url": download,
            "_links": {"self": url, "git": git, "html": html}}


def git_user(name: str, email: str, date: datetime) -> JsonObj:
    return {"name": name, "email": email, "date": iso(date)}


def commit(urls: Urls, repo: Repo, c: Commit, author: User | None) -> JsonObj:
    api = urls.repo(repo)
    parent = repo.commits.get(c.parents[0]) if c.parents else None
    files: list[JsonObj] = []
    adds = dels = 0
    for path in sorted(set(c.files) | set(parent.files if parent else {})):
        old = parent.files.get(path) if parent else None
        new = c.files.get(path)
        if old == new:
            continue
        status = "added" if old is None else "removed" if new is None else "modified"
        additions = 0 if new is None else len(new.splitlines())
        deletions = 0 if old is None else len(old.splitlines())
        adds, dels = adds + additions, dels + deletions
        files.append({
            "sha": blob_sha(new) if new is not None else None, "filename": path,
            "status": status, "additions": additions, "deletions": deletions,
            "changes": additions + deletions,
            "blob_url": f"{urls.repo_html(repo)}/blob/{c.sha}/{quote(path)}",
            "raw_url": f"{urls.web}/raw/{repo.full_name}/{c.sha}/{quote(path)}",
            "contents_url": f"{api}/contents/{quote(path)}?ref={c.sha}",
        })
    author_json = user(urls, author) if author else None
    return {
        "sha": c.sha, "node_id": node_id("C", int(c.sha[:7], 16)),
        "url": f"{api}/commits/{c.sha}", "html_url": f"{urls.repo_html(repo)}/commit/{c.sha}",
        "comments_url": f"{api}/commits/{c.sha}/comments",
        "commit": {
            "url": f"{api}/git/commits/{c.sha}",
            "author": git_user(c.author_name, c.author_email, c.date),
            "committer": git_user(c.author_name, c.author_email, c.date),
            "message": c.message, "comment_count": 0,
            "tree": {"sha": c.tree_sha, "url": f"{api}/git/trees/{c.tree_sha}"},
            "verification": {"verified": False, "reason": "unsigned", "signature": None,
                             "payload": None, "verified_at": None},
        },
        "author": author_json, "committer": author_json,
        "parents": [{"sha": p, "url": f"{api}/commits/{p}",
                     "html_url": f"{urls.repo_html(repo)}/commit/{p}"} for p in c.parents],
        "stats": {"additions": adds, "deletions": dels, "total": adds + dels},
        "files": files,
    }


def branch(urls: Urls, repo: Repo, name: str, c: Commit, author: User | None) -> JsonObj:
    api = urls.repo(repo)
    return {
        "name": name, "commit": commit(urls, repo, c, author),
        "_links": {"self": f"{api}/branches/{quote(name)}",
                   "html": f"{urls.repo_html(repo)}/tree/{quote(name)}"},
        "protected": False,
        "protection": {"enabled": False, "required_status_checks": {
            "enforcement_level": "off", "contexts": [], "checks": []}},
        "protection_url": f"{api}/branches/{quote(name)}/protection",
    }


def label(urls: Urls, repo: Repo, lab: Label, *, description_required: bool = False) -> JsonObj:
    # pull-request-simple declares labels[].description as a non-nullable string.
    description = lab.description
    if description is None and description_required:
        description = ""
    return {"id": lab.id, "node_id": node_id("LA", lab.id),
            "url": f"{urls.repo(repo)}/labels/{quote(lab.name)}", "name": lab.name,
            "description": description, "color": lab.color, "default": lab.default}


def reaction(urls: Urls, r: Reaction) -> JsonObj:
    return {"id": r.id, "node_id": node_id("REA", r.id), "user": user(urls, r.user),
            "content": r.content, "created_at": iso(r.created_at)}


def reaction_rollup(url: str, reactions: list[Reaction]) -> JsonObj:
    counts = dict.fromkeys(("+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket"), 0)
    for r in reactions:
        counts[r.content] += 1
    return {"url": url, "total_count": len(reactions), **counts}


def issue_comment(urls: Urls, repo: Repo, c: IssueComment, author_association: str) -> JsonObj:
    api = f"{urls.repo(repo)}/issues/comments/{c.id}"
    return {
        "id": c.id, "node_id": node_id("IC", c.id), "url": api,
        "html_url": f"{urls.repo_html(repo)}/issues/{c.issue_number}#issuecomment-{c.id}",
        "issue_url": f"{urls.repo(repo)}/issues/{c.issue_number}", "body": c.body,
        "user": user(urls, c.user), "created_at": iso(c.created_at),
        "updated_at": iso(c.updated_at), "author_association": author_association,
        "reactions": reaction_rollup(f"{api}/reactions", c.reactions),
    }


def issue(urls: Urls, repo: Repo, i: Issue, n_comments: int, author_association: str) -> JsonObj:
    api = f"{urls.repo(repo)}/issues/{i.number}"
    kind = "pull" if i.pull else "issues"
    data: JsonObj = {
        "id": i.id, "node_id": node_id("I", i.id), "url": api,
        "repository_url": urls.repo(repo), "labels_url": f"{api}/labels{{/name}}",
        "comments_url": f"{api}/comments", "events_url": f"{api}/events",
        "html_url": f"{urls.repo_html(repo)}/{kind}/{i.number}", "number": i.number,
        "state": i.state, "state_reason": None, "title": i.title, "body": i.body,
        "user": user(urls, i.user),
        "labels": [label(urls, repo, repo.labels[name.lower()]) for name in i.labels],
        "assignee": user(urls, i.assignees[0]) if i.assignees else None,
        "assignees": [user(urls, a) for a in i.assignees], "milestone": None,
        "locked": i.locked, "active_lock_reason": None, "comments": n_comments,
        "closed_at": iso(i.closed_at), "created_at": iso(i.created_at),
        "updated_at": iso(i.updated_at), "author_association": author_association,
        "reactions": reaction_rollup(f"{api}/reactions", []),
    }
    if i.pull:
        pulls = f"{urls.repo(repo)}/pulls/{i.number}"
        data["pull_request"] = {
            "url": pulls, "html_url": f"{urls.repo_html(repo)}/pull/{i.number}",
            "diff_url": f"{urls.repo_html(repo)}/pull/{i.number}.diff",
            "patch_url": f"{urls.repo_html(repo)}/pull/{i.number}.patch",
            "merged_at": None,
        }
        data["draft"] = i.pull.draft
    return data


def pull_request(urls: Urls, repo: Repo, i: Issue, head_sha: str, base_sha: str,
                 author_association: str, n_comments: int, *, full: bool) -> JsonObj:
    """``pull-request`` (``full=True``) or ``pull-request-simple``."""
    assert i.pull is not None
    p = i.pull
    api = f"{urls.repo(repo)}/pulls/{i.number}"
    issue_api = f"{urls.repo(repo)}/issues/{i.number}"
    html = f"{urls.repo_html(repo)}/pull/{i.number}"
    repo_json = repository(urls, repo)

    def side(ref: str, sha: str, owner: str) -> JsonObj:
        return {"label": f"{owner}:{ref}", "ref": ref, "sha": sha, "user": user(urls, repo.owner),
                "repo": repo_json}

    data: JsonObj = {
        "url": api, "id": p.id, "node_id": node_id("PR", p.id), "html_url": html,
        "diff_url": f"{html}.diff", "patch_url": f"{html}.patch", "issue_url": issue_api,
        "commits_url": f"{api}/commits", "review_comments_url": f"{api}/comments",
        "review_comment_url": f"{urls.repo(repo)}/pulls/comments{{/number}}",
        "comments_url": f"{issue_api}/comments",
        "statuses_url": f"{urls.repo(repo)}/statuses/{head_sha}",
        "number": i.number, "state": i.state, "locked": i.locked, "title": i.title,
        "user": user(urls, i.user), "body": i.body,
        "labels": [label(urls, repo, repo.labels[name.lower()], description_required=not full)
                   for name in i.labels],
        "milestone": None, "active_lock_reason": None, "created_at": iso(i.created_at),
        "updated_at": iso(i.updated_at), "closed_at": iso(i.closed_at), "merged_at": None,
        "merge_commit_sha": None,
        "assignee": user(urls, i.assignees[0]) if i.assignees else None,
        "assignees": [user(urls, a) for a in i.assignees],
        "requested_reviewers": [user(urls, r) for r in p.requested_reviewers],
        "requested_teams": [],
        "head": side(p.head_ref, head_sha, p.head_owner),
        "base": side(p.base_ref, base_sha, repo.owner.login),
        "_links": {
            "self": {"href": api}, "html": {"href": html}, "issue": {"href": issue_api},
            "comments": {"href": f"{issue_api}/comments"},
            "review_comments": {"href": f"{api}/comments"},
            "review_comment": {"href": f"{urls.repo(repo)}/pulls/comments{{/number}}"},
            "commits": {"href": f"{api}/commits"},
            "statuses": {"href": f"{urls.repo(repo)}/statuses/{head_sha}"},
        },
        "author_association": author_association, "auto_merge": None, "draft": p.draft,
    }
    if full:
        data.update({
            "merged": p.merged, "mergeable": None if i.state == "open" else False,
            "rebaseable": None, "mergeable_state": "unknown", "merged_by": None,
            "comments": n_comments, "review_comments": len(
                [c for c in repo.review_comments.values() if c.pull_number == i.number]),
            "maintainer_can_modify": p.maintainer_can_modify, "commits": 1, "additions": 0,
            "deletions": 0, "changed_files": 0,
        })
    return data


def pull_request_minimal(urls: Urls, repo: Repo, i: Issue, head_sha: str,
                         base_sha: str) -> JsonObj:
    assert i.pull is not None
    repo_ref = {"id": repo.id, "url": urls.repo(repo), "name": repo.name}
    return {"id": i.pull.id, "number": i.number, "url": f"{urls.repo(repo)}/pulls/{i.number}",
            "head": {"ref": i.pull.head_ref, "sha": head_sha, "repo": repo_ref},
            "base": {"ref": i.pull.base_ref, "sha": base_sha, "repo": repo_ref}}


def app(urls: Urls, a: App) -> JsonObj:
    return {
        "id": a.id, "slug": a.slug, "node_id": node_id("A", a.id), "client_id": a.client_id,
        "owner": user(urls, a.owner), "name": a.name, "description": None,
        "external_url": f"{urls.web}/apps/{a.slug}", "html_url": f"{urls.web}/apps/{a.slug}",
        "created_at": iso(a.created_at), "updated_at": iso(a.created_at),
        "permissions": dict(a.permissions), "events": list(a.events),
    }


def installation(urls: Urls, inst: Installation, a: App) -> JsonObj:
    return {
        "id": inst.id, "account": user(urls, inst.account),
        "repository_selection": "all" if inst.repositories is None else "selected",
        "access_tokens_url": f"{urls.api}/app/installations/{inst.id}/access_tokens",
        "repositories_url": f"{urls.api}/installation/repositories",
        "html_url": f"{urls.web}/settings/installations/{inst.id}",
        "app_id": inst.app_id, "app_slug": a.slug, "client_id": a.client_id,
        "target_id": inst.account.id, "target_type": inst.account.type,
        "permissions": dict(inst.permissions), "events": list(inst.events),
        "created_at": iso(inst.created_at), "updated_at": iso(inst.created_at),
        "single_file_name": None, "has_multiple_single_files": False, "single_file_paths": [],
        "suspended_by": None, "suspended_at": None,
    }


def check_run(urls: Urls, repo: Repo, run: CheckRun, app_json: JsonObj | None,
              pulls: list[JsonObj]) -> JsonObj:
    api = f"{urls.repo(repo)}/check-runs/{run.id}"
    html = f"{urls.repo_html(repo)}/runs/{run.id}"
    has_output = run.output_title is not None or run.output_summary is not None
    return {
        "id": run.id, "node_id": node_id("CR", run.id), "head_sha": run.head_sha,
        "external_id": run.external_id, "url": api, "html_url": html,
        "details_url": run.details_url if run.details_url is not None else html,
        "status": run.status, "conclusion": run.conclusion,
        "started_at": iso(run.started_at), "completed_at": iso(run.completed_at),
        "output": {
            "title": run.output_title if has_output else None,
            "summary": run.output_summary if has_output else None,
            "text": run.output_text, "annotations_count": len(run.annotations),
            "annotations_url": f"{api}/annotations",
        },
        "name": run.name, "check_suite": {"id": run.check_suite_id}, "app": app_json,
        "pull_requests": pulls,
    }


def workflow(urls: Urls, repo: Repo, w: Workflow) -> JsonObj:
    return {
        "id": w.id, "node_id": node_id("W", w.id), "name": w.name, "path": w.path,
        "state": w.state, "created_at": iso(w.created_at), "updated_at": iso(w.created_at),
        "url": f"{urls.repo(repo)}/actions/workflows/{w.id}",
        "html_url": f"{urls.repo_html(repo)}/blob/{repo.default_branch}/{w.path}",
        "badge_url": f"{urls.repo_html(repo)}/workflows/{quote(w.name)}/badge.svg",
    }


def workflow_run(urls: Urls, repo: Repo, run: WorkflowRun, w: Workflow,
                 head_commit: Commit | None, pulls: list[JsonObj]) -> JsonObj:
    api = f"{urls.repo(repo)}/actions/runs/{run.id}"
    repo_json = repository(urls, repo)
    head = None
    if head_commit is not None:
        person = {"name": head_commit.author_name, "email": head_commit.author_email}
        head = {"id": head_commit.sha, "tree_id": head_commit.tree_sha,
                "message": head_commit.message, "timestamp": iso(head_commit.date),
                "author": person, "committer": person}
    return {
        "id": run.id, "name": run.name, "node_id": node_id("WFR", run.id),
        "check_suite_id": run.id + 1, "check_suite_node_id": node_id("CS", run.id + 1),
        "head_branch": run.head_branch, "head_sha": run.head_sha, "path": w.path,
        "display_title": run.display_title, "run_number": run.run_number, "event": run.event,
        "status": run.status, "conclusion": run.conclusion, "workflow_id": w.id,
        "run_attempt": run.run_attempt, "url": api,
        "html_url": f"{urls.repo_html(repo)}/actions/runs/{run.id}", "pull_requests": pulls,
        "created_at": iso(run.created_at), "updated_at": iso(run.updated_at),
        "run_started_at": iso(run.created_at), "actor": user(urls, run.actor),
        "triggering_actor": user(urls, run.actor), "jobs_url": f"{api}/jobs",
        "logs_url": f"{api}/logs",
        "check_suite_url": f"{urls.repo(repo)}/check-suites/{run.id + 1}",
        "artifacts_url": f"{api}/artifacts", "cancel_url": f"{api}/cancel",
        "rerun_url": f"{api}/rerun", "previous_attempt_url": None,
        "workflow_url": f"{urls.repo(repo)}/actions/workflows/{w.id}",
        "head_commit": head, "repository": repo_json, "head_repository": repo_json,
        "referenced_workflows": [],
    }


def job(urls: Urls, repo: Repo, j: Job, run: WorkflowRun, workflow_name: str) -> JsonObj:
    api = f"{urls.repo(repo)}/actions/jobs/{j.id}"
    return {
        "id": j.id, "run_id": run.id, "run_url": f"{urls.repo(repo)}/actions/runs/{run.id}",
        "run_attempt": run.run_attempt, "node_id": node_id("CR", j.id),
        "head_sha": run.head_sha, "url": api,
        "html_url": f"{urls.repo_html(repo)}/actions/runs/{run.id}/job/{j.id}",
        "status": j.status, "conclusion": j.conclusion, "created_at": iso(j.started_at),
        "started_at": iso(j.started_at), "completed_at": iso(j.completed_at), "name": j.name,
        "steps": j.steps, "check_run_url": f"{urls.repo(repo)}/check-runs/{j.id}",
        "labels": list(j.labels), "runner_id": 1 if j.runner_name else None,
        "runner_name": j.runner_name, "runner_group_id": 1 if j.runner_name else None,
        "runner_group_name": "GitHub Actions" if j.runner_name else None,
        "workflow_name": workflow_name, "head_branch": run.head_branch,
    }


def installation_token(urls: Urls, token: str, expires_at: datetime,
                       permissions: dict[str, str], repos: list[JsonObj] | None,
                       selection: str) -> JsonObj:
    data: JsonObj = {"token": token, "expires_at": iso(expires_at),
                     "permissions": permissions, "repository_selection": selection}
    if repos is not None:
        data["repositories"] = repos
    return data


def rate_limit(limit: int, used: int, reset: datetime) -> JsonObj:
    core = {"limit": limit, "used": used, "remaining": max(limit - used, 0),
            "reset": int(reset.timestamp())}
    search = {"limit": 30, "used": 0, "remaining": 30,
              "reset": int((reset - timedelta(minutes=59)).timestamp())}
    return {"resources": {"core": core, "search": search,
                          "graphql": dict(core, used=0, remaining=limit)},
            "rate": core}


def permission_allows(granted: dict[str, str], name: str, level: str) -> bool:
    return ACCESS_RANK.get(granted.get(name, "none"), 0) >= ACCESS_RANK[level]


def artifact(urls: Urls, repo: Repo, run: WorkflowRun, a: Artifact) -> JsonObj:
    api = f"{urls.repo(repo)}/actions/artifacts/{a.id}"
    expires = a.created_at + timedelta(days=14)
    return {
        "id": a.id, "node_id": node_id("MDg6QXJ0aWZhY3Q", a.id), "name": a.name, "size_in_bytes": len(a.data),
        "url": api, "archive_download_url": f"{api}/zip", "expired": a.expired, "created_at": iso(a.created_at),
        "updated_at": iso(a.created_at), "expires_at": iso(expires),
        "digest": "sha256:" + hashlib.sha256(a.data).hexdigest(),
        "workflow_run": {"id": run.id, "repository_id": repo.id, "head_repository_id": repo.id,
                         "head_branch": run.head_branch, "head_sha": run.head_sha},
    }

"""In-memory GitHub state: seeding helpers for tests and read-only introspection.

All public methods take ``repo`` as ``"owner/name"``.  Everything is guarded by one re-entrant
lock; the HTTP handlers hold it while they run, so a handler sees a consistent state.
"""

from __future__ import annotations

import copy
import hashlib
import io
import itertools
import re
import secrets
import string
import threading
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .model import (
    App,
    Artifact,
    CheckRun,
    Commit,
    Dispatch,
    Installation,
    Issue,
    IssueComment,
    IssuedToken,
    Job,
    Label,
    ManifestApp,
    PullInfo,
    Reaction,
    RecordedRequest,
    Repo,
    ReviewComment,
    User,
    Workflow,
    WorkflowRun,
    utcnow,
)

ROLES = ("none", "read", "triage", "write", "maintain", "admin")

DEFAULT_INSTALLATION_PERMISSIONS: dict[str, str] = {
    "metadata": "read", "contents": "write", "checks": "write", "pull_requests": "write",
    "issues": "write", "actions": "write", "workflows": "write", "statuses": "write",
}

DispatchHook = Callable[[Dispatch, WorkflowRun | None], None]


class GitHubState:
    """Repositories, users, issues/pulls, checks, Actions and App installations."""

    def __init__(self, *, app_id: int | None = None, app_slug: str = "fixloop",
                 app_name: str = "fixloop", app_client_id: str = "Iv1.fake0000000000") -> None:
        self.lock = threading.RLock()
        self._ids = itertools.count(1001)
        self._users: dict[str, User] = {}
        self._repos: dict[str, Repo] = {}
        self._installations: dict[int, Installation] = {}
        self._issued: dict[str, IssuedToken] = {}
        self._requests: list[RecordedRequest] = []
        self._violations: list[str] = []
        self._dispatch_hooks: list[DispatchHook] = []
        self._commit_counter = itertools.count(1)
        self._manifest_codes: dict[str, tuple[User, dict[str, Any]]] = {}  # code -> (owner, manifest)
        self._manifest_apps: list[ManifestApp] = []
        self.user_tokens: dict[str, str] = {}  # user access token (the App's OAuth web flow) -> login
        self.app_client_secret = "fake-client-secret"  # the App's OAuth client secret
        self._oauth_codes: dict[str, str] = {}  # code -> login, until it is exchanged for a token
        now = utcnow()
        github = self._user("github", "Organization")
        # The app behind GITHUB_TOKEN: check runs made with a plain token belong to it.
        self.actions_app = App(15368, "github-actions", "GitHub Actions", github, "Iv1.actions",
                               dict(DEFAULT_INSTALLATION_PERMISSIONS), ["check_run", "push"], now)
        self.app: App | None = None
        if app_id is not None:
            owner = self._user(f"{app_slug}-dev", "Organization")
            self.app = App(app_id, app_slug, app_name, owner, app_client_id,
                           dict(DEFAULT_INSTALLATION_PERMISSIONS),
                           ["check_run", "issue_comment", "pull_request", "workflow_run"], now)

    # ----------------------------------------------------------------------------------------
    # internal helpers (callers hold the lock)

    def new_id(self) -> int:
        return next(self._ids)

    def _user(self, login: str, kind: str = "User") -> User:
        found = self._users.get(login.lower())
        if found is None:
            if login.endswith("[bot]"):
                kind = "Bot"
            found = User(login, self.new_id(), kind)  # type: ignore[arg-type]
            self._users[login.lower()] = found
        return found

    def find_user(self, login: str) -> User | None:
        return self._users.get(login.lower())

    def get_repo(self, repo: str) -> Repo:
        """The record for ``owner/name`` (KeyError if unknown)."""
        with self.lock:
            return self._repos[repo.lower()]

    def repositories(self) -> list[Repo]:
        return list(self._repos.values())

    def find_repo(self, owner: str, name: str) -> Repo | None:
        return self._repos.get(f"{owner}/{name}".lower())

    def find_installation(self, installation_id: int) -> Installation | None:
        return self._installations.get(installation_id)

    def installation_for(self, owner: str) -> Installation | None:
        for inst in self._installations.values():
            if inst.account.login.lower() == owner.lower():
                return inst
        return None

    def installation_repos(self, inst: Installation) -> list[Repo]:
        """Repositories an installation can reach."""
        return [r for r in self._repos.values()
                if r.owner.login.lower() == inst.account.login.lower()
                and (inst.repositories is None or r.name in inst.repositories)]

    def installations(self) -> list[Installation]:
        with self.lock:
            return list(self._installations.values())

    def issued_token(self, token: str) -> IssuedToken | None:
        return self._issued.get(token)

    def remember_token(self, issued: IssuedToken) -> None:
        self._issued[issued.token] = issued

    def _make_commit(self, repo: Repo, parent: str | None, files: dict[str, str], message: str,
                     sha: str | None, author: str) -> str:
        if sha is None:
            seed = f"{repo.full_name}\0{parent}\0{message}\0{next(self._commit_counter)}"
            sha = hashlib.sha1(seed.encode()).hexdigest()
        elif sha in repo.commits:
            return sha
        u = self._user(author)
        repo.commits[sha] = Commit(sha, message, [parent] if parent else [], files, u.login,
                                   f"{u.id}+{u.login}@users.noreply.github.com", utcnow())
        return sha

    def role_of(self, repo: Repo, login: str) -> str:
        if login.lower() == repo.owner.login.lower() and repo.owner.type == "User":
            return "admin"
        return repo.permissions.get(login.lower(), "none")

    def author_association(self, repo: Repo, u: User) -> str:
        if u.login.lower() == repo.owner.login.lower():
            return "OWNER"
        role = repo.permissions.get(u.login.lower(), "none")
        return "COLLABORATOR" if role not in ("none", "read") else "NONE"

    def ensure_label(self, repo: Repo, name: str) -> Label:
        lab = repo.labels.get(name.lower())
        if lab is None:
            lab = Label(self.new_id(), name)
            repo.labels[name.lower()] = lab
        return lab

    def record_request(self, req: RecordedRequest) -> None:
        with self.lock:
            self._requests.append(req)

    def record_violation(self, text: str) -> None:
        with self.lock:
            self._violations.append(text)

    def create_manifest_app(self, code: str) -> ManifestApp | None:
        """The App made from the manifest behind ``code``, which is then used up; None for a code
        GitHub does not know (never issued, expired or already used)."""
        pending = self._manifest_codes.pop(code, None)
        if pending is None:
            return None
        owner, manifest = pending
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption()).decode()
        slug = re.sub(r"[^a-z0-9]+", "-", manifest["name"].lower()).strip("-")
        client_id = "Iv23li" + "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(14))
        app = App(self.new_id(), slug, manifest["name"], owner, client_id,
                  dict(manifest.get("default_permissions", {})), list(manifest.get("default_events", [])),
                  utcnow())
        hook = manifest.get("hook_attributes") or {}
        created = ManifestApp(app, manifest.get("description"), manifest["url"],
                              pem, secrets.token_hex(20) if hook.get("url") else None, secrets.token_hex(20))
        self._manifest_apps.append(created)
        return created

    def run_dispatch_hooks(self, dispatch: Dispatch, run: WorkflowRun | None) -> None:
        for hook in list(self._dispatch_hooks):
            hook(dispatch, run)

    def new_workflow_run(self, repo: Repo, w: Workflow, *, event: str, head_branch: str | None,
                         head_sha: str, actor: User, status: str, conclusion: str | None,
                         display_title: str | None = None,
                         inputs: dict[str, Any] | None = None) -> WorkflowRun:
        now = utcnow()
        number = 1 + sum(1 for r in repo.runs.values() if r.workflow_id == w.id)
        run = WorkflowRun(self.new_id(), w.id, number, w.name, display_title or w.name, event,
                          status, conclusion, head_branch, head_sha, actor, now, now,
                          inputs=inputs)
        repo.runs[run.id] = run
        return run

    # ----------------------------------------------------------------------------------------
    # seeding

    def add_user(self, login: str, *, type: str = "User") -> User:
        with self.lock:
            return self._user(login, type)

    def add_repo(self, full_name: str, *, default_branch: str = "main", private: bool = False,
                 description: str | None = None, files: Mapping[str, str] | None = None,
                 owner_type: str = "Organization", topics: Iterable[str] = (), language: str | None = None,
                 archived: bool = False) -> Repo:
        """Create a repository whose default branch has one commit holding ``files``."""
        owner_login, name = full_name.split("/", 1)
        with self.lock:
            if full_name.lower() in self._repos:
                raise ValueError(f"repository {full_name} already exists")
            owner = self._user(owner_login, owner_type)
            repo = Repo(owner, name, self.new_id(), private, default_branch, description,
                        utcnow() - timedelta(days=30), topics=list(topics), language=language, archived=archived)
            self._repos[full_name.lower()] = repo
            initial = dict(files) if files is not None else {"README.md": f"# {name}\n"}
            sha = self._make_commit(repo, None, initial, "Initial commit", None, owner_login)
            repo.branches[default_branch] = sha
            if self.app is not None and self.installation_for(owner_login) is None:
                self.add_installation(owner_login)
            return repo

    def add_installation(self, account: str, *, repositories: Iterable[str] | None = None,
                         permissions: Mapping[str, str] | None = None) -> int:
        """Install the App on ``account`` (all its repositories unless ``repositories``)."""
        if self.app is None:
            raise RuntimeError("construct the server with app_id/app_public_key to use Apps")
        with self.lock:
            existing = self.installation_for(account)
            if existing is not None:
                del self._installations[existing.id]
            inst = Installation(
                self.new_id(), self.app.id, self._user(account, "Organization"),
                dict(permissions or DEFAULT_INSTALLATION_PERMISSIONS),
                None if repositories is None else [r.split("/")[-1] for r in repositories],
                list(self.app.events), utcnow())
            self._installations[inst.id] = inst
            return inst.id

    def add_manifest_code(self, code: str, manifest: Mapping[str, Any], *, owner: str = "octocat",
                          owner_type: str = "User") -> None:
        """What GitHub holds once someone confirmed a manifest registration and was redirected
        with ``?code=``: ``POST /app-manifests/{code}/conversions`` then creates the App
        ``manifest`` describes, owned by ``owner``, once."""
        with self.lock:
            self._manifest_codes[code] = (self._user(owner, owner_type), copy.deepcopy(dict(manifest)))

    def installation_id(self, account: str) -> int:
        with self.lock:
            inst = self.installation_for(account)
            if inst is None:
                raise KeyError(f"no installation on {account}")
            return inst.id

    def add_commit(self, repo: str, branch: str, files: Mapping[str, str | None] | None = None,
                   *, message: str = "Update files", sha: str | None = None,
                   author: str = "octocat") -> str:
        """Simulate a push: a new commit on ``branch`` (created from the default branch if
        missing) applying ``files`` (path -> text, or None to delete).  Returns the sha; pass
        ``sha`` to mirror a commit made by a real ``git push`` elsewhere."""
        with self.lock:
            r = self.get_repo(repo)
            parent = r.branches.get(branch) or r.branches[r.default_branch]
            tree = dict(r.commits[parent].files)
            for path, text in (files or {}).items():
                if text is None:
                    tree.pop(path, None)
                else:
                    tree[path] = text
            new = self._make_commit(r, parent, tree, message, sha, author)
            r.branches[branch] = new
            return new

    def add_file(self, repo: str, path: str, text: str, ref: str | None = None) -> str:
        """Commit ``text`` at ``path`` on branch ``ref`` (default branch); returns the sha."""
        with self.lock:
            branch = ref or self.get_repo(repo).default_branch
            return self.add_commit(repo, branch, {path: text}, message=f"Add {path}")

    def add_branch(self, repo: str, name: str, from_ref: str | None = None) -> str:
        """Create branch ``name`` pointing at ``from_ref`` (default branch head)."""
        with self.lock:
            r = self.get_repo(repo)
            sha = r.resolve_ref(from_ref or r.default_branch)
            if sha is None:
                raise KeyError(f"unknown ref {from_ref!r} in {repo}")
            r.branches[name] = sha
            return sha

    def add_tag(self, repo: str, name: str, ref: str | None = None) -> str:
        with self.lock:
            r = self.get_repo(repo)
            sha = r.resolve_ref(ref or r.default_branch)
            if sha is None:
                raise KeyError(f"unknown ref {ref!r} in {repo}")
            r.tags[name] = sha
            return sha

    def set_permission(self, repo: str, login: str, role: str) -> None:
        """Make ``login`` a collaborator with ``role`` ("none" removes them)."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        with self.lock:
            r = self.get_repo(repo)
            self._user(login)
            if role == "none":
                r.permissions.pop(login.lower(), None)
            else:
                r.permissions[login.lower()] = role

    def add_label(self, repo: str, name: str, *, color: str = "ededed",
                  description: str | None = None) -> None:
        with self.lock:
            lab = self.ensure_label(self.get_repo(repo), name)
            lab.color, lab.description = color, description

    def add_issue(self, repo: str, title: str, body: str | None = "", *, user: str = "octocat",
                  labels: Iterable[str] = (), state: str = "open") -> int:
        with self.lock:
            r = self.get_repo(repo)
            now = utcnow()
            issue = Issue(r.next_number, self.new_id(), title, body, self._user(user), now, now,
                          state="open" if state == "open" else "closed",
                          closed_at=None if state == "open" else now)
            for name in labels:
                issue.labels.append(self.ensure_label(r, name).name)
            r.issues[issue.number] = issue
            r.next_number += 1
            return issue.number

    def add_pull(self, repo: str, head: str, *, base: str | None = None, title: str = "A change",
                 body: str | None = "", user: str = "octocat", draft: bool = False,
                 state: str = "open") -> int:
        """Seed a pull request for existing branch ``head`` (no validation)."""
        with self.lock:
            r = self.get_repo(repo)
            number = self.add_issue(repo, title, body, user=user, state=state)
            base = base or r.default_branch
            r.issues[number].pull = PullInfo(self.new_id(), head, r.branches[head], base,
                                              r.branches[base], r.owner.login, draft=draft)
            return number

    def add_issue_comment(self, repo: str, number: int, body: str, *,
                          user: str = "octocat") -> int:
        with self.lock:
            r = self.get_repo(repo)
            if number not in r.issues:
                raise KeyError(f"no issue #{number} in {repo}")
            now = utcnow()
            c = IssueComment(self.new_id(), number, body, self._user(user), now, now)
            r.comments[c.id] = c
            return c.id

    def add_review_comment(self, repo: str, pull_number: int, body: str, *, path: str = "README.md",
                           line: int = 1, user: str = "octocat") -> int:
        with self.lock:
            r = self.get_repo(repo)
            c = ReviewComment(self.new_id(), pull_number, body, path, line, self._user(user),
                              utcnow())
            r.review_comments[c.id] = c
            return c.id

    def add_workflow(self, repo: str, file_name: str, *, name: str | None = None,
                     inputs: Mapping[str, Mapping[str, Any]] | None = None,
                     run_name: str | None = None, state: str = "active") -> int:
        """Register ``.github/workflows/<file_name>``.  ``inputs`` declares its
        ``workflow_dispatch`` inputs (``{"name": {"required": True}}``); when given, dispatches
        with unknown or missing required inputs get GitHub's 422.  ``run_name`` is a
        ``str.format`` template over the inputs used as the runs' ``display_title``."""
        with self.lock:
            r = self.get_repo(repo)
            path = (file_name if file_name.startswith(".github/")
                    else f".github/workflows/{file_name}")
            w = Workflow(self.new_id(), name or file_name.rsplit("/", 1)[-1].rsplit(".", 1)[0],
                         path, utcnow(), state,
                         None if inputs is None else {k: dict(v) for k, v in inputs.items()},
                         run_name)
            r.workflows[w.id] = w
            return w.id

    def find_workflow(self, repo: Repo, workflow_id: str) -> Workflow | None:
        for w in repo.workflows.values():
            if workflow_id in (str(w.id), w.file_name, w.path):
                return w
        return None

    def add_workflow_run(self, repo: str, workflow: str | int, *, status: str = "completed",
                         conclusion: str | None = "success", head_branch: str | None = None,
                         head_sha: str | None = None, event: str = "push",
                         display_title: str | None = None, actor: str = "octocat") -> int:
        with self.lock:
            r = self.get_repo(repo)
            w = self.find_workflow(r, str(workflow))
            if w is None:
                raise KeyError(f"no workflow {workflow!r} in {repo}")
            branch = head_branch or r.default_branch
            sha = head_sha or r.branches.get(branch) or r.branches[r.default_branch]
            return self.new_workflow_run(r, w, event=event, head_branch=branch, head_sha=sha,
                                         actor=self._user(actor), status=status,
                                         conclusion=None if status != "completed" else conclusion,
                                         display_title=display_title).id

    def _find_run(self, run_id: int) -> tuple[Repo, WorkflowRun]:
        for r in self._repos.values():
            if run_id in r.runs:
                return r, r.runs[run_id]
        raise KeyError(f"no workflow run {run_id}")

    def update_workflow_run(self, run_id: int, *, status: str | None = None,
                            conclusion: str | None = None) -> None:
        with self.lock:
            _, run = self._find_run(run_id)
            if status is not None:
                run.status = status
            if conclusion is not None:
                run.conclusion, run.status = conclusion, "completed"
            run.updated_at = utcnow()

    def add_job(self, run_id: int, name: str = "build", *, status: str = "completed",
                conclusion: str | None = "success", log_text: str | None = "",
                steps: list[Mapping[str, Any]] | None = None) -> int:
        """Add a job (with its plain-text log) to workflow run ``run_id``."""
        with self.lock:
            _, run = self._find_run(run_id)
            now = utcnow()
            done = status == "completed"
            default_steps = [{"name": "Run", "status": status,
                              "conclusion": conclusion if done else None, "number": 1,
                              "started_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "completed_at": now.strftime("%Y-%m-%dT%H:%M:%SZ") if done else None}]
            job = Job(self.new_id(), run_id, name, status, conclusion if done else None, now,
                      now if done else None, log_text,
                      [dict(s) for s in steps] if steps is not None else default_steps)
            run.jobs.append(job)
            return job.id

    def add_artifact(self, run_id: int, name: str, files: Mapping[str, str | bytes], *,
                     expired: bool = False) -> int:
        """Attach an artifact holding ``files`` (path -> content) to a workflow run, as upload-artifact does."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path, content in files.items():
                archive.writestr(path, content)
        with self.lock:
            _, run = self._find_run(run_id)
            artifact = Artifact(self.new_id(), name, buffer.getvalue(), utcnow(), expired)
            run.artifacts.append(artifact)
            return artifact.id

    def on_dispatch(self, hook: DispatchHook) -> None:
        """Call ``hook(dispatch, run)`` after every accepted workflow dispatch (e.g. to add jobs
        or complete the run).  Runs in the server thread, with the state lock held."""
        with self.lock:
            self._dispatch_hooks.append(hook)

    # ----------------------------------------------------------------------------------------
    # introspection (returns copies: mutate state through the seeding methods)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self.lock:
            return list(self._requests)

    @property
    def violations(self) -> list[str]:
        with self.lock:
            return list(self._violations)

    def take_violations(self) -> list[str]:
        """Return and clear the recorded violations (for tests that provoke them on purpose)."""
        with self.lock:
            taken, self._violations = self._violations, []
            return taken

    def manifest_apps(self) -> list[ManifestApp]:
        """The Apps created from manifests, with the credentials their conversion answered."""
        with self.lock:
            return copy.deepcopy(self._manifest_apps)

    def issued_tokens(self) -> list[IssuedToken]:
        with self.lock:
            return list(self._issued.values())

    def check_runs(self, repo: str) -> list[CheckRun]:
        with self.lock:
            return [copy.deepcopy(c) for c in self.get_repo(repo).check_runs.values()]

    def check_run(self, repo: str, check_run_id: int) -> CheckRun:
        with self.lock:
            return copy.deepcopy(self.get_repo(repo).check_runs[check_run_id])

    def issues(self, repo: str) -> list[Issue]:
        with self.lock:
            return [copy.deepcopy(i) for i in self.get_repo(repo).issues.values() if i.pull is None]

    def pulls(self, repo: str) -> list[Issue]:
        """Pull requests (issues whose ``.pull`` holds head/base/draft/reviewers)."""
        with self.lock:
            return [copy.deepcopy(i) for i in self.get_repo(repo).issues.values() if i.pull]

    def issue(self, repo: str, number: int) -> Issue:
        with self.lock:
            return copy.deepcopy(self.get_repo(repo).issues[number])

    def comments(self, repo: str, number: int) -> list[IssueComment]:
        with self.lock:
            return [copy.deepcopy(c) for c in self.get_repo(repo).comments.values()
                    if c.issue_number == number]

    def reactions(self, repo: str, comment_id: int) -> list[Reaction]:
        """Reactions on an issue comment or a pull request review comment."""
        with self.lock:
            r = self.get_repo(repo)
            target = r.comments.get(comment_id) or r.review_comments.get(comment_id)
            if target is None:
                raise KeyError(f"no comment {comment_id} in {repo}")
            return list(target.reactions)

    def dispatches(self, repo: str) -> list[Dispatch]:
        with self.lock:
            return [replace(d, inputs=dict(d.inputs)) for d in self.get_repo(repo).dispatches]

    def workflow_runs(self, repo: str) -> list[WorkflowRun]:
        with self.lock:
            return [copy.deepcopy(run) for run in self.get_repo(repo).runs.values()]

    def branch_sha(self, repo: str, branch: str) -> str:
        with self.lock:
            return self.get_repo(repo).branches[branch]

    def file_text(self, repo: str, path: str, ref: str | None = None) -> str | None:
        with self.lock:
            r = self.get_repo(repo)
            sha = r.resolve_ref(ref or r.default_branch)
            return None if sha is None else r.commits[sha].files.get(path)

"""GitHub Actions operations: workflows, dispatches, runs, jobs and job logs."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from . import render
from .model import Dispatch, Repo, Workflow, WorkflowRun, utcnow
from .render import JsonObj
from .routes import ApiError, Ctx, Reply, not_found, open_pulls_for_sha, paginate, route

# ------------------------------------------------------------------------------------------------
# Actions


def _get_workflow(ctx: Ctx, repo: Repo) -> Workflow:
    w = ctx.state.find_workflow(repo, ctx.params["workflow_id"])
    if w is None:
        raise not_found()
    return w


def render_run(ctx: Ctx, repo: Repo, run: WorkflowRun) -> JsonObj:
    w = repo.workflows[run.workflow_id]
    pulls = [] if ctx.q("exclude_pull_requests") == "true" else open_pulls_for_sha(
        ctx, repo, run.head_sha)
    return render.workflow_run(ctx.urls, repo, run, w, repo.commits.get(run.head_sha), pulls)


@route("GET", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}", perms=[("actions", "read")])
def get_workflow(ctx: Ctx) -> Reply:
    repo = ctx.repo
    return Reply(200, render.workflow(ctx.urls, repo, _get_workflow(ctx, repo)))


def _check_inputs(declared: dict[str, dict[str, Any]] | None, inputs: dict[str, Any]) -> None:
    if declared is None:
        return
    unexpected = sorted(set(inputs) - set(declared))
    if unexpected:
        raise ApiError(422, f"Unexpected inputs provided: {unexpected}")
    for name, spec in declared.items():
        if spec.get("required") and name not in inputs and "default" not in spec:
            raise ApiError(422, f"Required input '{name}' not provided")


@route("POST", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/dispatches",
       perms=[("actions", "write")])
def dispatch_workflow(ctx: Ctx) -> Reply:
    repo = ctx.repo
    w = _get_workflow(ctx, repo)
    body: JsonObj = ctx.body
    ref: str = body["ref"]
    inputs: dict[str, Any] = dict(body.get("inputs") or {})
    if w.state != "active":
        raise ApiError(422, "Cannot trigger a 'workflow_dispatch' on a disabled workflow")
    sha = repo.resolve_ref(ref)
    if sha is None:
        raise ApiError(422, f"No ref found for: {ref}")
    _check_inputs(w.inputs, inputs)
    run = None
    if ctx.options.dispatch_creates_runs:
        branch = ref.removeprefix("refs/heads/")
        title = w.name
        if w.run_name:
            title = w.run_name.format_map(_DefaultDict(inputs))
        run = ctx.state.new_workflow_run(
            repo, w, event="workflow_dispatch",
            head_branch=branch if branch in repo.branches else None, head_sha=sha,
            actor=ctx.who.user, status="queued", conclusion=None, display_title=title,
            inputs=inputs)
    wants_details = bool(body.get("return_run_details")) and ctx.options.supports_run_details
    dispatch = Dispatch(repo.full_name, w.id, w.path, ref, inputs, wants_details,
                        ctx.who.token, run.id if run else None, utcnow())
    repo.dispatches.append(dispatch)
    ctx.state.run_dispatch_hooks(dispatch, run)
    if wants_details and run is not None:
        return Reply(200, {
            "workflow_run_id": run.id,
            "run_url": f"{ctx.urls.repo(repo)}/actions/runs/{run.id}",
            "html_url": f"{ctx.urls.repo_html(repo)}/actions/runs/{run.id}",
        })
    return Reply(204)


class _DefaultDict(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return ""


def _filter_runs(ctx: Ctx, runs: Iterable[WorkflowRun]) -> list[WorkflowRun]:
    out = list(runs)
    if ctx.q("actor"):
        out = [r for r in out if r.actor.login == ctx.q("actor")]
    if ctx.q("branch"):
        out = [r for r in out if r.head_branch == ctx.q("branch")]
    if ctx.q("event"):
        out = [r for r in out if r.event == ctx.q("event")]
    if ctx.q("status"):
        out = [r for r in out if ctx.q("status") in (r.status, r.conclusion)]
    if ctx.q("head_sha"):
        out = [r for r in out if r.head_sha == ctx.q("head_sha")]
    if ctx.q("check_suite_id"):
        out = [r for r in out if str(r.id + 1) == ctx.q("check_suite_id")]
    out.sort(key=lambda r: -r.id)
    return out


@route("GET", "/repos/{owner}/{repo}/actions/runs", perms=[("actions", "read")])
def list_runs(ctx: Ctx) -> Reply:
    repo = ctx.repo
    runs = _filter_runs(ctx, repo.runs.values())
    page, headers = paginate(ctx, runs)
    return Reply(200, {"total_count": len(runs),
                       "workflow_runs": [render_run(ctx, repo, r) for r in page]}, headers)


@route("GET", "/repos/{owner}/{repo}/actions/workflows/{workflow_id}/runs",
       perms=[("actions", "read")])
def list_workflow_runs(ctx: Ctx) -> Reply:
    repo = ctx.repo
    w = _get_workflow(ctx, repo)
    runs = _filter_runs(ctx, (r for r in repo.runs.values() if r.workflow_id == w.id))
    page, headers = paginate(ctx, runs)
    return Reply(200, {"total_count": len(runs),
                       "workflow_runs": [render_run(ctx, repo, r) for r in page]}, headers)


def _get_run(ctx: Ctx, repo: Repo) -> WorkflowRun:
    run = repo.runs.get(ctx.int_param("run_id"))
    if run is None:
        raise not_found()
    return run


@route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", perms=[("actions", "read")])
def get_run(ctx: Ctx) -> Reply:
    repo = ctx.repo
    return Reply(200, render_run(ctx, repo, _get_run(ctx, repo)))


@route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", perms=[("actions", "read")])
def list_jobs(ctx: Ctx) -> Reply:
    repo = ctx.repo
    run = _get_run(ctx, repo)
    page, headers = paginate(ctx, run.jobs)
    name = repo.workflows[run.workflow_id].name
    return Reply(200, {"total_count": len(run.jobs),
                       "jobs": [render.job(ctx.urls, repo, j, run, name) for j in page]}, headers)


@route("POST", "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel", perms=[("actions", "write")])
def cancel_run(ctx: Ctx) -> Reply:
    repo = ctx.repo
    run = _get_run(ctx, repo)
    if run.status == "completed":
        raise ApiError(409, "Cannot cancel a workflow run that is completed.")
    run.status, run.conclusion = "completed", "cancelled"
    return Reply(202, {})


@route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts", perms=[("actions", "read")])
def list_run_artifacts(ctx: Ctx) -> Reply:
    repo = ctx.repo
    run = repo.runs.get(ctx.int_param("run_id"))
    if run is None:
        raise not_found()
    artifacts = [a for a in run.artifacts if ctx.q("name") in (None, a.name)]
    page, headers = paginate(ctx, artifacts)
    return Reply(200, {"total_count": len(artifacts),
                       "artifacts": [render.artifact(ctx.urls, repo, run, a) for a in page]}, headers)


@route("GET", "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}", perms=[("actions", "read")])
def download_artifact(ctx: Ctx) -> Reply:
    repo = ctx.repo
    artifact_id = ctx.int_param("artifact_id")
    if ctx.params["archive_format"] != "zip":
        raise not_found()
    for run in repo.runs.values():
        for artifact in run.artifacts:
            if artifact.id == artifact_id:
                if artifact.expired:
                    raise ApiError(410, "Artifact has expired")
                location = (f"{ctx.options.api_root}/_fake/artifacts/{quote(repo.full_name)}/{artifact.id}"
                            f"?sig={secrets.token_hex(8)}")
                return Reply(302, None, {"Location": location})
    raise not_found()


@route("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}/logs", perms=[("actions", "read")])
def job_logs(ctx: Ctx) -> Reply:
    repo = ctx.repo
    job_id = ctx.int_param("job_id")
    for run in repo.runs.values():
        for j in run.jobs:
            if j.id == job_id:
                if j.log_text is None:
                    raise ApiError(410, "Logs have expired")  # as GitHub does after retention
                location = (f"{ctx.options.api_root}/_fake/job-logs/{quote(repo.full_name)}/"
                            f"{j.id}?sig={secrets.token_hex(8)}")
                return Reply(302, None, {"Location": location})
    raise not_found()


# ------------------------------------------------------------------------------------------------

"""The Action: one session inside a GitHub Actions runner (`fixloop action`).

In data-flow order: `environment` (the runner's variables, workflow commands, outputs) → the
shared handler (`bot.handler`) → `plan` (where the session starts and where its result goes) →
`evidence` (a failed run's logs, for CI sessions; triage is `bot.triage`) → the session, with
`checks` reporting each iteration → `publish` (branch, draft pull request, comment) → `runner`,
which wires these together and turns the ending into outputs and an exit code.
"""

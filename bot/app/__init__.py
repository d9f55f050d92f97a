"""The fixloop GitHub App: a webhook server that verifies, decides and dispatches."""

"""GitHub's vocabulary and the REST client, and nothing above them: `events` (parse and verify),
`commands` (the `/fixloop` grammar), `rules` (event + config → decision), `limits` (GitHub's limits
on what fixloop writes), `client` (the only module that talks to the REST API) and `app_auth` (the
App's JWT and installation tokens). Nothing here imports a session or the agent."""

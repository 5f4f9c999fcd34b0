-- wrk script: one client address opening a new connection per request (Connection: close) and hammering
-- POST /api/login with the same body, from its own address (no X-Forwarded-For): a flood the policy blocks.
wrk.method = "POST"
wrk.path = "/api/login"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Connection"] = "close"
wrk.body = '{"email":"victim@example.com","password":"hunter2","remember_me":true}'

-- wrk script: one client address hammering POST /api/login over kept-alive connections from its own address (no
-- X-Forwarded-For): a flood the policy blocks. wrk opens a new connection whenever the server closes one.
wrk.method = "POST"
wrk.path = "/api/login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"email":"victim@example.com","password":"hunter2","remember_me":true}'

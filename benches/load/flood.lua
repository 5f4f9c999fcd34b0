-- wrk script: one client address hammering POST /api/login with the same body (a flood the policy blocks with 429).
-- A static request: wrk builds it once, so the load generator spends as little as possible per request.
wrk.method = "POST"
wrk.path = "/api/login"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Forwarded-For"] = "198.51.100.66"
wrk.body = '{"email":"victim@example.com","password":"hunter2","remember_me":true}'

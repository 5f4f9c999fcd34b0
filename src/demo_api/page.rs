//! The demo app's login page (`GET /`): static HTML, inline CSS, no external assets.

pub(super) const LOGIN_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Demo Shop &middot; Sign in</title>
<style>
  :root { color-scheme: light dark; }
  * { box-sizing: border-box; }
  body {
    margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
    font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Hiragino Sans", sans-serif;
    background: linear-gradient(135deg, #eef2f7 0%, #dde5f0 100%); color: #1d2733;
  }
  main {
    width: min(380px, 92vw); background: #fff; border-radius: 14px; padding: 2rem 2rem 1.5rem;
    box-shadow: 0 10px 30px rgba(20, 40, 80, .12);
  }
  h1 { margin: 0 0 .25rem; font-size: 1.4rem; }
  p.lead { margin: 0 0 1.5rem; color: #5a6878; font-size: .9rem; }
  label { display: block; font-size: .85rem; font-weight: 600; margin-bottom: .3rem; }
  input {
    width: 100%; padding: .65rem .75rem; margin-bottom: 1rem; font: inherit;
    border: 1px solid #c9d3df; border-radius: 8px; background: #fbfcfe; color: inherit;
  }
  input:focus { outline: 2px solid #3b6fd8; outline-offset: 1px; border-color: #3b6fd8; }
  button {
    width: 100%; padding: .7rem; font: inherit; font-weight: 600; color: #fff; cursor: pointer;
    background: #3b6fd8; border: 0; border-radius: 8px;
  }
  button:hover { background: #2f5cb8; }
  footer { margin-top: 1.25rem; font-size: .78rem; color: #7a8796; }
  code { font-size: .75rem; }
  @media (prefers-color-scheme: dark) {
    body { background: linear-gradient(135deg, #141a22 0%, #1c2430 100%); color: #e3e9f1; }
    main { background: #1f2731; box-shadow: 0 10px 30px rgba(0, 0, 0, .4); }
    p.lead, footer { color: #9aa8b8; }
    input { background: #161d26; border-color: #364252; }
  }
</style>
</head>
<body>
<main>
  <h1>Demo Shop</h1>
  <p class="lead">Sign in to top up your balance.</p>
  <form method="post" action="/api/login">
    <label for="email">Email</label>
    <input id="email" name="email" type="email" autocomplete="username" required>
    <label for="password">Password</label>
    <input id="password" name="password" type="password" autocomplete="current-password" required>
    <button type="submit">Sign in</button>
  </form>
  <footer>
    This is the <strong>stuffgate demo app</strong>: a deliberately simple (and, for password
    resets, deliberately vulnerable) upstream login API that the stuffgate gateway protects
    against credential stuffing. Endpoints: <code>/api/login</code>, <code>/api/signup</code>,
    <code>/api/password-reset</code>, <code>/api/topup</code>, <code>/api/me</code>.
  </footer>
</main>
</body>
</html>
"#;

//! The challenge answers: the JSON protocol for API clients, and the page for a browser that navigates.
//!
//! The page solves the proof-of-work in a Web Worker (`crypto.subtle`, with a plain-JavaScript SHA-256 where that
//! is missing, and on the page's own thread where workers are), collects a dozen cheap device signals, and
//! re-submits the original request: a hidden form whose fields are the challenge token, the nonce, the sealed
//! original body and the signals. `HTMLFormElement.prototype.submit.call` keeps a field named `submit` from
//! shadowing the method (Roboo's bug). Without JavaScript, the `<noscript>` "Continue" button sends the same form
//! with an empty nonce, accepted once the wait has passed. Progress is announced in a `role=status` region.

use super::Issued;

pub const MESSAGE: &str = "This sign-in needs a quick check before it can continue.";

/// `428` body for API clients (the exact protocol of docs/challenge-protocol.md).
pub fn json(issued: &Issued) -> String {
    serde_json::json!({
        "error": "challenge_required",
        "message": MESSAGE,
        "challenge": { "token": issued.token, "bits": issued.bits, "expires_in": issued.expires_in },
    })
    .to_string()
}

/// Escape text for an HTML attribute or element.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The page. `action` is the request's own path (and query), where the form re-submits to.
pub fn html(issued: &Issued, action: &str) -> String {
    let data = serde_json::json!({ "token": issued.token, "bits": issued.bits }).to_string().replace('<', "\\u003c");
    let worker = serde_json::to_string(WORKER).unwrap_or_default().replace('<', "\\u003c");
    PAGE.replace("{worker_json}", &worker)
        .replace("{data}", &data)
        .replace("{token}", &escape(&issued.token))
        .replace("{sealed}", &escape(issued.sealed.as_deref().unwrap_or("")))
        .replace("{wait}", &issued.noscript_wait.to_string())
        .replace("{message}", MESSAGE)
        // Last: the path is the client's, and must not be searched for placeholders.
        .replace("{action}", &escape(action))
}

/// The solver, run in a Web Worker (or on the page's thread as a fallback). Defines `solve(message, post)`.
pub const WORKER: &str = r#"
var K=[0x428a2f98,0x71374491,0xb5c0fbcf,0xe9b5dba5,0x3956c25b,0x59f111f1,0x923f82a4,0xab1c5ed5,0xd807aa98,0x12835b01,
0x243185be,0x550c7dc3,0x72be5d74,0x80deb1fe,0x9bdc06a7,0xc19bf174,0xe49b69c1,0xefbe4786,0x0fc19dc6,0x240ca1cc,0x2de92c6f,
0x4a7484aa,0x5cb0a9dc,0x76f988da,0x983e5152,0xa831c66d,0xb00327c8,0xbf597fc7,0xc6e00bf3,0xd5a79147,0x06ca6351,0x14292967,
0x27b70a85,0x2e1b2138,0x4d2c6dfc,0x53380d13,0x650a7354,0x766a0abb,0x81c2c92e,0x92722c85,0xa2bfe8a1,0xa81a664b,0xc24b8b70,
0xc76c51a3,0xd192e819,0xd6990624,0xf40e3585,0x106aa070,0x19a4c116,0x1e376c08,0x2748774c,0x34b0bcb5,0x391c0cb3,0x4ed8aa4a,
0x5b9cca4f,0x682e6ff3,0x748f82ee,0x78a5636f,0x84c87814,0x8cc70208,0x90befffa,0xa4506ceb,0xbef9a3f7,0xc67178f2];
function sha256(m){
  var l=m.length,nb=((l+72)>>6)<<6,w=new Uint8Array(nb),W=new Int32Array(64),i,o;
  w.set(m);w[l]=0x80;var bl=l*8;w[nb-4]=bl>>>24;w[nb-3]=(bl>>>16)&255;w[nb-2]=(bl>>>8)&255;w[nb-1]=bl&255;
  var H=[0x6a09e667,0xbb67ae85,0x3c6ef372,0xa54ff53a,0x510e527f,0x9b05688c,0x1f83d9ab,0x5be0cd19];
  for(o=0;o<nb;o+=64){
    for(i=0;i<16;i++)W[i]=(w[o+4*i]<<24)|(w[o+4*i+1]<<16)|(w[o+4*i+2]<<8)|w[o+4*i+3];
    for(i=16;i<64;i++){var x=W[i-15],y=W[i-2];
      W[i]=(W[i-16]+(((x>>>7)|(x<<25))^((x>>>18)|(x<<14))^(x>>>3))+W[i-7]+(((y>>>17)|(y<<15))^((y>>>19)|(y<<13))^(y>>>10)))|0;}
    var a=H[0],b=H[1],c=H[2],d=H[3],e=H[4],f=H[5],g=H[6],h=H[7];
    for(i=0;i<64;i++){
      var t1=(h+(((e>>>6)|(e<<26))^((e>>>11)|(e<<21))^((e>>>25)|(e<<7)))+((e&f)^(~e&g))+K[i]+W[i])|0;
      var t2=((((a>>>2)|(a<<30))^((a>>>13)|(a<<19))^((a>>>22)|(a<<10)))+((a&b)^(a&c)^(b&c)))|0;
      h=g;g=f;f=e;e=(d+t1)|0;d=c;c=b;b=a;a=(t1+t2)|0;}
    H[0]=(H[0]+a)|0;H[1]=(H[1]+b)|0;H[2]=(H[2]+c)|0;H[3]=(H[3]+d)|0;
    H[4]=(H[4]+e)|0;H[5]=(H[5]+f)|0;H[6]=(H[6]+g)|0;H[7]=(H[7]+h)|0;}
  var out=new Uint8Array(32);
  for(i=0;i<8;i++){out[4*i]=H[i]>>>24;out[4*i+1]=(H[i]>>>16)&255;out[4*i+2]=(H[i]>>>8)&255;out[4*i+3]=H[i]&255;}
  return out;}
function zeros(h,bits){var i=0;for(;bits>=8;bits-=8,i++)if(h[i]!==0)return false;return bits===0||(h[i]>>(8-bits))===0;}
function ascii(s){var b=new Uint8Array(s.length);for(var i=0;i<s.length;i++)b[i]=s.charCodeAt(i);return b;}
function solve(msg,post){
  var prefix=msg.token+":",bits=msg.bits,n=0,subtle=msg.subtle!==false&&self.crypto&&self.crypto.subtle;
  function plain(){
    for(var stop=n+20000;n<stop;n++){if(zeros(sha256(ascii(prefix+n)),bits)){post({nonce:String(n),how:"js"});return;}}
    post({progress:n});setTimeout(plain,0);}
  if(!subtle){plain();return;}
  (function batch(){
    var list=[];for(var i=0;i<256;i++)list.push(subtle.digest("SHA-256",ascii(prefix+(n+i))));
    Promise.all(list).then(function(hs){
      for(var i=0;i<hs.length;i++)if(zeros(new Uint8Array(hs[i]),bits)){post({nonce:String(n+i),how:"subtle"});return;}
      n+=256;if(n%8192===0)post({progress:n});batch();
    },function(){subtle=null;plain();});})();}
"#;

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>One moment&hellip;</title>
<style>
  :root { color-scheme: light dark; }
  body { margin: 0; min-height: 100vh; display: flex; align-items: center; justify-content: center;
    font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Hiragino Sans", sans-serif;
    background: linear-gradient(135deg, #eef2f7 0%, #dde5f0 100%); color: #1d2733; }
  main { width: min(420px, 92vw); background: #fff; border-radius: 14px; padding: 2rem;
    box-shadow: 0 10px 30px rgba(20, 40, 80, .12); }
  h1 { margin: 0 0 .5rem; font-size: 1.3rem; }
  p { margin: .5rem 0; }
  .status { font-weight: 600; }
  .bar { height: 6px; border-radius: 3px; background: #dfe6f0; overflow: hidden; margin: 1rem 0; }
  .bar span { display: block; height: 100%; width: 30%; background: #3b6fd8; animation: slide 1.2s ease-in-out infinite; }
  @keyframes slide { from { margin-left: -30%; } to { margin-left: 100%; } }
  @media (prefers-reduced-motion: reduce) { .bar span { animation: none; width: 100%; } }
  button { padding: .6rem 1.2rem; font: inherit; font-weight: 600; color: #fff; background: #3b6fd8; border: 0;
    border-radius: 8px; cursor: pointer; }
  small { color: #5a6878; }
  @media (prefers-color-scheme: dark) {
    body { background: linear-gradient(135deg, #141a22 0%, #1c2430 100%); color: #e3e9f1; }
    main { background: #1f2731; } small { color: #9aa8b8; } .bar { background: #364252; } }
</style>
</head>
<body>
<main>
  <h1>Checking this sign-in</h1>
  <p>{message} This device has not signed in to this account before, so your browser does a short calculation
  to show it is not an automated attack. It continues by itself.</p>
  <div class="bar" aria-hidden="true"><span></span></div>
  <p id="sg-status" class="status" role="status" aria-live="polite">Checking your browser&hellip; this usually takes about a second.</p>
  <form id="sg-form" method="post" action="{action}">
    <input type="hidden" name="_sg_c" value="{token}">
    <input type="hidden" name="_sg_n" value="">
    <input type="hidden" name="_sg_s" value="{sealed}">
    <input type="hidden" name="_sg_f" value="">
    <noscript>
      <p>JavaScript is turned off. Please wait {wait} seconds, then press Continue.</p>
      <button type="submit">Continue</button>
    </noscript>
  </form>
  <p><small>Protected by stuffgate. Nothing you typed is stored in this page in readable form.</small></p>
</main>
<script id="sg-data" type="application/json">{data}</script>
<script>
(function () {
  "use strict";
  var form = document.getElementById("sg-form"), status = document.getElementById("sg-status");
  var data = JSON.parse(document.getElementById("sg-data").textContent), started = Date.now();
  var SRC = {worker_json};
  function signals() {
    var n = navigator, s = window.screen || {}, f = {};
    try {
      f.ua = n.userAgent; f.lang = (n.languages || []).join(",");
      f.tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
      f.sw = s.width; f.sh = s.height; f.cd = s.colorDepth; f.dpr = window.devicePixelRatio;
      f.hc = n.hardwareConcurrency || 0; f.dm = n.deviceMemory || 0; f.tp = n.maxTouchPoints || 0;
      f.wd = n.webdriver === true; f.pdf = n.pdfViewerEnabled === true; f.ck = n.cookieEnabled === true;
      if (n.userAgentData) {
        f.mob = n.userAgentData.mobile; f.plat = n.userAgentData.platform;
        f.brands = (n.userAgentData.brands || []).map(function (b) { return b.brand + "/" + b.version; }).join(",");
      }
      var gl = document.createElement("canvas").getContext("webgl");
      var info = gl && gl.getExtension("WEBGL_debug_renderer_info");
      if (info) { f.glv = gl.getParameter(info.UNMASKED_VENDOR_WEBGL); f.glr = gl.getParameter(info.UNMASKED_RENDERER_WEBGL); }
    } catch (e) { f.err = true; }
    f.ms = Date.now() - started;
    return JSON.stringify(f);
  }
  function done(nonce) {
    form.elements["_sg_n"].value = nonce;
    form.elements["_sg_f"].value = signals();
    status.textContent = "Done. Continuing\u2026";
    HTMLFormElement.prototype.submit.call(form);
  }
  function onMessage(m) {
    if (m.nonce !== undefined) { done(m.nonce); }
    else if (m.progress) { status.textContent = "Still checking\u2026 (" + m.progress + " tries)"; }
  }
  var message = { token: data.token, bits: data.bits };
  try {
    var url = URL.createObjectURL(new Blob([SRC + "\nonmessage=function(e){solve(e.data,postMessage);};"], { type: "text/javascript" }));
    var worker = new Worker(url);
    worker.onmessage = function (e) { onMessage(e.data); };
    worker.onerror = function (e) { e.preventDefault(); worker.terminate(); inline(); };
    worker.postMessage(message);
  } catch (e) { inline(); }
  function inline() { (new Function("return function(m,p){" + SRC + "\nsolve(m,p);}"))()(message, onMessage); }
})();
</script>
</body>
</html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn issued() -> Issued {
        Issued {
            token: "tok_en-1".into(),
            bits: 16,
            expires_in: 120,
            sealed: Some("c2VhbGVk".into()),
            noscript_wait: 5,
        }
    }

    #[test]
    fn the_json_answer_is_the_documented_protocol() {
        let value: serde_json::Value = serde_json::from_str(&json(&issued())).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"error":"challenge_required","message":MESSAGE,
                "challenge":{"token":"tok_en-1","bits":16,"expires_in":120}})
        );
    }

    #[test]
    fn the_page_escapes_the_path_and_has_its_parts() {
        let page = html(&issued(), "/api/login?x=\"><script>");
        assert!(page.contains("action=\"/api/login?x=&quot;&gt;&lt;script&gt;\""), "{page}");
        for part in ["role=\"status\"", "<noscript>", "name=\"_sg_s\" value=\"c2VhbGVk\"", "new Worker", "sha256("] {
            assert!(page.contains(part), "{part}");
        }
        assert!(!page.contains("{worker_json}") && !page.contains("{data}"));
    }
}

/// `GET /`: one page to talk with the model — no build step, no external assets. It keeps the conversation in
/// the page and sends it whole each turn (as any OpenAI client does); the server's cache makes later turns cost only
/// their own tokens. Images are sent as data: URLs; the answer streams in; VisionZip's numbers show under it.
enum ChatPage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>vzquant</title>
<style>
  :root { --fg: #1d2330; --muted: #667085; --line: #d9dee7; --user: #e8f0fe; --bot: #f6f7f9; --accent: #2f6fde; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 15px/1.45 system-ui, sans-serif; color: var(--fg); background: #fff; }
  header { padding: 10px 16px; border-bottom: 1px solid var(--line); display: flex; gap: 12px; align-items: baseline; flex-wrap: wrap; }
  header h1 { font-size: 17px; margin: 0; }
  header span { color: var(--muted); font-size: 13px; }
  main { max-width: 860px; margin: 0 auto; padding: 12px 16px 170px; }
  .msg { margin: 10px 0; padding: 10px 12px; border-radius: 10px; white-space: pre-wrap; word-wrap: break-word; }
  .user { background: var(--user); margin-left: 15%; }
  .assistant { background: var(--bot); margin-right: 15%; }
  .error { background: #fdecea; color: #8a1c12; }
  .msg img { display: block; max-width: 220px; max-height: 160px; border-radius: 6px; margin-bottom: 6px; }
  .stats { color: var(--muted); font-size: 12px; margin-top: 6px; white-space: normal; }
  form { position: fixed; left: 0; right: 0; bottom: 0; background: #fff; border-top: 1px solid var(--line); padding: 10px 16px; }
  .row { max-width: 860px; margin: 0 auto; display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
  textarea { flex: 1 1 100%; min-height: 54px; resize: vertical; font: inherit; padding: 8px; border: 1px solid var(--line); border-radius: 8px; }
  button { font: inherit; padding: 6px 14px; border-radius: 8px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
  button.plain { background: #fff; color: var(--accent); }
  button:disabled { opacity: .5; cursor: default; }
  label { font-size: 13px; color: var(--muted); }
  input, select { font: inherit; font-size: 13px; }
  #attached { font-size: 12px; color: var(--muted); }
</style>
</head>
<body>
<header><h1>vzquant</h1><span id="model">loading…</span></header>
<main id="messages" aria-live="polite"></main>
<form id="form">
  <div class="row">
    <textarea id="prompt" placeholder="Message (Enter sends, Shift+Enter for a new line)"></textarea>
  </div>
  <div class="row" style="margin-top:6px">
    <label>Image <input id="image" type="file" accept="image/jpeg,image/png"></label>
    <span id="attached"></span>
    <label>Visual tokens <select id="visual-tokens"><option>64</option><option>128</option><option>192</option><option>all</option></select></label>
    <label>Max tokens <input id="max-tokens" type="number" min="1" value="256" style="width:5em"></label>
    <label>Temperature <input id="temperature" type="number" min="0" max="2" step="0.1" value="0.8" style="width:4em"></label>
    <label>API key <input id="key" type="password" style="width:8em"></label>
    <button type="button" class="plain" id="reset">New chat</button>
    <button type="submit" id="send">Send</button>
  </div>
</form>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let history = [];      // the conversation as the API takes it
let pendingImage = null;  // data: URL of the image attached to the next message
let busy = false;

$("key").value = localStorage.getItem("vzquant-key") || "";
$("key").addEventListener("change", () => localStorage.setItem("vzquant-key", $("key").value));

function headers() {
  const h = { "Content-Type": "application/json" };
  if ($("key").value) h["Authorization"] = "Bearer " + $("key").value;
  return h;
}

fetch("/v1/models", { headers: headers() }).then(r => r.json()).then(j => {
  const m = j.data && j.data[0];
  $("model").textContent = m ? `${m.id} · context ${m.meta.context_length}` + (m.meta.vision ? " · images" : " · text only") : "";
}).catch(() => { $("model").textContent = ""; });

function bubble(role, text, image) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  if (image) { const img = document.createElement("img"); img.src = image; img.alt = "attached image"; div.appendChild(img); }
  const span = document.createElement("span");
  span.className = "text";
  span.textContent = text;
  div.appendChild(span);
  $("messages").appendChild(div);
  window.scrollTo(0, document.body.scrollHeight);
  return div;
}

$("image").addEventListener("change", () => {
  const file = $("image").files[0];
  if (!file) return;
  const reader = new FileReader();
  reader.onload = () => { pendingImage = reader.result; $("attached").textContent = file.name + " attached"; };
  reader.readAsDataURL(file);
});

$("reset").addEventListener("click", () => { history = []; $("messages").innerHTML = ""; });

$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("form").requestSubmit(); }
});

function describe(u) {
  if (!u) return "";
  const v = u.vzquant || {};
  let s = `prompt ${u.prompt_tokens} tokens (${(u.prompt_tokens_details || {}).cached_tokens || 0} from the cache), ` +
          `prefilled ${v.prefill_tokens} in ${v.prefill_ms} ms (${v.prefill_tokens_per_second} tok/s); ` +
          `${u.completion_tokens} generated at ${v.decode_tokens_per_second} tok/s`;
  if (v.visual_tokens_before) s += `; VisionZip: ${v.visual_tokens_before} → ${v.visual_tokens_after} visual tokens`;
  return s;
}

async function send(text) {
  const content = pendingImage
    ? [{ type: "image_url", image_url: { url: pendingImage } }, { type: "text", text }]
    : text;
  bubble("user", text, pendingImage);
  history.push({ role: "user", content });
  pendingImage = null; $("image").value = ""; $("attached").textContent = "";
  const out = bubble("assistant", "");
  const textNode = out.querySelector(".text");
  const vt = $("visual-tokens").value;
  const body = {
    model: "vzquant", messages: history, stream: true, stream_options: { include_usage: true },
    max_tokens: parseInt($("max-tokens").value, 10) || 256, temperature: parseFloat($("temperature").value),
    visual_tokens: vt === "all" ? "all" : parseInt(vt, 10),
  };
  let reply = "", usage = null;
  try {
    const r = await fetch("/v1/chat/completions", { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (!r.ok) {
      const j = await r.json().catch(() => ({}));
      throw new Error((j.error && j.error.message) || r.statusText);
    }
    const reader = r.body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffered.indexOf("\n\n")) >= 0) {
        const event = buffered.slice(0, cut); buffered = buffered.slice(cut + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const j = JSON.parse(data);
        if (j.error) throw new Error(j.error.message);
        if (j.usage) usage = j.usage;
        const c = j.choices && j.choices[0];
        if (c && c.delta && c.delta.content) { reply += c.delta.content; textNode.textContent = reply; window.scrollTo(0, document.body.scrollHeight); }
      }
    }
    history.push({ role: "assistant", content: reply });
    const stats = document.createElement("div");
    stats.className = "stats";
    stats.textContent = describe(usage);
    out.appendChild(stats);
  } catch (err) {
    history.pop();
    out.className = "msg error";
    textNode.textContent = "error: " + err.message;
  }
}

$("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("prompt").value.trim();
  if (!text || busy) return;
  busy = true; $("send").disabled = true; $("prompt").value = "";
  try { await send(text); } finally { busy = false; $("send").disabled = false; $("prompt").focus(); }
});
</script>
</body>
</html>
"""#
}

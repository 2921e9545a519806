// wasmhook console: every change is a call to the /v1 API with the session's CSRF token.
// Conventions, read from the server-rendered pages:
//   form[data-api="METHOD /path/{field}"]  fields become a JSON body (data-type: list, json);
//                                           {field} in the path is taken from the form
//   button[data-api] [data-body] [data-confirm]
//   data-then: reload | secret (show the returned secret once) | result (show the answer)
//   [data-stream]: an EventSource on /v1/stream (live tail, overview rates)
"use strict";

(function () {
  const csrf = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  function flash(text, isError) {
    const box = document.getElementById("flash");
    if (!box) return;
    box.textContent = text;
    box.className = isError ? "error" : "ok";
    box.hidden = false;
  }

  async function call(method, url, body) {
    const init = { method, headers: { "X-CSRF-Token": csrf() }, credentials: "same-origin" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    const text = await response.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch (_) { json = text; }
    if (!response.ok) {
      const message = json && json.message ? json.message : response.status + " " + response.statusText;
      throw new Error(message);
    }
    return json;
  }

  function showSecret(secret) {
    const box = document.getElementById("secret-box");
    const value = document.getElementById("secret-value");
    if (!box || !value) return;
    value.textContent = secret;
    box.hidden = false;
  }

  function showResult(json) {
    const pre = document.getElementById("result");
    const text = JSON.stringify(json, null, 2);
    if (pre) {
      pre.textContent = text;
      pre.hidden = false;
    } else {
      flash(text, false);
    }
  }

  function then(kind, json) {
    if (kind === "secret" && json && json.secret) {
      showSecret(json.secret);
      flash("Done. Copy the secret now: it is not shown again.", false);
    } else if (kind === "result") {
      showResult(json);
    } else {
      window.location.reload();
    }
  }

  function formBody(form) {
    const body = {};
    const path = {};
    for (const field of form.elements) {
      if (!field.name || field.disabled) continue;
      const raw = field.value.trim();
      if (raw === "") continue;
      const type = field.dataset.type;
      let value = raw;
      if (type === "list") value = raw.split(",").map((s) => s.trim()).filter(Boolean);
      if (type === "json") value = JSON.parse(raw);
      body[field.name] = value;
      path[field.name] = raw;
    }
    return { body, path };
  }

  function target(spec, path, body) {
    const [method, template] = spec.split(" ");
    const url = template.replace(/\{(\w+)\}/g, (_, name) => {
      const value = path[name] || "";
      delete body[name];
      return encodeURIComponent(value);
    });
    return { method, url };
  }

  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (form.id === "login") {
      event.preventDefault();
      const error = document.getElementById("login-error");
      try {
        const response = await fetch("/ui/login", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ token: form.elements.token.value }),
          credentials: "same-origin",
        });
        if (response.status === 204) {
          window.location.assign("/ui");
          return;
        }
        const json = await response.json();
        error.textContent = json.message;
      } catch (e) {
        error.textContent = String(e.message || e);
      }
      error.hidden = false;
      return;
    }
    if (!form.dataset.api) return;
    event.preventDefault();
    try {
      const { body, path } = formBody(form);
      const { method, url } = target(form.dataset.api, path, body);
      then(form.dataset.then, await call(method, url, body));
    } catch (e) {
      flash(String(e.message || e), true);
    }
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.id === "logout") {
      try { await call("POST", "/ui/logout"); } catch (_) { /* signed out anyway */ }
      window.location.assign("/ui/login");
      return;
    }
    if (button.id === "copy-secret") {
      const value = document.getElementById("secret-value").textContent;
      try {
        await navigator.clipboard.writeText(value);
        button.textContent = "Copied";
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(document.getElementById("secret-value"));
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      }
      return;
    }
    if (button.id === "replay-selected") {
      const picked = [...document.querySelectorAll("input.pick:checked")].map((c) => c.value);
      if (picked.length === 0) { flash("Select dead letters first.", true); return; }
      try {
        for (const id of picked) await call("POST", "/v1/deliveries/" + encodeURIComponent(id) + "/retry");
        window.location.reload();
      } catch (e) {
        flash(String(e.message || e), true);
      }
      return;
    }
    if (!button.dataset.api || button.form) return;
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    try {
      const body = button.dataset.body ? JSON.parse(button.dataset.body) : undefined;
      const [method, url] = button.dataset.api.split(" ");
      then(button.dataset.then, await call(method, url, body));
    } catch (e) {
      flash(String(e.message || e), true);
    }
  });

  document.addEventListener("change", (event) => {
    if (event.target.id === "pick-all") {
      for (const box of document.querySelectorAll("input.pick")) box.checked = event.target.checked;
    }
  });

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    row.appendChild(td);
  }

  function tail(table) {
    const body = table.querySelector("tbody");
    const state = document.getElementById("tail-state");
    const source = new EventSource(table.dataset.stream);
    source.addEventListener("ready", () => { state.textContent = "live"; });
    source.addEventListener("gap", (e) => { state.textContent = JSON.parse(e.data).message; });
    source.onerror = () => { state.textContent = "reconnecting…"; };
    const add = (kind) => (e) => {
      const item = JSON.parse(e.data);
      const row = document.createElement("tr");
      row.className = kind === "event.accepted" ? "accepted" : item.outcome;
      cell(row, item.at);
      cell(row, kind);
      cell(row, item.event_type);
      cell(row, item.event_id);
      cell(row, kind === "event.accepted" ? item.subscriptions.join(", ") : item.subscription_id);
      cell(row, kind === "event.accepted" ? "" : item.outcome + (item.status_code ? " (" + item.status_code + ")" : ""));
      body.prepend(row);
      while (body.rows.length > 500) body.deleteRow(-1);
    };
    source.addEventListener("event.accepted", add("event.accepted"));
    source.addEventListener("delivery.outcome", add("delivery.outcome"));
  }

  function rates(element) {
    const seen = { accepted: [], delivered: [], failed: [] };
    const source = new EventSource(element.dataset.stream);
    const bump = (name) => {
      const now = Date.now();
      seen[name].push(now);
      for (const key of Object.keys(seen)) {
        seen[key] = seen[key].filter((t) => now - t < 60000);
        const out = document.getElementById("rate-" + key);
        if (out) out.textContent = String(seen[key].length);
      }
    };
    source.addEventListener("event.accepted", () => bump("accepted"));
    source.addEventListener("delivery.outcome", (e) => {
      const outcome = JSON.parse(e.data).outcome;
      if (outcome === "delivered") bump("delivered");
      if (outcome === "retrying" || outcome === "dead_letter") bump("failed");
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const table = document.getElementById("tail");
    if (table) tail(table);
    const overview = document.getElementById("rates");
    if (overview) rates(overview);
  });
})();

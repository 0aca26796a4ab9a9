/**
 * The operator page's script (GET /admin/app.js), served as is: plain browser JavaScript, no build
 * step, no third-party code. It holds no data: it asks for the admin token, keeps it in
 * sessionStorage only (never a URL, a log line or localStorage) and calls the JSON routes.
 * Everything it shows goes through textContent or attributes set one by one (never innerHTML),
 * so a set or consumer name can never become markup.
 *
 * Kept as a string (no backticks or dollar-brace inside) so the worker serves it without a bundler rule.
 */
export const PAGE_SCRIPT = String.raw`"use strict";
(function () {
  var TOKEN_KEY = "bkr.adminToken";
  var SVGNS = "http://www.w3.org/2000/svg";
  var REFRESH_MS = 30000;
  var state = { status: null, timer: null, busy: false };

  function $(id) { return document.getElementById(id); }
  function token() { try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; } }
  function setToken(t) { try { if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* storage off: this page load only */ } }

  /** el("tag", {class: "x", "data-y": "z"}, [children or strings]) — text only ever as text nodes. */
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }
  function svg(tag, attrs, children) {
    var node = document.createElementNS(SVGNS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }
  function setAttrs(node, attrs) {
    if (!attrs) return;
    Object.keys(attrs).forEach(function (k) {
      var v = attrs[k];
      if (v === null || v === undefined || v === false) return;
      if (k === "text") node.textContent = String(v);
      else node.setAttribute(k, v === true ? "" : String(v));
    });
  }
  function append(node, children) {
    if (children === null || children === undefined) return;
    if (!Array.isArray(children)) children = [children];
    children.forEach(function (c) {
      if (c === null || c === undefined || c === false) return;
      node.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
    });
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

  // --- time ------------------------------------------------------------------------------
  function ms(isoText) { return isoText ? Date.parse(isoText) : NaN; }
  function span(msDiff) {
    var s = Math.round(Math.abs(msDiff) / 1000);
    if (s < 90) return s + " s";
    var m = Math.round(s / 60);
    if (m < 90) return m + " min";
    var h = Math.round(m / 6) / 10;
    if (h < 48) return h + " h";
    return Math.round(h / 2.4) / 10 + " d";
  }
  function relative(isoText, now) {
    var t = ms(isoText);
    if (isNaN(t)) return "never";
    var d = t - now;
    return Math.abs(d) < 1000 ? "now" : d > 0 ? "in " + span(d) : span(d) + " ago";
  }
  function utc(isoText) { return isoText ? isoText.replace("T", " ").replace(/\.\d+Z$/, "Z") : "—"; }
  function timeEl(isoText, now) {
    if (!isoText) return el("span", { class: "muted", text: "—" });
    return el("time", { datetime: isoText, title: utc(isoText) }, [relative(isoText, now)]);
  }

  // --- API ------------------------------------------------------------------------------
  function api(method, path, body) {
    var headers = { authorization: "Bearer " + token(), accept: "application/json" };
    var init = { method: method, headers: headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
    if (body !== undefined) { headers["content-type"] = "application/json"; init.body = JSON.stringify(body); }
    return fetch(path, init).then(function (res) {
      return res.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (res.status === 401) { signOut("The token was refused (401). Sign in again."); throw new Error("unauthorized"); }
        if (!res.ok) {
          var err = new Error((data && data.message) || ("HTTP " + res.status));
          err.code = (data && data.error) || String(res.status);
          throw err;
        }
        return data;
      });
    });
  }

  // notice: what to show once the status is loaded (a confirmed action's result); else the notice clears.
  function load(notice) {
    if (!token()) return Promise.resolve();
    $("refresh").disabled = true;
    return api("GET", "/v1/admin/status").then(function (status) {
      state.status = status;
      render(status);
      setNotice(notice || "");
    }).catch(function (err) {
      if (err.message !== "unauthorized") setNotice("Could not load the status: " + err.message, true);
    }).then(function () { $("refresh").disabled = false; });
  }

  function schedule() {
    if (state.timer) clearInterval(state.timer);
    state.timer = setInterval(function () { if (!document.hidden && !state.busy && token()) load(); }, REFRESH_MS);
  }

  function signOut(message) {
    setToken(null);
    state.status = null;
    if (state.timer) clearInterval(state.timer);
    state.timer = null;
    $("app").hidden = true;
    $("login").hidden = false;
    $("signout").hidden = true;
    $("refresh").hidden = true;
    clear($("summary"));
    $("login-error").textContent = message || "";
    $("token").value = "";
    $("token").focus();
  }

  function signedIn() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("signout").hidden = false;
    $("refresh").hidden = false;
    schedule();
    return load();
  }

  function setNotice(text, isError) {
    var n = $("notice");
    n.textContent = text;
    n.className = isError ? "notice error" : "notice";
    n.hidden = !text;
  }

  // --- rendering ---------------------------------------------------------------------------
  function render(s) {
    var now = ms(s.generated_at) || Date.now();
    renderSummary(s, now);
    renderAlerts(s, now);
    var sets = $("sets");
    clear(sets);
    if (s.sets.length === 0) sets.appendChild(el("p", { class: "card muted", text: "No model sets are configured or known to D1." }));
    // Configured sets first (alphabetical, as status lists them), then sets D1 still holds keys for.
    s.sets.filter(function (x) { return x.configured !== false; }).concat(s.sets.filter(function (x) { return x.configured === false; }))
      .forEach(function (set) { sets.appendChild(renderSet(set, s, now)); });
    renderConsumers(s, now);
  }

  function renderSummary(s, now) {
    var box = $("summary");
    clear(box);
    var lagging = 0;
    s.consumers.forEach(function (c) { c.seen.forEach(function (x) { if (x.lagging) lagging++; }); });
    var failing = s.sets.filter(function (x) { return x.last_run && x.last_run.outcome === "failed"; }).length;
    box.appendChild(el("span", { class: "pill", "data-testid": "set-count" }, [s.sets.length + " sets"]));
    box.appendChild(el("span", { class: s.engine.stalled ? "pill bad" : "pill ok", "data-testid": "engine" }, [s.engine.stalled ? "engine stalled" : "engine ok", " · last tick ", timeEl(s.engine.last_tick_at, now)]));
    if (failing) box.appendChild(el("span", { class: "pill bad" }, [failing + " failing"]));
    if (lagging) box.appendChild(el("span", { class: "pill warn" }, [lagging + " lagging"]));
    if (s.config_problems.length) box.appendChild(el("span", { class: "pill bad" }, [s.config_problems.length + " config problems"]));
  }

  function renderAlerts(s, now) {
    var box = $("alerts");
    clear(box);
    if (s.config_problems.length) {
      box.appendChild(el("section", { class: "card alert bad", "aria-labelledby": "cp-h" }, [
        el("h2", { id: "cp-h", text: "Configuration problems" }),
        el("p", { text: "Every route but /healthz and the operator views fails closed until these are fixed; the cron rotates nothing." }),
        el("ul", { id: "config-problems" }, s.config_problems.map(function (p) { return el("li", { text: p }); })),
      ]));
    }
    if (s.engine.stalled) {
      box.appendChild(el("section", { class: "card alert bad" }, [
        el("h2", { text: "The engine looks stalled" }),
        el("p", {}, ["No cron tick recorded ", s.engine.last_tick_at ? el("span", {}, ["since ", timeEl(s.engine.last_tick_at, now)]) : "yet", ". Promises are not extended while no tick runs; check the cron trigger."]),
      ]));
    }
    if (s.event_failures.length) {
      var rows = s.event_failures.map(function (f) {
        return el("tr", {}, [el("td", { text: f.subscriber }), el("td", { text: f.event_type }), el("td", { text: f.model_set }), el("td", { text: f.error }), el("td", {}, [timeEl(f.at, now)]), el("td", {}, [timeEl(f.last_success_at, now)])]);
      });
      box.appendChild(el("section", { class: "card alert warn" }, [
        el("h2", { text: "Event deliveries failing" }),
        el("div", { class: "scroll" }, [el("table", { id: "event-failures" }, [
          el("thead", {}, [el("tr", {}, ["Subscriber", "Event", "Set", "Error", "Failed", "Last success"].map(function (h) { return el("th", { scope: "col", text: h }); }))]),
          el("tbody", {}, rows),
        ])]),
      ]));
    }
    var enc = s.encryption;
    var engineLine = el("p", { class: "muted small" }, [
      "Last cron tick ", timeEl(s.engine.last_tick_at, now),
      enc ? " · sealing key " + enc.primary + " (" + Object.keys(enc.sealed_by).map(function (k) { return k + ": " + enc.sealed_by[k]; }).join(", ") + ")" : "",
      " · status at " + utc(s.generated_at),
    ]);
    box.appendChild(engineLine);
  }

  function renderSet(set, s, now) {
    var failed = set.last_run && set.last_run.outcome === "failed";
    var overdue = set.refresh_at && ms(set.refresh_at) < now;
    var badges = [
      set.configured === false ? el("span", { class: "pill warn", text: "removed from MODEL_SETS" }) : null,
      set.enabled === false && set.configured !== false ? el("span", { class: "pill warn", text: "disabled" }) : null,
      set.enabled ? el("span", { class: "pill ok", text: "enabled" }) : null,
      failed ? el("span", { class: "pill bad", text: "last run failed" }) : null,
      overdue ? el("span", { class: "pill bad", text: "rotation overdue" }) : null,
      set.pending !== null ? el("span", { class: "pill", text: "minting g" + set.pending }) : null,
      el("span", { class: "meta small muted" }, ["team ", el("span", { class: "mono", text: set.team_id || "—" }), " · models ", el("span", { class: "mono", text: set.model_ids.join(", ") || "—" })]),
    ];
    var facts = el("dl", { class: "facts" }, [
      fact("Generation", el("strong", { class: "generation", "data-testid": "generation", text: set.generation === null ? "none yet" : String(set.generation) })),
      fact("Minted", timeEl(set.created_at, now)),
      fact("Next refresh", el("span", { "data-testid": "refresh-at" }, [timeEl(set.refresh_at, now)])),
      fact("Expires", timeEl(set.expires_at, now)),
      fact("Live keys", el("span", { "data-testid": "live-keys", text: String((set.generation === null ? 0 : 1) + set.previous.length) })),
      fact("Last run", set.last_run ? el("span", {}, [set.last_run.outcome + " (" + set.last_run.trigger + ") ", timeEl(set.last_run.at, now)]) : el("span", { class: "muted", text: "none" }), true),
    ]);
    var error = failed && set.last_run.error ? el("p", { class: "error small", text: set.last_run.error }) : null;
    var buttons = el("div", { class: "buttons" }, [
      set.enabled ? el("button", { type: "button", class: "primary", "data-action": "rotate", "data-set": set.model_set, text: "Rotate now…" }) : null,
      set.previous.length ? el("button", { type: "button", class: "danger", "data-action": "revoke", "data-set": set.model_set, text: "Emergency revoke…" }) : null,
    ]);
    return el("article", { class: "card set", "data-set": set.model_set, "aria-labelledby": "set-h-" + set.model_set }, [
      el("header", { class: "set-head" }, [el("h2", { id: "set-h-" + set.model_set, class: "mono", text: set.model_set })].concat(badges)),
      facts,
      error,
      timeline(set, now),
      buttons,
    ]);
  }

  function fact(label, value, wide) { return el("div", { class: wide ? "wide" : null }, [el("dt", { text: label }), el("dd", {}, [value])]); }

  /** The generations as bars: minted -> replaced -> revoked (or the promised expiry); failed runs marked. */
  function timeline(set, now) {
    var gens = set.history.slice().sort(function (a, b) { return b.generation - a.generation; });
    // Drawn at the width it is shown at, so labels keep their size from a phone to a wide screen.
    var W = Math.max(300, Math.min(1600, ($("sets").clientWidth || 1000) - 34)), LEFT = W < 500 ? 40 : 56, RIGHT = 12, ROW = 26, TOP = 30;
    var H = TOP + Math.max(1, gens.length) * ROW + 34;
    var times = [now];
    gens.forEach(function (g) { [g.created_at, g.replaced_at, g.revoked_at, g.expires_at, g.refresh_at].forEach(function (t) { if (t) times.push(ms(t)); }); });
    set.failures.forEach(function (f) { times.push(ms(f.at)); });
    var t0 = Math.min.apply(null, times), t1 = Math.max.apply(null, times);
    if (t1 - t0 < 60000) t1 = t0 + 60000;
    var pad = (t1 - t0) * 0.03;
    t0 -= pad; t1 += pad;
    function x(t) { return LEFT + ((t - t0) / (t1 - t0)) * (W - LEFT - RIGHT); }
    var nodes = [];
    nodes.push(svg("rect", { class: "tl-bg", x: LEFT, y: TOP - 6, width: W - LEFT - RIGHT, height: Math.max(1, gens.length) * ROW + 6 }));
    if (!gens.length) nodes.push(svg("text", { class: "tl-label", x: LEFT + 8, y: TOP + 16, text: "no key minted yet" }));
    gens.forEach(function (g, i) {
      var y = TOP + i * ROW;
      var start = ms(g.created_at);
      var isCurrent = g.state === "current";
      var end = g.revoked_at ? ms(g.revoked_at) : g.expires_at ? ms(g.expires_at) : now;
      var served = g.replaced_at ? ms(g.replaced_at) : isCurrent && g.refresh_at ? Math.min(ms(g.refresh_at), end) : end;
      var label = "g" + g.generation;
      var group = svg("g", { class: "tl-gen state-" + g.state + (isCurrent ? " current" : ""), "data-generation": g.generation, "data-state": g.state, "data-start": g.created_at, "data-end": g.revoked_at || g.expires_at || "" });
      var desc = label + ": " + g.state + ", minted " + utc(g.created_at) + (g.replaced_at ? ", replaced " + utc(g.replaced_at) : "") + (g.revoked_at ? ", revoked " + utc(g.revoked_at) : g.expires_at ? ", promised until " + utc(g.expires_at) : "");
      append(group, [
        svg("title", { text: desc }),
        svg("text", { class: "tl-gen-label", x: LEFT - 8, y: y + 15, "text-anchor": "end", text: label }),
      ]);
      if (g.state === "abandoned") {
        append(group, svg("path", { class: "tl-abandoned", d: "M" + (x(start) - 5) + " " + (y + 4) + " l10 12 m0 -12 l-10 12" }));
      } else {
        append(group, [
          svg("rect", { class: "tl-served", x: x(start), y: y + 3, width: Math.max(2, x(served) - x(start)), height: ROW - 8, rx: 3 }),
          end > served ? svg("rect", { class: g.revoked_at ? "tl-overlap" : "tl-promise", x: x(served), y: y + 3, width: Math.max(1, x(end) - x(served)), height: ROW - 8, rx: 3 }) : null,
          g.revoked_at ? svg("path", { class: "tl-revoked", d: "M" + (x(end) - 5) + " " + (y + 5) + " l10 " + (ROW - 12) + " m0 -" + (ROW - 12) + " l-10 " + (ROW - 12) }) : null,
        ]);
      }
      nodes.push(group);
    });
    // Failed runs: red ticks on the row above the bars.
    set.failures.forEach(function (f) {
      var fx = x(ms(f.at));
      nodes.push(svg("path", { class: "tl-failed", "data-failed-at": f.at, d: "M" + (fx - 5) + " 6 l5 10 l5 -10 z" }, [svg("title", { text: "failed run (" + f.trigger + ") " + utc(f.at) + (f.error ? ": " + f.error : "") })]));
    });
    var bottom = TOP + Math.max(1, gens.length) * ROW;
    nodes.push(svg("line", { class: "tl-now", x1: x(now), x2: x(now), y1: TOP - 10, y2: bottom + 4 }));
    nodes.push(svg("text", { class: "tl-axis", x: x(now), y: bottom + 18, "text-anchor": "middle", text: "now" }));
    if (set.refresh_at) {
      var rx = x(ms(set.refresh_at));
      nodes.push(svg("line", { class: "tl-refresh", "data-refresh-at": set.refresh_at, x1: rx, x2: rx, y1: TOP - 10, y2: bottom + 4 }, [svg("title", { text: "next refresh_at " + utc(set.refresh_at) })]));
      nodes.push(svg("text", { class: "tl-axis refresh", x: rx, y: bottom + 30, "text-anchor": rx > W - 120 ? "end" : "middle", text: "next refresh " + relative(set.refresh_at, now) }));
    }
    // The window's ends, unless the "now" label sits there.
    if (x(now) - LEFT > 90) nodes.push(svg("text", { class: "tl-axis", x: LEFT, y: bottom + 18, text: utc(new Date(t0).toISOString()).slice(5, 16) }));
    if (W - RIGHT - x(now) > 90) nodes.push(svg("text", { class: "tl-axis", x: W - RIGHT, y: bottom + 18, "text-anchor": "end", text: utc(new Date(t1).toISOString()).slice(5, 16) }));
    var summary = "Timeline of " + gens.length + " generations of " + set.model_set + (set.generation !== null ? "; current generation " + set.generation : "");
    return el("figure", { class: "timeline" }, [
      svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": summary, width: W, height: H, class: "tl", "data-set": set.model_set }, nodes),
      el("figcaption", { class: "legend small muted" }, [["served", "serving"], ["current", "current key"], ["promise", "promised (until expires_at)"], ["overlap", "overlap, then revoked"], ["failed", "failed run"], ["refresh", "next refresh_at"]].map(function (k) {
        return el("span", { class: "legend-item" }, [el("span", { class: "key " + k[0] }), k[1]]);
      })),
    ]);
  }

  function renderConsumers(s, now) {
    var body = $("consumers-body");
    clear(body);
    var current = {};
    s.sets.forEach(function (x) { current[x.model_set] = x.generation; });
    if (!s.consumers.length) body.appendChild(el("tr", {}, [el("td", { colspan: 4, class: "muted", text: "No consumers." })]));
    s.consumers.forEach(function (c) {
      var lagging = c.seen.some(function (x) { return x.lagging; });
      var seen = c.model_sets.map(function (setId) {
        var mine = c.seen.filter(function (x) { return x.model_set === setId; })[0];
        var cur = current[setId];
        if (!mine) return el("li", {}, [el("span", { class: "mono", text: setId }), ": ", el("span", { class: "muted", text: "not seen yet" })]);
        return el("li", { class: mine.lagging ? "lagging" : "" }, [
          el("span", { class: "mono", text: setId }), ": g" + mine.generation,
          cur !== undefined && cur !== null && mine.generation !== cur ? " (current g" + cur + ")" : "",
          " since ", timeEl(mine.at, now),
          mine.lagging ? el("strong", { class: "pill bad", text: "lagging" }) : null,
        ]);
      });
      body.appendChild(el("tr", { class: lagging ? "lagging" : "", "data-consumer": c.name }, [
        el("th", { scope: "row", class: "mono", text: c.name }),
        el("td", { text: c.kind }),
        el("td", { class: "mono", text: c.model_sets.join(", ") }),
        el("td", {}, [el("ul", { class: "plain" }, seen)]),
      ]));
    });
  }

  // --- actions behind a confirmation ------------------------------------------------------
  function findSet(id) { return (state.status ? state.status.sets : []).filter(function (x) { return x.model_set === id; })[0]; }

  function openDialog(title, text, extra, onConfirm, okLabel) {
    var dlg = $("confirm");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    var box = $("confirm-extra");
    clear(box);
    append(box, extra);
    $("confirm-error").textContent = "";
    $("confirm-ok").textContent = okLabel;
    $("confirm-ok").disabled = false;
    state.onConfirm = onConfirm;
    state.busy = true;
    dlg.showModal();
    var first = box.querySelector("input, textarea, select");
    (first || $("confirm-cancel")).focus();
  }

  function closeDialog() {
    state.busy = false;
    state.onConfirm = null;
    if ($("confirm").open) $("confirm").close();
  }

  function rotateDialog(setId) {
    var reason = el("input", { id: "rotate-reason", type: "text", maxlength: 500, autocomplete: "off", placeholder: "e.g. runbook step 3" });
    var leak = el("input", { id: "rotate-revoke-previous", type: "checkbox" });
    openDialog("Rotate " + setId + " now?", "A new key is minted now. The replaced key stays live until the expiry it was served with, unless you revoke it.", [
      el("label", { for: "rotate-reason", text: "Reason (optional, recorded in the audit trail)" }), reason,
      el("label", { class: "check" }, [leak, " Leak response: revoke every older key of this set at Baseten at once (consumers holding them get 401 until they refetch)"]),
    ], function () {
      var body = { reason: reason.value.trim() || undefined, revoke_previous: leak.checked || undefined };
      return api("POST", "/v1/admin/rotate/" + encodeURIComponent(setId), body).then(function (r) {
        return "Rotated " + setId + " to generation " + r.generation + (r.revoked && r.revoked.length ? "; revoked " + r.revoked.join(", ") : "") + ".";
      });
    }, "Rotate");
  }

  function revokeDialog(setId) {
    var set = findSet(setId);
    if (!set) return;
    var boxes = set.previous.map(function (p) {
      var id = "revoke-g" + p.generation;
      return el("label", { class: "check", for: id }, [el("input", { type: "checkbox", id: id, value: p.generation, "data-generation": p.generation }), " generation " + p.generation + " (promised until " + utc(p.expires_at) + ")"]);
    });
    var all = el("input", { type: "checkbox", id: "revoke-all" });
    var confirmName = el("input", { id: "revoke-confirm-name", type: "text", autocomplete: "off", spellcheck: "false" });
    var reason = el("input", { id: "revoke-reason", type: "text", maxlength: 500, autocomplete: "off" });
    openDialog("Emergency revoke in " + setId, "The chosen keys are deleted at Baseten now, before the expiry their documents promised. The current key (generation " + set.generation + ") is never revoked this way.", [
      el("fieldset", {}, [el("legend", { text: "Keys to revoke" })].concat(boxes).concat([el("label", { class: "check", for: "revoke-all" }, [all, " all previous keys"])])),
      el("label", { for: "revoke-reason", text: "Reason (optional)" }), reason,
      el("label", { for: "revoke-confirm-name" }, ["Type the set name (", el("span", { class: "mono", text: setId }), ") to confirm"]), confirmName,
    ], function () {
      if (confirmName.value !== setId) return Promise.reject(new Error("type the set name exactly to confirm"));
      var gens = boxes.map(function (b) { return b.querySelector("input"); }).filter(function (i) { return i.checked; }).map(function (i) { return Number(i.value); });
      if (!all.checked && !gens.length) return Promise.reject(new Error("choose at least one key"));
      var body = all.checked ? { all_previous: true } : { generations: gens };
      if (reason.value.trim()) body.reason = reason.value.trim();
      return api("POST", "/v1/admin/revoke/" + encodeURIComponent(setId), body).then(function (r) {
        return r.revoked.length ? "Revoked generation " + r.revoked.join(", ") + " of " + setId + "." : "Nothing to revoke in " + setId + ".";
      });
    }, "Revoke now");
  }

  function confirm(ev) {
    ev.preventDefault();
    if (!state.onConfirm) return closeDialog();
    var ok = $("confirm-ok");
    ok.disabled = true;
    state.onConfirm().then(function (message) {
      closeDialog();
      setNotice(message, false);
      return load(message);
    }, function (err) {
      ok.disabled = false;
      if (err.message !== "unauthorized") $("confirm-error").textContent = err.message;
      else closeDialog();
    });
  }

  // --- wiring --------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", function () {
    $("login-form").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var t = $("token").value.trim();
      $("token").value = "";
      if (!t) return;
      setToken(t);
      signedIn();
    });
    $("signout").addEventListener("click", function () { signOut(""); });
    $("refresh").addEventListener("click", function () { load(); });
    $("confirm-form").addEventListener("submit", confirm);
    $("confirm-cancel").addEventListener("click", closeDialog);
    // Escape closes the dialog too; the event may come after another dialog was opened already.
    $("confirm").addEventListener("close", function () { if (!$("confirm").open) { state.busy = false; state.onConfirm = null; } });
    var resizeTimer = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(function () { if (state.status) render(state.status); }, 150);
    });
    $("sets").addEventListener("click", function (ev) {
      var b = ev.target.closest("button[data-action]");
      if (!b) return;
      if (b.getAttribute("data-action") === "rotate") rotateDialog(b.getAttribute("data-set"));
      else revokeDialog(b.getAttribute("data-set"));
    });
    if (token()) signedIn(); else $("token").focus();
  });
})();
`;

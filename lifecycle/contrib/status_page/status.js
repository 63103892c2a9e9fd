// The lifecycle status page: polls the JSON endpoint next to it and redraws without reloading.
// Everything a service supplies is written with textContent, never parsed as HTML.
(function () {
  "use strict";

  const STATUSES = ["running", "starting", "reconnecting", "error", "stopping", "stopped"];
  const params = new URLSearchParams(location.search);
  const requested = Number(params.get("refresh"));
  const INTERVAL = 1000 * (requested >= 0.5 && requested <= 300 ? requested : 2);
  const TOKEN_KEY = "lifecycle-token:" + location.pathname;
  const STATUS_URL = "status";

  const $ = (id) => document.getElementById(id);
  const root = document.documentElement;
  const main = document.querySelector("main");
  const connection = $("connection");
  const tokenForm = $("token-form");
  const tokenInput = $("token");
  const tokenMessage = $("token-message");
  const forgetButton = $("forget-token");
  const pauseButton = $("pause");
  const tbody = document.querySelector("#services tbody");
  const restartsHeader = document.querySelector("#services .col-restarts");

  let timer = null;
  let inflight = false;
  let paused = false;
  let needToken = false;
  let polls = 0;
  let failingSince = null;
  let lastGood = null;
  let filter = null;
  let lastData = null;

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  function clock(date) {
    return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "never";
    if (seconds < 10) return seconds.toFixed(1) + " s ago";
    if (seconds < 60) return Math.round(seconds) + " s ago";
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min " + Math.round(seconds % 60) + " s ago";
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return hours + " h " + (minutes % 60) + " min ago";
    return Math.floor(hours / 24) + " d ago";
  }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }

  function setToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: the token lives only as long as this page */ }
    forgetButton.hidden = !value;
  }

  function say(text, kind) {
    connection.textContent = text || "";
    connection.className = "connection" + (kind ? " " + kind : "");
  }

  function askForToken(message) {
    needToken = true;
    tokenMessage.textContent = message;
    tokenForm.hidden = false;
    say(message, "problem");
    tokenInput.focus();
  }

  function badge(status) {
    const word = String(status);
    return el("span", word, "badge " + (STATUSES.includes(word) ? word : "unknown"));
  }

  function cell(label, child, className) {
    const td = el("td", null, className);
    td.dataset.label = label;
    if (child instanceof Node) td.appendChild(child); else td.textContent = child;
    return td;
  }

  function renderCounts(data) {
    const list = $("counts");
    const counts = data.counts || {};
    const names = STATUSES.concat(Object.keys(counts).filter((s) => !STATUSES.includes(s)));
    if (!list.dataset.built) {
      // Built once and updated in place, so keyboard focus stays on a button across refreshes.
      list.dataset.built = "1";
      for (const status of [null].concat(names)) {
        const button = el("button");
        button.type = "button";
        button.dataset.status = status === null ? "" : status;
        button.setAttribute("aria-pressed", String(status === filter));
        button.append(el("span", status === null ? "all" : status, status === null ? "" : "word"), el("span", "", "n"));
        button.addEventListener("click", () => { filter = status; renderCounts(lastData); renderServices(lastData); });
        const item = el("li");
        item.appendChild(button);
        list.appendChild(item);
      }
    }
    for (const button of list.querySelectorAll("button")) {
      const status = button.dataset.status || null;
      const n = status === null ? data.total : (counts[status] || 0);
      button.querySelector(".n").textContent = String(n);
      button.setAttribute("aria-pressed", String(status === filter));
    }
  }

  function renderServices(data) {
    const services = data.services || [];
    const shown = filter === null ? services : services.filter((s) => s.status === filter);
    const restarts = services.some((s) => typeof s.restarts === "number");
    restartsHeader.hidden = !restarts;
    const rows = shown.map((s) => {
      const tr = el("tr");
      tr.dataset.id = s.id;
      tr.dataset.status = s.status;
      const name = el("span");  // one grid item on phones: the version stays beside the name
      name.appendChild(el("span", s.name, "name"));
      if (s.version) name.appendChild(el("span", s.version, "version"));
      const attempt = s.attempt ? s.attempt + " of " + data.max_attempts : "\u2013";
      tr.append(
        cell("Status", badge(s.status)),
        cell("Name", name),
        cell("ID", el("code", s.id, "id")),
        cell("Last heartbeat", ago(s.seconds_since_heartbeat), "num"),
        cell("Reconnect attempt", attempt, "num"),
      );
      if (restarts) tr.appendChild(cell("Restarts", typeof s.restarts === "number" ? s.restarts : "\u2013", "num"));
      return tr;
    });
    tbody.replaceChildren(...rows);
    $("no-services").hidden = shown.length > 0;
    $("no-services").textContent = filter === null ? "No services." : "No " + filter + " services.";
    $("services-caption").textContent = filter === null
      ? "Services, in registration order" : "Services whose status is " + filter;
  }

  function renderEvents(data) {
    const items = (data.events || []).map((e) => {
      const li = el("li");
      const when = new Date(e.time * 1000);
      const time = el("time", clock(when));
      time.dateTime = when.toISOString();
      time.title = ago(e.seconds_ago);
      const what = el("span", null, "what");
      what.append(
        el("span", e.event.replace(/_/g, " ") + (e.origin ? " @ " + e.origin : ""), "kind"),
        " ",  // a real space, so copied text and screen readers keep the words apart
        el("span", (e.name || e.service_id) + (e.summary ? ": " + e.summary : "")),
      );
      li.append(time, what);
      return li;
    });
    $("events").replaceChildren(...items);
    $("no-events").hidden = items.length > 0;
  }

  function holderText(data, leader) {
    const who = leader.pid === null || leader.pid === undefined
      ? String(leader.host) : "process " + leader.pid + " on " + leader.host;
    const here = leader.pid === data.pid && leader.host === data.host;
    return who + (here ? " (this one)" : "");
  }

  // The lease holder as the registry names it, so every worker's answer reads the same; a
  // partitioned namespace has one lease per partition, so one holder each ("p1 none": nobody).
  function leaderText(data) {
    if (Array.isArray(data.leaders)) {
      return "leaders: " + data.leaders.map((leader, p) =>
        "p" + p + " " + (leader === null || leader === undefined ? "none" : holderText(data, leader))).join(", ");
    }
    const leader = data.leader;
    if (leader === null || leader === undefined) return "no process leads";
    if (leader === true) return "this process leads";  // a server from before the leader had a name
    if (leader === false) return "another process leads";
    return "leader: " + holderText(data, leader);
  }

  function renderScope(data) {
    const parts = [];
    if (data.scope === "fleet") {
      parts.push("Fleet, as seen by process " + data.pid);
      parts.push(leaderText(data));
    } else {
      parts.push("Process " + data.pid);
    }
    if (data.closed) parts.push("manager shut down");
    parts.push("updated " + clock(new Date()));
    parts.push(paused ? "updates paused" : "refreshing every " + INTERVAL / 1000 + " s");
    $("scope").textContent = parts.join(" \u00b7 ");
  }

  function render(data) {
    lastData = data;
    renderScope(data);
    renderCounts(data);
    renderServices(data);
    renderEvents(data);
  }

  function unreachable(reason) {
    if (failingSince === null) failingSince = new Date();
    main.classList.add("stale");
    const since = "since " + clock(failingSince);
    const shown = lastGood ? "; the data below is from " + clock(lastGood) : "";
    say("Cannot reach the server (" + reason + ") " + since + ". Retrying every " + INTERVAL / 1000 + " s" + shown + ".", "problem");
  }

  async function poll() {
    if (inflight) return;
    inflight = true;
    clearTimeout(timer);
    const controller = new AbortController();
    const abort = setTimeout(() => controller.abort(), Math.max(5000, 2 * INTERVAL));
    const headers = { "Accept": "application/json" };
    const sent = token();
    if (sent) headers["Authorization"] = "Bearer " + sent;
    try {
      let response;
      try {
        response = await fetch(STATUS_URL, { headers, cache: "no-store", credentials: "same-origin", signal: controller.signal });
      } catch (e) {
        unreachable(controller.signal.aborted ? "no answer in time" : "network error");
        return;
      }
      let body = null;
      try { body = await response.json(); } catch (e) { body = null; }
      if (response.status === 401) {
        setToken(null);
        askForToken("This server needs a bearer token (its HEARTBEAT_TOKEN setting). Enter it to see the services.");
        return;
      }
      if (response.status === 403 && sent) {
        setToken(null);
        askForToken("The server refused this token (403 forbidden): it is not the right one. Enter the token again.");
        return;
      }
      if (response.status === 403) {
        const detail = body && body.message ? ": " + body.message : "";
        say("The server refused access (403 forbidden" + detail + "). Sign in to the application, then choose Refresh now.", "problem");
        return;
      }
      if (!response.ok || !body || !Array.isArray(body.services)) {
        const detail = body && body.message ? ": " + body.message : "";
        unreachable("it answered " + response.status + detail);
        return;
      }
      const wasFailing = failingSince !== null;
      failingSince = null;
      lastGood = new Date();
      main.classList.remove("stale");
      tokenForm.hidden = true;
      say(wasFailing ? "Connected again at " + clock(lastGood) + "." : "", wasFailing ? "info" : "");
      render(body);
    } finally {
      clearTimeout(abort);
      inflight = false;
      polls += 1;
      root.dataset.polls = String(polls);
      schedule();
    }
  }

  function schedule() {
    clearTimeout(timer);
    if (!paused && !needToken) timer = setTimeout(poll, INTERVAL);
  }

  tokenForm.addEventListener("submit", (event) => {
    event.preventDefault();  // the token goes into a header, never into a URL
    const value = tokenInput.value.trim();
    if (!value) return;
    tokenInput.value = "";
    setToken(value);
    needToken = false;
    tokenForm.hidden = true;
    say("Checking the token\u2026", "info");
    poll();
  });

  forgetButton.addEventListener("click", () => {
    setToken(null);
    poll();
  });

  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.setAttribute("aria-pressed", String(paused));
    pauseButton.textContent = paused ? "Resume updates" : "Pause updates";
    if (lastData) renderScope(lastData);
    schedule();
  });

  $("refresh-now").addEventListener("click", () => poll());

  setToken(token());
  poll();
})();

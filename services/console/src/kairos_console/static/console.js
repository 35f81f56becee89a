// The Kairos console's only script: what needs a browser beyond forms. Every page works
// without it; it adds live updates, live character counts and dragging on the calendar.
"use strict";

const Kairos = {
  csrf() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  },

  // A request of the console's own, with the CSRF token; resolves to the Response.
  send(url, options = {}) {
    const headers = new Headers(options.headers || {});
    headers.set("X-Requested-With", "kairos-console");
    if (options.method && options.method !== "GET") headers.set("X-CSRF-Token", Kairos.csrf());
    return fetch(url, { credentials: "same-origin", ...options, headers });
  },

  // Replace an element's content with a fragment the console renders. Refreshes may overlap (a
  // fragment takes several api calls): only the latest one asked for is shown.
  async refresh(element, url) {
    const mine = (element.kairosAsked = (element.kairosAsked || 0) + 1);
    const response = await Kairos.send(url);
    if (Kairos.signedOut(response)) return;
    const text = response.ok ? await response.text() : null;
    if (text !== null && mine === element.kairosAsked) element.innerHTML = text;
  },

  // Whether the session has ended (the console answered 401); if so, go and sign in again.
  signedOut(response) {
    if (response.status !== 401) return false;
    const here = window.location.pathname + window.location.search;
    window.location.assign(`/login?next=${encodeURIComponent(here)}`);
    return true;
  },

  onReady: [],
};

// The sign-in form's zone: the browser's own, unless the user typed another.
Kairos.onReady.push(() => {
  const field = document.querySelector("[data-browser-zone]");
  if (!field) return;
  try {
    const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    if (zone && field.value === "UTC") field.value = zone;
  } catch (ignored) { /* an old browser: UTC stays */ }
});

// Live regions: re-rendered when the tenant's events arrive (Server-Sent Events from /events,
// which follows the api's WatchEvents), or every 10 s when the stream cannot be opened.
Kairos.onReady.push(() => {
  const live = document.querySelectorAll("[data-live]");
  if (!live.length) return;
  let pending = null;
  const refreshAll = () => {
    if (pending) return;
    pending = setTimeout(() => {
      pending = null;
      live.forEach((element) => Kairos.refresh(element, element.dataset.live));
    }, 250);
  };
  let polling = null;
  const poll = () => { if (!polling) polling = setInterval(refreshAll, 10000); };
  if (!("EventSource" in window)) { poll(); return; }
  const source = new EventSource("/events");
  let opened = false;
  source.addEventListener("lifecycle", refreshAll);
  source.addEventListener("open", () => {
    document.body.dataset.live = "on";
    if (polling) { clearInterval(polling); polling = null; }
    // Back after a break: what happened meanwhile sent no event to this page.
    if (opened) refreshAll();
    opened = true;
  });
  source.addEventListener("error", () => { document.body.dataset.live = "off"; poll(); });
  // The api will not stream to this key (refused, or too many watches): poll instead, for good.
  source.addEventListener("ended", () => {
    source.close();
    document.body.dataset.live = "off";
    poll();
  });
});

// Character counts as the api counts them: a form with `data-check="<url>"` is sent there (its
// text fields; files stay), with the account of each `[data-count-for="<account id>"]`, a moment
// after each change; the answer (ValidatePost's counts) fills those outputs.
Kairos.onReady.push(() => {
  const form = document.querySelector("form[data-check]");
  if (!form) return;
  let timer = null;
  let asked = 0;
  const check = async () => {
    const data = new FormData();
    for (const [name, value] of new FormData(form).entries()) {
      if (typeof value === "string") data.append(name, value);
    }
    form.querySelectorAll("[data-count-for]").forEach((output) => {
      data.append("count_for", output.dataset.countFor);
    });
    const mine = ++asked;
    let response;
    try {
      response = await Kairos.send(form.dataset.check, { method: "POST", body: data });
    } catch (ignored) { return; }
    if (Kairos.signedOut(response) || !response.ok || mine !== asked) return;
    const result = await response.json();
    form.querySelectorAll("[data-count-for]").forEach((output) => {
      output.textContent = "";
      output.classList.remove("over");
    });
    for (const target of result.targets) {
      const output = form.querySelector(`[data-count-for="${CSS.escape(target.account_id)}"]`);
      if (!output) continue;
      output.textContent = `${target.length} / ${target.max_length} ${target.unit}`;
      output.classList.toggle("over", target.length > target.max_length);
    }
  };
  form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(check, 300); });
  check();
});

document.addEventListener("DOMContentLoaded", () => Kairos.onReady.forEach((start) => start()));

/* kapjournal service worker. Caches ONLY the public shell: static files, the scripts' words in
   each language (/i18n/<lang>.json), and in each language (English plain, the others with their
   ?lang=) /offline, /help (the crisis page) and the login-free writing forms /write-offline and
   /capture-offline (no names, no CSRF token). Never cache any other response: authenticated
   HTML and decrypted text must not be stored. Offline, a visit to /entries/new?kind=reflection
   or ?kind=check_in gets that writing form; what is written there waits in drafts.js's
   encrypted queue. The offline pages come in the language of the address (?lang=), else of the
   last page seen online (its Content-Language), else of the phone. Push messages (reminders)
   become notifications.
   Bump CACHE when any precached file changes. */
"use strict";

const CACHE = "kapjournal-shell-v10"; // v10: table cells wrap long words; v9: logical sides (RTL), offline pages per language
// The languages the app speaks (kapjournal/i18n.py's LANGUAGES), English, the default, first.
const LANGS = ["en", "es"];
const WRITE = ["/write-offline?kind=reflection", "/write-offline?kind=check_in", "/capture-offline"];
const SHELL = ["/offline", "/help"].concat(WRITE);
// A shell page's copy in `lang`: English is the plain address (base.html links plain /help).
const inLang = (page, lang) =>
  lang === LANGS[0] ? page : page + (page.includes("?") ? "&" : "?") + "lang=" + lang;
const PAGES = LANGS.flatMap((lang) => SHELL.map((page) => inLang(page, lang)));
const CATALOGUES = LANGS.slice(1).map((lang) => "/i18n/" + lang + ".json");
const LANG_KEY = "/i18n/last-page-language"; // not a route: where the last page's language is kept
const PRECACHE = [
  "/static/css/app.css",
  "/static/js/app.js",
  "/static/js/drafts.js",
  "/static/js/offline.js",
  "/static/js/plan.js",
  "/static/js/push.js",
  "/static/js/recorder.js", // after the session: helper CAPTURE
  "/static/js/htmx.min.js",
  "/static/icons/icon-192.png",
  "/static/icons/icon-512.png",
  "/static/icons/maskable-512.png",
  "/static/icons/icon.svg",
].concat(CATALOGUES, PAGES);

// Marks the service worker's own words for the catalogue (pybabel); `say` translates them.
const t = (msgid) => msgid;

// Fetched without cookies, so the cached pages are always the anonymous versions; an English
// page is asked for as ?lang=en, so that a phone set to another language keeps it in English.
function shellRequest(path) {
  const english = PAGES.includes(path) && !/[?&]lang=/.test(path);
  const source = english ? path + (path.includes("?") ? "&" : "?") + "lang=" + LANGS[0] : path;
  return new Request(source, { credentials: "omit", cache: "reload", redirect: "error" });
}

async function precache() {
  const cache = await caches.open(CACHE);
  await Promise.all(PRECACHE.map(async (path) => {
    const res = await fetch(shellRequest(path));
    if (!res.ok) throw new Error("precache " + path);
    await cache.put(path, res);
  }));
}

self.addEventListener("install", (event) => {
  self.skipWaiting();
  event.waitUntil(precache());
});

self.addEventListener("activate", (event) => {
  event.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim())
  );
});

async function cacheFirst(request) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request, { ignoreVary: true });
  return hit || fetch(request); // not stored: only the precache lives in the cache
}

async function refreshPage(page) {
  try {
    const res = await fetch(shellRequest(page));
    if (res.ok && res.type === "basic") {
      const cache = await caches.open(CACHE);
      await cache.put(page, res);
    }
  } catch (err) {
    // offline again: keep the cached copy
  }
}

// The catalogue: from the cache at once, refreshed from the network behind it (a new
// translation arrives without a new service worker).
function catalogue(event) {
  const key = new URL(event.request.url).pathname;
  const fresh = fetch(event.request).then(async (res) => {
    if (res.ok && res.type === "basic") await (await caches.open(CACHE)).put(key, res.clone());
    return res;
  });
  event.waitUntil(fresh.catch(() => undefined)); // offline: the cached copy stays
  return caches.open(CACHE)
    .then((cache) => cache.match(key, { ignoreVary: true }))
    .then((hit) => hit || fresh);
}

// --- languages ---------------------------------------------------------------------------------

const spoken = (code) => {
  const lang = String(code || "").toLowerCase().split("-")[0];
  return LANGS.includes(lang) ? lang : null;
};

let lastLanguage; // the language of the last page seen online, also kept in the cache
async function rememberLanguage(res) {
  const lang = spoken(res && res.ok && res.headers.get("Content-Language"));
  if (!lang || lang === lastLanguage) return;
  lastLanguage = lang;
  const cache = await caches.open(CACHE);
  await cache.put(LANG_KEY, new Response(lang, { headers: { "Content-Type": "text/plain" } }));
}

// The language for an offline answer to `url`: the address's ?lang=, else the last page's,
// else the phone's, else English.
async function languageFor(url) {
  const asked = url && spoken(url.searchParams.get("lang"));
  if (asked) return asked;
  if (!lastLanguage) {
    const kept = await (await caches.open(CACHE)).match(LANG_KEY);
    lastLanguage = spoken(kept && (await kept.text()));
  }
  if (lastLanguage) return lastLanguage;
  for (const code of self.navigator.languages || [self.navigator.language]) {
    if (spoken(code)) return spoken(code);
  }
  return LANGS[0];
}

// One of the service worker's own messages in `lang`, from the cached catalogue.
async function say(lang, msgid) {
  if (lang === LANGS[0]) return msgid;
  try {
    const hit = await (await caches.open(CACHE)).match("/i18n/" + lang + ".json");
    const found = hit && (await hit.json()).messages[msgid];
    return typeof found === "string" && found ? found : msgid;
  } catch (err) {
    return msgid;
  }
}

// --- offline -----------------------------------------------------------------------------------

// The shell page (in English form) standing in for `url` when the network is gone.
function standIn(url) {
  const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, "") : url.pathname;
  if (path === "/help") return "/help";
  if (path === "/capture" || path === "/capture-offline") return "/capture-offline";
  if (path === "/entries/new" || path === "/write-offline") {
    const page = "/write-offline?kind=" + (url.searchParams.get("kind") || "reflection");
    if (WRITE.includes(page)) return page;
  }
  return "/offline";
}

async function offlinePage(url) {
  const cache = await caches.open(CACHE), lang = await languageFor(url), page = standIn(url);
  for (const key of [inLang(page, lang), page, inLang("/offline", lang), "/offline"]) {
    const hit = await cache.match(key, { ignoreVary: true });
    if (hit) return hit;
  }
  const text = await say(lang, t("You are offline. If you need help now, call or text 988, or call 911."));
  return new Response(text, {
    status: 503,
    headers: { "Content-Type": "text/plain; charset=utf-8", "Content-Language": lang },
  });
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/static/")) {
    event.respondWith(cacheFirst(request));
  } else if (CATALOGUES.includes(url.pathname)) {
    event.respondWith(catalogue(event));
  } else if (request.mode === "navigate") {
    // Network first; the response itself is never stored (only the language it was in).
    const network = fetch(request);
    event.respondWith(network.catch(() => offlinePage(url)));
    const page = url.pathname + url.search;
    event.waitUntil(network.then(async (res) => {
      await rememberLanguage(res);
      // Refresh the anonymous copy of a shell page after a successful visit.
      if (res.ok && PAGES.includes(page)) await refreshPage(page);
    }, () => undefined));
  }
});

// --- reminders ---------------------------------------------------------------------------------

function sameOriginPath(value) {
  return typeof value === "string" && value.startsWith("/") && !value.startsWith("//") ? value : "/";
}

self.addEventListener("push", (event) => {
  let message = {};
  try {
    message = event.data ? event.data.json() : {};
  } catch (err) {
    message = {};
  }
  const show = async () => {
    // The server writes reminders in their reader's language; only a missing title is ours.
    const title = message.title || (await say(await languageFor(null), t("Your journal")));
    return self.registration.showNotification(String(title), {
      body: String(message.body || ""),
      icon: "/static/icons/icon-192.png",
      badge: "/static/icons/icon-192.png",
      tag: String(message.tag || "kapjournal"),
      data: { url: sameOriginPath(message.url) },
    });
  };
  event.waitUntil(show());
});

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const target = new URL(sameOriginPath(event.notification.data && event.notification.data.url), self.location.origin);
  event.waitUntil(
    self.clients.matchAll({ type: "window", includeUncontrolled: true }).then((windows) => {
      for (const win of windows) {
        if (new URL(win.url).origin === self.location.origin && "focus" in win) {
          return win.focus().then((w) => (w && "navigate" in w ? w.navigate(target.href) : w));
        }
      }
      return self.clients.openWindow(target.href);
    })
  );
});

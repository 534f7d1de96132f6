/* kapjournal service worker. Caches ONLY the public shell: static files, /offline, /help (and
   /help?lang=es, the crisis page in Spanish) and the login-free writing forms /write-offline
   and /capture-offline (no names, no CSRF token). Never cache any other response: authenticated HTML and decrypted
   text must not be stored. Offline, a visit to /entries/new?kind=reflection or ?kind=check_in
   gets that writing form; what is written there waits in drafts.js's encrypted queue. Push
   messages (reminders) become notifications.
   Bump CACHE when any precached file changes. */
"use strict";

const CACHE = "kapjournal-shell-v8";
const WRITE = ["/write-offline?kind=reflection", "/write-offline?kind=check_in", "/capture-offline"];
// The crisis page in each language (English is plain /help; base.html links to the page's own).
const PAGES = ["/offline", "/help", "/help?lang=es"].concat(WRITE);
const HELP = PAGES.filter((page) => page.startsWith("/help"));
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
].concat(PAGES);

// Fetched without cookies, so the cached pages are always the anonymous versions.
function shellRequest(path) {
  return new Request(path, { credentials: "omit", cache: "reload", redirect: "error" });
}

self.addEventListener("install", (event) => {
  self.skipWaiting();
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(PRECACHE.map(shellRequest))));
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

// The cached page standing in for `url` when the network is gone.
function standIn(url) {
  const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, "") : url.pathname;
  if (path === "/help") {
    const page = "/help" + (url.searchParams.get("lang") ? "?lang=" + url.searchParams.get("lang") : "");
    return HELP.includes(page) ? page : "/help";
  }
  if (path === "/capture" || path === "/capture-offline") return "/capture-offline";
  if (path === "/entries/new" || path === "/write-offline") {
    const page = "/write-offline?kind=" + (url.searchParams.get("kind") || "reflection");
    if (WRITE.includes(page)) return page;
  }
  return "/offline";
}

async function offlinePage(url) {
  const cache = await caches.open(CACHE);
  const hit = (await cache.match(standIn(url), { ignoreVary: true })) ||
    (await cache.match("/offline", { ignoreVary: true }));
  return hit || new Response("You are offline. If you need help now, call or text 988, or call 911.", {
    status: 503,
    headers: { "Content-Type": "text/plain; charset=utf-8" },
  });
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  if (request.method !== "GET") return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.startsWith("/static/")) {
    event.respondWith(cacheFirst(request));
  } else if (request.mode === "navigate") {
    // Network first; the response itself is never stored.
    const network = fetch(request);
    event.respondWith(network.catch(() => offlinePage(url)));
    const page = url.pathname + url.search;
    if (PAGES.includes(page)) {
      // Refresh the anonymous copy of a shell page after a successful visit.
      event.waitUntil(network.then((res) => (res.ok ? refreshPage(page) : undefined), () => undefined));
    }
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
  event.waitUntil(self.registration.showNotification(String(message.title || "Your journal"), {
    body: String(message.body || ""),
    icon: "/static/icons/icon-192.png",
    badge: "/static/icons/icon-192.png",
    tag: String(message.tag || "kapjournal"),
    data: { url: sameOriginPath(message.url) },
  }));
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

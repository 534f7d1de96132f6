/* kapjournal service worker. Caches ONLY the public shell: static files, /offline and /help.
   Never cache any other response: authenticated HTML and decrypted text must not be stored.
   Bump CACHE when any precached file changes. */
"use strict";

const CACHE = "kapjournal-shell-v2";
const PAGES = ["/offline", "/help"];
const PRECACHE = [
  "/static/css/app.css",
  "/static/js/app.js",
  "/static/js/drafts.js",
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

async function refreshPage(path) {
  try {
    const res = await fetch(shellRequest(path));
    if (res.ok && res.type === "basic") {
      const cache = await caches.open(CACHE);
      await cache.put(path, res);
    }
  } catch (err) {
    // offline again: keep the cached copy
  }
}

async function offlinePage(path) {
  const cache = await caches.open(CACHE);
  const page = path === "/help" ? "/help" : "/offline";
  const hit = (await cache.match(page, { ignoreVary: true })) ||
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
    const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, "") : url.pathname;
    const network = fetch(request);
    event.respondWith(network.catch(() => offlinePage(path)));
    if (PAGES.includes(path)) {
      // Refresh the anonymous copy of /help or /offline after a successful visit.
      event.waitUntil(network.then((res) => (res.ok ? refreshPage(path) : undefined), () => undefined));
    }
  }
});

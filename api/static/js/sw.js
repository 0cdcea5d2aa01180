/* Pass numérique — service worker of the mediator's pages (scope /mediateur).
 *
 * Keeps the scan page and its assets available without network: static files are served from
 * the cache and refreshed in the background; pages are asked to the network first and, when it
 * is gone, the last copy of the scan page (stored by the page itself) is shown. API calls and
 * form posts are never cached: offline scans wait in IndexedDB (see scan.js).
 */
"use strict";

var ASSETS = "passnum-scan-assets-v2";
var PAGES = "passnum-scan-pages";
var PRECACHE = [
  "/static/vendor/dsfr/dsfr.min.css",
  "/static/vendor/dsfr/utility/icons/icons.min.css",
  "/static/vendor/dsfr/dsfr.module.min.js",
  "/static/vendor/dsfr/dsfr.nomodule.min.js",
  "/static/vendor/dsfr/fonts/Marianne-Regular.woff2",
  "/static/vendor/dsfr/fonts/Marianne-Bold.woff2",
  "/static/vendor/dsfr/fonts/Marianne-Medium.woff2",
  "/static/vendor/dsfr/favicon/favicon.svg",
  "/static/vendor/dsfr/icons/system/checkbox-circle-fill.svg",
  "/static/vendor/dsfr/icons/system/close-circle-fill.svg",
  "/static/vendor/dsfr/icons/system/time-line.svg",
  "/static/vendor/dsfr/icons/system/information-fill.svg",
  "/static/vendor/dsfr/icons/system/check-line.svg",
  "/static/vendor/jsqr/jsQR.js",
  "/static/css/passnum.css",
  "/static/js/scan.js"
];

self.addEventListener("install", function (event) {
  event.waitUntil(
    caches.open(ASSETS).then(function (cache) { return cache.addAll(PRECACHE); }).then(function () {
      return self.skipWaiting();
    })
  );
});

self.addEventListener("activate", function (event) {
  event.waitUntil(
    caches.keys().then(function (names) {
      return Promise.all(names.filter(function (name) {
        return name.indexOf("passnum-scan-assets-") === 0 && name !== ASSETS;
      }).map(function (name) { return caches.delete(name); }));
    }).then(function () { return self.clients.claim(); })
  );
});

function fromCacheThenRefresh(request) {
  return caches.open(ASSETS).then(function (cache) {
    return cache.match(request, { ignoreSearch: true }).then(function (cached) {
      var refresh = fetch(request).then(function (response) {
        if (response.ok) cache.put(request, response.clone());
        return response;
      });
      if (cached) {
        refresh.catch(function () {});
        return cached;
      }
      return refresh;
    });
  });
}

function networkThenScanPage(request) {
  return fetch(request).catch(function () {
    return caches.open(PAGES).then(function (cache) {
      return cache.match("/mediateur");
    }).then(function (cached) {
      return cached || new Response(
        "<!doctype html><html lang=\"fr\"><meta charset=\"utf-8\"><title>Hors ligne — Pass numérique</title>" +
        "<h1>Pas de réseau</h1><p>Ouvrez la page de scan une fois avec du réseau pour pouvoir l'utiliser hors ligne.</p></html>",
        { status: 503, headers: { "Content-Type": "text/html; charset=utf-8" } }
      );
    });
  });
}

self.addEventListener("fetch", function (event) {
  var request = event.request;
  if (request.method !== "GET") return;
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (url.pathname.indexOf("/static/") === 0) {
    event.respondWith(fromCacheThenRefresh(request));
  } else if (request.mode === "navigate") {
    event.respondWith(networkThenScanPage(request));
  }
});

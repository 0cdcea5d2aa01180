/* Pass numérique — the mediator's scan page.
 *
 * Reads a cheque's QR code with the camera (BarcodeDetector when the browser has one, jsQR
 * otherwise) or takes its typed number, and sends it to the server, which decides and renders
 * the result. Without network, the scan is kept in IndexedDB ("à synchroniser") and sent later
 * through POST /api/v1/redemptions/batch. No rule about cheques lives here: the server judges.
 */
(function () {
  "use strict";

  var root = document.getElementById("scanner");
  if (!root) return;
  var form = document.getElementById("form-encaissement");
  var codeInput = document.getElementById("champ-code");
  var keyInput = form.querySelector("input[name=idempotency_key]");
  var result = document.getElementById("resultat");
  var network = document.getElementById("etat-reseau");
  var queueBox = document.getElementById("a-synchroniser");
  var queueList = document.getElementById("liste-a-synchroniser");
  var queueCount = document.getElementById("nombre-a-synchroniser");
  var syncButton = document.getElementById("bouton-synchroniser");
  var syncReport = document.getElementById("rapport-synchronisation");
  var cameraButton = document.getElementById("bouton-camera");
  var cameraBox = document.getElementById("camera");
  var video = document.getElementById("video-camera");
  var cameraStatus = document.getElementById("etat-camera");
  var userId = root.getAttribute("data-user-id");
  var demarcheBox = document.getElementById("choix-demarche");
  var demarcheSummary = document.getElementById("resume-demarche");
  var CHOICE_KEY = "passnum-scan-choix-" + userId;
  var handled = {}; // cheques (by serial) this page already sent or queued
  var DB_NAME = "passnum-scan";
  var STORE = "scans";
  var syncing = false;

  /* ------------------------------------------------------------------ helpers */

  function uuid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function csrfToken() {
    var match = document.cookie.match(/(?:^|;\s*)passnum_csrf=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function checkedValue(name) {
    var input = form.querySelector("input[name=" + name + "]:checked");
    return input ? input.value : "";
  }

  function labelOf(name, value) {
    var input = form.querySelector("input[name=" + name + "][value='" + value + "']");
    var label = input && form.querySelector("label[for='" + input.id + "']");
    return label ? label.textContent.trim() : value;
  }

  function showResult(html) {
    result.innerHTML = html;
    var panel = result.querySelector(".pn-result");
    if (panel) panel.focus({ preventScroll: false });
  }

  function escapeHtml(text) {
    var div = document.createElement("div");
    div.textContent = text == null ? "" : String(text);
    return div.innerHTML;
  }

  /* ------------------------------------------------------------------ what a code is
   * Only to show and compare codes on this phone: the server alone decides (it verifies the
   * signature). Formats: pass_/codes.py (serial) and pass_/tokens.py (PN1: token). */

  var CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
  var BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

  function gf32Mul(a, b) { // GF(2⁵) modulo x⁵ + x² + 1, as pass_/codes.py
    var product = 0;
    while (b) {
      if (b & 1) product ^= a;
      b >>= 1;
      a <<= 1;
      if (a & 32) a ^= 37;
    }
    return product;
  }

  var WEIGHTS = [];
  (function () {
    for (var i = 0; i < 13; i++) {
      var w = 1;
      for (var k = 0; k < 12 - i; k++) w = gf32Mul(w, 2);
      WEIGHTS.push(w);
    }
  })();

  function formatSerial(symbols) {
    return "PN-" + symbols.slice(0, 4) + "-" + symbols.slice(4, 8) + "-" + symbols.slice(8, 12) + "-" + symbols.charAt(12);
  }

  function syndrome(symbols) {
    var total = 0;
    for (var i = 0; i < 13; i++) total ^= gf32Mul(WEIGHTS[i], CROCKFORD.indexOf(symbols.charAt(i)));
    return total;
  }

  // The serial carried by a PN1: token (60 bits after version u8 and kid u16), or null.
  function serialOfToken(code) {
    var text = String(code || "").trim();
    if (text.length !== 140 || text.slice(0, 4).toUpperCase() !== "PN1:") return null;
    var bits = [];
    for (var i = 4; i < 4 + 18; i++) { // 90 bits cover version, kid and serial
      var v = BASE32.indexOf(text.charAt(i).toUpperCase());
      if (v < 0) return null;
      for (var k = 4; k >= 0; k--) bits.push((v >> k) & 1);
    }
    if (bits.slice(0, 8).join("") !== "00000001") return null;
    var data = "";
    for (var s = 0; s < 12; s++) {
      var value = 0;
      for (var b = 0; b < 5; b++) value = (value << 1) | bits[28 + 5 * s + b];
      data += CROCKFORD.charAt(value);
    }
    return formatSerial(data + CROCKFORD.charAt(syndrome(data + "0")));
  }

  // A typed serial in its printed form (any case, separators, PN prefix, O/I/L aliases), or null.
  function serialOfTyped(code) {
    var text = String(code || "").toUpperCase().replace(/[\s\-‐‑‒–—−_.]+/g, "")
      .replace(/O/g, "0").replace(/[IL]/g, "1");
    if (text.length === 15 && text.slice(0, 2) === "PN") text = text.slice(2);
    if (!/^[0-9A-HJKMNP-TV-Z]{13}$/.test(text) || syndrome(text) !== 0) return null;
    return formatSerial(text);
  }

  // The booklet cover's QR opens /mon-pass/<number> on a phone (covers printed before that
  // hold the bare number CN-XXXX-XXXX, pass_/issuance.py): it is not a cheque.
  function isBookletCover(code) {
    var text = String(code || "").trim();
    return /\/mon-pass\/[^\/?#\s]+/i.test(text) || /^CN-[0-9A-Z]{4}-[0-9A-Z]{4}$/i.test(text);
  }

  function chequeKey(code) {
    return serialOfToken(code) || serialOfTyped(code) || String(code || "").trim().toUpperCase();
  }

  function shortCode(code) {
    var serial = serialOfToken(code) || serialOfTyped(code);
    if (serial) return serial;
    code = String(code || "").trim();
    return code.length > 24 ? "QR code " + code.slice(0, 8) + "…" : code.toUpperCase();
  }

  /* ------------------------------------------------------------------ IndexedDB queue */

  function openDb() {
    return new Promise(function (resolve, reject) {
      var request = indexedDB.open(DB_NAME, 1);
      request.onupgradeneeded = function () {
        request.result.createObjectStore(STORE, { keyPath: "idempotency_key" });
      };
      request.onsuccess = function () { resolve(request.result); };
      request.onerror = function () { reject(request.error); };
    });
  }

  function withStore(mode, work) {
    return openDb().then(function (db) {
      return new Promise(function (resolve, reject) {
        var tx = db.transaction(STORE, mode);
        var out = work(tx.objectStore(STORE));
        tx.oncomplete = function () { db.close(); resolve(out && out.result !== undefined ? out.result : out); };
        tx.onerror = function () { db.close(); reject(tx.error); };
      });
    });
  }

  function queued() {
    return withStore("readonly", function (store) { return store.getAll(); }).then(function (items) {
      return (items || []).filter(function (item) { return item.user_id === userId; })
        .sort(function (a, b) { return a.scanned_at < b.scanned_at ? -1 : 1; });
    });
  }

  function enqueue(item) {
    return withStore("readwrite", function (store) { return store.put(item); });
  }

  function dequeue(keys) {
    return withStore("readwrite", function (store) {
      keys.forEach(function (key) { store.delete(key); });
    });
  }

  function renderQueue() {
    return queued().then(function (items) {
      queueCount.textContent = String(items.length);
      queueBox.hidden = items.length === 0;
      queueList.innerHTML = items.map(function (item) {
        var when = new Date(item.scanned_at).toLocaleTimeString("fr-FR", { hour: "2-digit", minute: "2-digit" });
        return "<li>" + escapeHtml(shortCode(item.code)) + " — scanné à " + escapeHtml(when) +
          " — <strong>à synchroniser</strong></li>";
      }).join("");
      return items;
    });
  }

  /* ------------------------------------------------------------------ network state */

  function setNetwork(online) {
    network.textContent = online ? "En ligne" : "Hors ligne : les chèques seront synchronisés au retour du réseau";
    network.className = "pn-network " + (online ? "pn-network--online" : "pn-network--offline");
  }

  /* ------------------------------------------------------------------ redeem */

  function queueScan(item, why) {
    return queued().then(function (items) {
      var key = chequeKey(item.code);
      var twin = items.filter(function (other) { return chequeKey(other.code) === key; })[0];
      if (twin) {
        var when = new Date(twin.scanned_at).toLocaleTimeString("fr-FR", { hour: "2-digit", minute: "2-digit" });
        showResult(
          '<div class="pn-result pn-result--ko" tabindex="-1">' +
          '<p class="pn-result__title">Chèque déjà dans la liste à synchroniser</p>' +
          '<p class="pn-result__detail">' + escapeHtml(shortCode(item.code)) + " a déjà été scanné à " + escapeHtml(when) +
          " : il ne sera envoyé qu'une fois.</p>" +
          '<p class="pn-result__detail"><strong>Que faire ?</strong> Rien pour ce chèque ; passez au chèque suivant.</p></div>'
        );
        return "duplicate";
      }
      return enqueue(item).then(renderQueue).then(function () { return showQueued(item, why); });
    });
  }

  function showQueued(item, why) {
    return Promise.resolve().then(function () {
      showResult(
        '<div class="pn-result pn-result--queued" tabindex="-1">' +
        '<p class="pn-result__title">Chèque à synchroniser</p>' +
        '<p class="pn-result__detail">' + escapeHtml(shortCode(item.code)) + " : " + escapeHtml(why) + "</p>" +
        '<p class="pn-result__detail">Il sera envoyé dès le retour du réseau. Vous pouvez rendre le service ; ' +
        "si le chèque est refusé à la synchronisation, la raison s'affichera ici.</p></div>"
      );
      return "queued";
    });
  }

  function showCoverAnswer() {
    codeInput.value = "";
    showResult(
      '<div class="pn-result pn-result--info" tabindex="-1">' +
      "<p class=\"pn-result__title\">C'est le QR code du carnet : scannez un chèque</p>" +
      '<p class="pn-result__detail">Le QR code de la couverture sert à la personne pour voir ce qui reste sur son pass. ' +
      "Pour encaisser, scannez le QR code d'un des chèques détachables.</p></div>"
    );
  }

  /* Resolves to what happened: "missing", "cover", "duplicate", "queued" or "sent". A cheque
   * sent or queued is remembered, so that the camera then ignores it (see onCameraCode). */
  function submitScan() {
    var code = (codeInput.value || "").trim();
    return sendScan().then(function (what) {
      if (what === "sent" || what === "queued" || what === "duplicate") handled[chequeKey(code)] = true;
      return what;
    });
  }

  function sendScan() {
    var service = checkedValue("service");
    var code = (codeInput.value || "").trim();
    if (isBookletCover(code)) {
      showCoverAnswer();
      return Promise.resolve("cover");
    }
    if (!service) {
      showResult('<div class="pn-result pn-result--ko" tabindex="-1"><p class="pn-result__title">Choisissez le service rendu</p>' +
        '<p class="pn-result__detail">Touchez ce qui a été fait (sous le numéro du chèque), puis encaissez.</p></div>');
      return Promise.resolve("missing");
    }
    if (!code) {
      codeInput.focus();
      showResult('<div class="pn-result pn-result--ko" tabindex="-1"><p class="pn-result__title">Numéro manquant</p>' +
        '<p class="pn-result__detail">Scannez le QR code ou saisissez le numéro inscrit sous le QR code.</p></div>');
      return Promise.resolve("missing");
    }
    var item = {
      idempotency_key: keyInput.value || uuid(),
      code: code,
      service: service,
      demarche_family: checkedValue("demarche_family") || null,
      scanned_at: new Date().toISOString(),
      user_id: userId
    };
    keyInput.value = uuid(); // the next scan is another request
    codeInput.value = "";
    if (!navigator.onLine) return queueScan(item, "pas de réseau");
    var body = new FormData();
    body.append("csrf_token", csrfToken());
    body.append("code", item.code);
    body.append("service", item.service);
    if (item.demarche_family) body.append("demarche_family", item.demarche_family);
    body.append("idempotency_key", item.idempotency_key);
    body.append("scanned_at", item.scanned_at);
    return fetch(form.action, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      headers: { "X-Fragment": "1", "X-CSRF-Token": csrfToken() }
    }).then(function (response) {
      if (response.redirected && response.url.indexOf("/connexion") !== -1) {
        return queueScan(item, "votre session a expiré ; reconnectez-vous pour l'envoyer");
      }
      if (response.status >= 500) return queueScan(item, "le service ne répond pas");
      return response.text().then(function (html) {
        showResult(html);
        refreshToday();
        return "sent";
      });
    }, function () {
      return queueScan(item, "pas de réseau");
    });
  }

  function refreshToday() {
    var link = document.getElementById("lien-encaissements");
    if (link && link.dataset.count !== undefined) {
      link.dataset.count = String(Number(link.dataset.count) + 1);
    }
  }

  /* ------------------------------------------------------------------ sync */

  function describe(item, outcome) {
    var ok = outcome.status === "accepted" || outcome.status === "replayed" || outcome.redemption;
    var text = ok
      ? "encaissé" + (outcome.redemption && outcome.redemption.value_cents != null
        ? " — " + (outcome.redemption.value_cents / 100).toLocaleString("fr-FR", { minimumFractionDigits: outcome.redemption.value_cents % 100 ? 2 : 0 }) + " €" : "")
      : "refusé : " + ((outcome.error && outcome.error.message) || "raison inconnue");
    return "<li class=\"" + (ok ? "fr-text--bold" : "") + "\">" + escapeHtml(shortCode(item.code)) + " — " + escapeHtml(text) + "</li>";
  }

  function sync() {
    if (syncing || !navigator.onLine) return Promise.resolve();
    syncing = true;
    return queued().then(function (items) {
      if (!items.length) return null;
      syncButton.disabled = true;
      syncReport.textContent = "Synchronisation en cours…";
      var payload = {
        items: items.map(function (item) {
          return {
            code: item.code,
            service: item.service,
            demarche_family: item.demarche_family,
            scanned_at: item.scanned_at,
            idempotency_key: item.idempotency_key
          };
        })
      };
      return fetch("/api/v1/redemptions/batch", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": csrfToken(), "Accept": "application/json" },
        body: JSON.stringify(payload)
      }).then(function (response) {
        if (response.status === 401) {
          syncReport.textContent = "Votre session a expiré : reconnectez-vous pour envoyer les chèques en attente (ils restent gardés sur ce téléphone).";
          return null;
        }
        if (!response.ok) {
          return response.json().catch(function () { return {}; }).then(function (body) {
            syncReport.textContent = "Synchronisation refusée : " + ((body.error && body.error.message) || ("erreur " + response.status)) + ". Les chèques restent en attente.";
            return null;
          });
        }
        return response.json().then(function (body) {
          var results = body.results || body.items || [];
          var byKey = {};
          results.forEach(function (r) { byKey[r.idempotency_key] = r; });
          var done = items.filter(function (item) { return byKey[item.idempotency_key]; });
          return dequeue(done.map(function (item) { return item.idempotency_key; })).then(function () {
            syncReport.innerHTML = "<p class=\"fr-mb-1w\">Synchronisation terminée (" + done.length + " chèque" + (done.length > 1 ? "s" : "") + ") :</p><ul>" +
              done.map(function (item) { return describe(item, byKey[item.idempotency_key]); }).join("") + "</ul>";
          });
        });
      }, function () {
        syncReport.textContent = "Pas de réseau : nouvel essai au retour de la connexion.";
      });
    }).then(renderQueue, renderQueue).then(function () {
      syncing = false;
      syncButton.disabled = false;
    });
  }

  /* ------------------------------------------------------------------ camera */

  var stream = null;
  var detector = null;
  var canvas = document.createElement("canvas");
  var context2d = canvas.getContext("2d", { willReadFrequently: true });
  var lastCode = "";

  function decodeFrame() {
    if (!stream || video.readyState < 2) return Promise.resolve(null);
    if (detector) {
      return detector.detect(video).then(function (codes) {
        return codes.length ? codes[0].rawValue : null;
      }, function () { return null; });
    }
    var scale = Math.min(1, 640 / (video.videoWidth || 640));
    canvas.width = Math.round((video.videoWidth || 640) * scale);
    canvas.height = Math.round((video.videoHeight || 480) * scale);
    context2d.drawImage(video, 0, 0, canvas.width, canvas.height);
    var image = context2d.getImageData(0, 0, canvas.width, canvas.height);
    var found = window.jsQR && window.jsQR(image.data, image.width, image.height, { inversionAttempts: "attemptBoth" });
    return Promise.resolve(found ? found.data : null);
  }

  /* A code the camera read. A cheque stops the camera at once (issue 16 item 1: a good scan
   * must not turn red because the cheque stayed in front of the lens); "Chèque suivant" opens
   * it again, and the cheque just handled is then ignored if it is still there. */
  function onCameraCode(code) {
    if (code === lastCode) return;
    lastCode = code;
    if (isBookletCover(code)) {
      if (navigator.vibrate) navigator.vibrate(80);
      showCoverAnswer();
      return;
    }
    var key = chequeKey(code);
    if (handled[key]) {
      cameraStatus.textContent = "Ce chèque (" + shortCode(code) + ") vient d'être scanné : présentez le chèque suivant.";
      return;
    }
    if (navigator.vibrate) navigator.vibrate(80);
    stopCamera(true);
    codeInput.value = code;
    submitScan().then(function (what) {
      cameraStatus.textContent = what === "missing" ? "Chèque lu : choisissez ce qui a été fait, puis touchez « Encaisser le chèque »." : "";
    });
  }

  function loop() {
    if (!stream) return;
    decodeFrame().then(function (code) {
      if (code && stream) onCameraCode(code);
      if (stream) requestAnimationFrame(loop);
    });
  }

  function startCamera() {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      cameraStatus.textContent = "Ce navigateur ne permet pas d'utiliser la caméra : saisissez le numéro du chèque.";
      return;
    }
    cameraStatus.textContent = "Ouverture de la caméra…";
    lastCode = "";
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false }).then(function (s) {
      stream = s;
      video.srcObject = s;
      cameraBox.hidden = false;
      cameraButton.textContent = "Arrêter la caméra";
      cameraButton.setAttribute("aria-pressed", "true");
      cameraStatus.textContent = "Caméra ouverte : placez le QR code du chèque dans le cadre.";
      return video.play();
    }).then(function () {
      requestAnimationFrame(loop);
    }).catch(function (error) {
      stopCamera(false);
      cameraStatus.textContent = error && error.name === "NotAllowedError"
        ? "L'accès à la caméra a été refusé : autorisez-le dans le navigateur, ou saisissez le numéro du chèque."
        : "La caméra n'a pas pu s'ouvrir : saisissez le numéro du chèque.";
    });
  }

  /* afterRead: the camera stopped because it read a cheque; the button then offers the next one. */
  function stopCamera(afterRead) {
    var wasOpen = !!stream;
    if (stream) stream.getTracks().forEach(function (track) { track.stop(); });
    stream = null;
    video.srcObject = null;
    cameraBox.hidden = true;
    cameraButton.textContent = afterRead === true ? "Chèque suivant" : "Scanner avec la caméra";
    cameraButton.setAttribute("aria-pressed", "false");
    // No stale « Caméra ouverte… » once it is closed (issue 16 item 5).
    if (wasOpen && afterRead !== true) cameraStatus.textContent = "Caméra arrêtée.";
    else if (wasOpen) cameraStatus.textContent = "";
  }

  function setUpDetector() {
    if (!("BarcodeDetector" in window)) return Promise.resolve();
    return window.BarcodeDetector.getSupportedFormats().then(function (formats) {
      if (formats.indexOf("qr_code") !== -1) detector = new window.BarcodeDetector({ formats: ["qr_code"] });
    }, function () {});
  }

  /* ------------------------------------------------------------------ offline readiness */

  function prepareOffline() {
    if (!("serviceWorker" in navigator) || !window.caches) return Promise.resolve(false);
    return navigator.serviceWorker.register("/mediateur/sw.js", { scope: "/mediateur" }).then(function () {
      return navigator.serviceWorker.ready;
    }).then(function () {
      // Keep a fresh copy of this page for the next time the network is gone.
      return fetch(location.pathname, { credentials: "same-origin" }).then(function (response) {
        if (!response.ok || response.redirected) return false;
        return caches.open("passnum-scan-pages").then(function (cache) {
          return cache.put("/mediateur", response).then(function () { return true; });
        });
      });
    }).catch(function () { return false; });
  }

  /* ------------------------------------------------------------------ remembered choices
   * The service and démarche of the last scan stay chosen on this phone (issue 16 item 4). */

  function saveChoices() {
    try {
      localStorage.setItem(CHOICE_KEY, JSON.stringify({
        service: checkedValue("service"), demarche_family: checkedValue("demarche_family")
      }));
    } catch (e) { /* private browsing: nothing remembered */ }
  }

  function check(name, value) {
    var input = value == null ? null : form.querySelector("input[name=" + name + "][value='" + value + "']");
    if (input) input.checked = true;
  }

  function restoreChoices() {
    var saved = null;
    try { saved = JSON.parse(localStorage.getItem(CHOICE_KEY) || "null"); } catch (e) { saved = null; }
    if (!saved) return;
    if (!checkedValue("service")) check("service", saved.service);
    if (demarcheBox && !demarcheBox.hasAttribute("data-chosen")) check("demarche_family", saved.demarche_family || "");
  }

  function showDemarche() {
    if (!demarcheSummary) return;
    var input = form.querySelector("input[name=demarche_family]:checked");
    var text = input && form.querySelector("label[for='" + input.id + "']");
    demarcheSummary.textContent = text ? text.textContent.trim() : "";
  }

  /* ------------------------------------------------------------------ wiring */

  form.noValidate = true; // scan.js says what is missing, in French, next to the camera
  form.addEventListener("change", function (event) {
    saveChoices();
    if (event.target && event.target.name === "demarche_family") {
      showDemarche();
      if (demarcheBox) demarcheBox.open = false;
    }
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    submitScan();
  });
  cameraButton.addEventListener("click", function () {
    if (stream) stopCamera(false); else startCamera();
  });
  syncButton.addEventListener("click", function () { sync(); });
  window.addEventListener("online", function () { setNetwork(true); sync(); });
  window.addEventListener("offline", function () { setNetwork(false); });
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") stopCamera(false);
  });

  restoreChoices();
  showDemarche();
  setNetwork(navigator.onLine);
  cameraButton.hidden = false;
  keyInput.value = uuid();
  Promise.all([setUpDetector(), renderQueue().then(function () { return sync(); }), prepareOffline()]).then(function (done) {
    var ready = done[2];
    var note = document.getElementById("note-hors-ligne");
    if (note && ready) note.textContent = "Cette page fonctionne aussi sans réseau : les chèques scannés hors ligne seront synchronisés ensuite.";
    root.setAttribute("data-offline-ready", ready ? "true" : "false");
  });
})();

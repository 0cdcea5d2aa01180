/* Pass numérique — fill a text field from a QR code read by the camera.
 *
 * A button `[data-qr-target="<input id>"]` opens the camera; the first code read (the browser's
 * BarcodeDetector, else jsQR) goes into the field and the camera stops. Typing stays possible.
 */
(function () {
  "use strict";

  function setUp(button) {
    var input = document.getElementById(button.getAttribute("data-qr-target"));
    var box = document.getElementById(button.getAttribute("data-qr-box"));
    var status = document.getElementById(button.getAttribute("data-qr-status"));
    var video = box.querySelector("video");
    var canvas = document.createElement("canvas");
    var context2d = canvas.getContext("2d", { willReadFrequently: true });
    var stream = null;
    var detector = null;

    function stop() {
      if (stream) stream.getTracks().forEach(function (t) { t.stop(); });
      stream = null;
      video.srcObject = null;
      box.hidden = true;
      button.setAttribute("aria-pressed", "false");
    }

    function read() {
      if (!stream) return;
      var next = function (text) {
        if (text) {
          input.value = text.trim();
          status.textContent = "Numéro lu : " + input.value;
          stop();
          input.focus();
          return;
        }
        requestAnimationFrame(read);
      };
      if (video.readyState < 2) { requestAnimationFrame(read); return; }
      if (detector) {
        detector.detect(video).then(function (codes) { next(codes.length ? codes[0].rawValue : null); },
          function () { next(null); });
        return;
      }
      canvas.width = video.videoWidth || 640;
      canvas.height = video.videoHeight || 480;
      context2d.drawImage(video, 0, 0, canvas.width, canvas.height);
      var image = context2d.getImageData(0, 0, canvas.width, canvas.height);
      var found = window.jsQR && window.jsQR(image.data, image.width, image.height);
      next(found ? found.data : null);
    }

    button.hidden = false;
    button.addEventListener("click", function () {
      if (stream) { stop(); status.textContent = "Caméra arrêtée."; return; }
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        status.textContent = "Ce navigateur ne permet pas d'utiliser la caméra : saisissez le numéro.";
        return;
      }
      var ready = ("BarcodeDetector" in window)
        ? window.BarcodeDetector.getSupportedFormats().then(function (f) {
          if (f.indexOf("qr_code") !== -1) detector = new window.BarcodeDetector({ formats: ["qr_code"] });
        }, function () {})
        : Promise.resolve();
      ready.then(function () {
        return navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
      }).then(function (s) {
        stream = s;
        video.srcObject = s;
        box.hidden = false;
        button.setAttribute("aria-pressed", "true");
        status.textContent = "Caméra ouverte : visez le code.";
        return video.play();
      }).then(function () { requestAnimationFrame(read); }).catch(function () {
        stop();
        status.textContent = "La caméra n'a pas pu s'ouvrir : saisissez le numéro.";
      });
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("[data-qr-target]"), setUp);
})();

// « Mon pass » without a number in the address: the form goes to /mon-pass/<number>?code=…
// (without JavaScript, /mon-pass?numero=… is redirected there by the server).
document.getElementById("form-mon-pass").addEventListener("submit", (event) => {
  const number = document.getElementById("champ-numero").value.trim();
  if (!number) return;
  event.preventDefault();
  const code = document.getElementById("champ-code").value.trim();
  window.location.href = "/mon-pass/" + encodeURIComponent(number) + "?code=" + encodeURIComponent(code);
});

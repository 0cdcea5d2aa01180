// A commune field (data-commune-field): suggestions by name or postcode as the person types,
// from GET /api/v1/public/communes; each suggestion ends with the INSEE code (« · 35238 »),
// which the server reads (pass_/communes.py, resolve). Without JavaScript, a name or a postcode
// typed in full is resolved by the server too.
for (const input of document.querySelectorAll("input[data-commune-field]")) {
  const list = document.createElement("datalist");
  list.id = input.id + "-suggestions";
  input.after(list);
  input.setAttribute("list", list.id);
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    const q = input.value.trim();
    if (q.length < 2 || q.includes("·")) return;
    timer = setTimeout(async () => {
      const response = await fetch("/api/v1/public/communes?q=" + encodeURIComponent(q));
      if (!response.ok) return;
      const communes = await response.json();
      list.replaceChildren(...communes.map((c) => {
        const option = document.createElement("option");
        option.value = `${c.nom} (${c.departement}) · ${c.code}`;
        option.label = c.codes_postaux.slice(0, 3).join(", ");
        return option;
      }));
    }, 150);
  });
}

// Copy buttons: <button data-copy="#id"> copies the text of the element #id.
// One delegated listener, so buttons added later (htmx partials) work too.
(() => {
  if (window.recsiteCopyButtons) return;
  window.recsiteCopyButtons = true;

  async function copy(button) {
    const source = document.querySelector(button.dataset.copy);
    if (!source) return;
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    const text = source.textContent.trim();
    try {
      if (!navigator.clipboard) throw new Error("no Clipboard API");
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch {
      // No Clipboard API (plain http on another host): copy through a selected textarea,
      // else leave the text selected for Ctrl+C.
      const area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.style.position = "fixed";
      area.style.opacity = "0";
      document.body.appendChild(area);
      area.select();
      let copied = false;
      try { copied = document.execCommand("copy"); } catch { copied = false; }
      area.remove();
      if (copied) {
        button.textContent = "Copied";
      } else {
        window.getSelection().selectAllChildren(source);
        button.textContent = "Selected: press Ctrl+C";
      }
    }
    setTimeout(() => { button.textContent = label; }, 2000);
  }

  document.addEventListener("click", (event) => {
    const button = event.target.closest("[data-copy]");
    if (button) copy(button);
  });
})();

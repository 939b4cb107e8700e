// Entry point of the browser bundle (esbuild -> static/dist/app.js).
// Theme: dark by default, remembered per browser.
const saved = localStorage.getItem("theme");
if (saved === "light" || saved === "dark") document.documentElement.dataset.theme = saved;

export function toggleTheme() {
  const next = document.documentElement.dataset.theme === "light" ? "dark" : "light";
  document.documentElement.dataset.theme = next;
  localStorage.setItem("theme", next);
}

document.querySelector("[data-action=toggle-theme]")?.addEventListener("click", toggleTheme);

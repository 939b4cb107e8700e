// Operator page: refresh the key figures and alerts every 5 s, the trend charts every minute.
(() => {
  const root = document.getElementById("ops");
  if (!root) return;
  const FIGURES_EVERY_MS = 5000;
  const CHARTS_EVERY_MS = 60000;

  const text = (value) => document.createTextNode(value === null || value === undefined ? "" : String(value));
  const cell = (value, className) => {
    const td = document.createElement("td");
    if (className) td.className = className;
    td.appendChild(text(value));
    return td;
  };

  function renderAlerts(alerts) {
    const body = document.querySelector("#ops-alerts tbody");
    body.replaceChildren();
    if (!alerts.length) {
      const row = document.createElement("tr");
      const td = cell("No open alerts.", "muted");
      td.colSpan = 5;
      row.appendChild(td);
      body.appendChild(row);
      return;
    }
    for (const alert of alerts) {
      const row = document.createElement("tr");
      row.append(cell(alert.rule), cell(alert.opened_at), cell(alert.message),
        cell(alert.last_value === null ? "" : alert.last_value.toFixed(3), "num"), cell(alert.threshold.toFixed(3), "num"));
      body.appendChild(row);
    }
  }

  function renderWarnings(container, prefix, items) {
    container.replaceChildren(...items.map((item) => {
      const p = document.createElement("p");
      p.className = "warning";
      p.appendChild(text(prefix + item));
      return p;
    }));
  }

  async function refreshFigures() {
    try {
      const response = await fetch(root.dataset.dataUrl, { credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const data = await response.json();
      for (const figure of data.figures) {
        const node = root.querySelector(`[data-figure="${figure.name}"]`);
        if (node) node.textContent = figure.display;
      }
      renderAlerts(data.alerts);
      renderWarnings(document.getElementById("ops-indexes"), "Missing index: ", data.index_warnings);
      renderWarnings(document.getElementById("ops-degraded"), "Sources unavailable in the last sample: ",
        data.degraded.length ? [data.degraded.join(", ") + ". Basic process figures only."] : []);
      document.getElementById("ops-status").textContent = data.recorded_at
        ? `Sampled ${data.age_seconds} s ago (from ${data.source}).${data.stale ? " The recorder is behind." : ""}`
        : "No sample recorded yet: is the beat process running?";
    } catch (error) {
      document.getElementById("ops-status").textContent = `Live update failed (${error.message}); retrying.`;
    }
  }

  async function refreshCharts() {
    try {
      const response = await fetch(root.dataset.chartsUrl, { credentials: "same-origin" });
      if (response.ok) document.getElementById("ops-charts").innerHTML = await response.text();
    } catch (error) {
      /* keep the charts we have; the next refresh retries */
    }
  }

  const toggles = [...root.querySelectorAll("[data-show]")];
  for (const button of toggles) {
    button.addEventListener("click", () => {
      root.classList.toggle("show-day", button.dataset.show === "day");
      for (const other of toggles) other.setAttribute("aria-pressed", String(other === button));
    });
  }
  setInterval(refreshFigures, FIGURES_EVERY_MS);
  setInterval(refreshCharts, CHARTS_EVERY_MS);
})();

// The dashboard's one script: draws the charts a page embeds as JSON, keeps a live page up to date by polling its
// JSON route (no reload), confirms the cancel button, and enables "compare" when 2 to 4 trials are ticked.
"use strict";
(() => {
  const CONFIG = {
    responsive: true,
    displaylogo: false,
    displayModeBar: "hover",
    modeBarButtonsToRemove: ["select2d", "lasso2d", "autoScale2d", "toggleSpikelines"],
  };
  // What a test (or a curious user) can read: how many live updates arrived and whether polling goes on.
  const state = (window.brainsearch = { updates: 0, polling: false });

  function drawCharts(charts) {
    if (!window.Plotly) return;
    for (const c of charts) {
      const card = document.getElementById("card-" + c.id);
      if (!card) continue;
      const div = card.querySelector(".chart");
      card.querySelector(".chart-title").textContent = c.title;
      card.querySelector(".note").textContent = c.figure ? c.note || "" : "";
      const empty = card.querySelector(".empty");
      empty.textContent = c.empty || "";
      if (c.figure) {
        div.hidden = false;
        empty.hidden = true;
        Plotly.react(div, c.figure.data, c.figure.layout, CONFIG);
        if (c.figure.layout.meta && c.figure.layout.meta.click === "trial" && !div.dataset.clicks) {
          div.dataset.clicks = "1"; // a point opens its trial
          div.on("plotly_click", (ev) => {
            const id = ev.points && ev.points[0] && ev.points[0].customdata;
            if (id) window.location.href = "/trials/" + id;
          });
        }
      } else {
        if (div.data) Plotly.purge(div);
        div.hidden = true;
        empty.hidden = false;
      }
    }
  }

  function picked() {
    return [...document.querySelectorAll("input.pick:checked")].map((x) => x.value);
  }

  function updatePicker() {
    const button = document.getElementById("compare-button");
    if (!button) return;
    const n = picked().length;
    document.getElementById("compare-count").textContent = n;
    button.disabled = n < 2 || n > 4;
    button.title = n > 4 ? "Compare at most 4 trials" : "";
  }

  function live(root) {
    const every = 1000 * Number(root.dataset.poll || 3);
    let wait = every;
    state.polling = true;
    async function tick() {
      if (document.hidden) return setTimeout(tick, every); // a background tab asks nothing
      try {
        const r = await fetch(root.dataset.liveUrl, { headers: { Accept: "application/json" }, cache: "no-store" });
        if (r.status === 404) {
          state.polling = false; // the search was deleted: nothing more will come
          return;
        }
        if (!r.ok) throw new Error("HTTP " + r.status);
        const body = await r.json();
        const ticked = new Set(picked());
        for (const [name, html] of Object.entries(body.parts || {})) {
          for (const el of root.querySelectorAll(`[data-part="${name}"]`)) el.innerHTML = html;
        }
        for (const box of root.querySelectorAll("input.pick")) box.checked = ticked.has(box.value);
        updatePicker();
        if (body.charts) drawCharts(body.charts);
        if (body.title) document.title = body.title;
        state.updates += 1;
        wait = every;
        if (!body.active) {
          state.polling = false;
          root.dataset.liveActive = "false";
          for (const el of root.querySelectorAll("[data-while-active]")) el.remove(); // e.g. the cancel button
          return;
        }
      } catch (err) {
        wait = Math.min(wait * 2, 60000); // the server is away: ask less often until it is back
      }
      setTimeout(tick, wait);
    }
    setTimeout(tick, every);
  }

  function start() {
    const data = document.getElementById("charts-data");
    if (data) drawCharts(JSON.parse(data.textContent));
    document.addEventListener("change", (ev) => {
      if (ev.target.matches("input.pick")) updatePicker();
    });
    document.addEventListener("submit", (ev) => {
      const msg = ev.target.dataset && ev.target.dataset.confirm;
      if (msg && !window.confirm(msg)) ev.preventDefault();
    });
    updatePicker();
    const back = document.getElementById("back"); // on an error page: where the user came from
    if (back && window.history.length > 1) {
      back.hidden = false;
      back.addEventListener("click", (ev) => {
        ev.preventDefault();
        window.history.back();
      });
    }
    const root = document.querySelector("[data-live-url]");
    if (root && root.dataset.liveActive === "true") live(root);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();

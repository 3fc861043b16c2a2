// The trace page: places the waterfall's bars, collapses subtrees and shows a
// span's details. The Content-Security-Policy forbids inline styles, so every
// position arrives as a data-* attribute and is set through element.style here.
// Span text only ever reaches the page through textContent, never as HTML.
"use strict";

(function () {
  const dataNode = document.getElementById("trace-data");
  const waterfall = document.querySelector(".waterfall");
  if (!dataNode || !waterfall) {
    return;
  }
  const data = JSON.parse(dataNode.textContent);
  const rows = Array.from(waterfall.querySelectorAll(".span-row"));
  const rowIndex = new Map();
  const depths = new Int32Array(rows.length);
  const descendants = new Int32Array(rows.length);
  const INDENT_PX = 12;
  const MAX_INDENT_DEPTH = 24;

  function spanIdOf(row) {
    return row.id.slice("span-".length);
  }

  rows.forEach(function (row, index) {
    rowIndex.set(spanIdOf(row), index);
    depths[index] = Number(row.dataset.depth);
    descendants[index] = Number(row.dataset.descendants);
    const label = row.firstElementChild;
    label.style.paddingLeft = 6 + Math.min(depths[index], MAX_INDENT_DEPTH) * INDENT_PX + "px";
  });

  for (const element of document.querySelectorAll("[data-left]")) {
    element.style.left = element.dataset.left + "%";
    if (element.dataset.width !== undefined) {
      element.style.width = element.dataset.width + "%";
    }
  }

  // -- the service column: as wide as its widest label, the timeline gets the rest --

  function sizeLabelColumn() {
    // Each row is its own grid, so "max-content" sizes every label to its content;
    // the widest one then sets the column for all rows (within 120 px .. 30 %).
    waterfall.style.setProperty("--label-w", "max-content");
    let need = 0;
    for (const row of rows) {
      need = Math.max(need, row.firstElementChild.offsetWidth);
    }
    const limit = Math.max(160, 0.3 * waterfall.clientWidth);
    waterfall.style.setProperty("--label-w", Math.min(Math.max(need + 2, 120), limit) + "px");
  }

  sizeLabelColumn();

  // -- operation names beside their bars ------------------------------------------
  // A name goes right of its bar when it fits there, else left of it, else inside
  // it on a light backing. Text widths are measured once, while every row is shown;
  // a resize moves the names (and re-sizes the service column) on the next frame.

  const GAP_PX = 6;
  const barLabels = rows.map(function (row) {
    return row.querySelector(".bar-label");
  });
  const labelWidths = barLabels.map(function (label) {
    return label ? label.offsetWidth : 0;
  });

  function placeBarLabels() {
    const timeline = rows.length ? rows[0].querySelector(".timeline") : null;
    const width = timeline ? timeline.clientWidth : 0;
    if (width === 0) {
      return;
    }
    barLabels.forEach(function (label, index) {
      if (!label) {
        return;
      }
      const text = labelWidths[index];
      const start = (Number(label.dataset.barLeft) / 100) * width;
      const end = (Number(label.dataset.barEnd) / 100) * width;
      let place = "inside";
      let left = Math.max(start + GAP_PX, 0);
      if (end + GAP_PX + text <= width) {
        place = "after";
        left = end + GAP_PX;
      } else if (start - GAP_PX - text >= 0) {
        place = "before";
        left = start - GAP_PX - text;
      }
      label.dataset.place = place;
      label.style.left = left + "px";
      label.style.maxWidth = Math.max(0, width - left - 2) + "px";
    });
  }

  placeBarLabels();
  let resizePending = false;
  window.addEventListener("resize", function () {
    if (!resizePending) {
      resizePending = true;
      requestAnimationFrame(function () {
        resizePending = false;
        sizeLabelColumn();
        placeBarLabels();
      });
    }
  });

  const ticks = waterfall.querySelectorAll(".tick");
  if (ticks.length > 1) {
    waterfall.style.setProperty("--tick-step", ticks[1].dataset.left + "%");
  }

  // -- collapsing: rows are in depth-first order, so a subtree is the next N rows --

  function updateHiddenCount(index) {
    const row = rows[index];
    const label = row.firstElementChild;
    let badge = label.querySelector(".hidden-count");
    if (badge === null) {
      badge = element("span", "hidden-count");
      label.append(badge);
    }
    const collapsed = row.classList.contains("collapsed");
    badge.textContent = collapsed ? descendants[index] + " hidden" : "";
  }

  function setCollapsed(index, collapsed) {
    const row = rows[index];
    if (descendants[index] === 0 || row.classList.contains("collapsed") === collapsed) {
      return;
    }
    row.classList.toggle("collapsed", collapsed);
    row.setAttribute("aria-expanded", String(!collapsed));
    const toggle = row.querySelector(".toggle");
    if (toggle) {
      const verb = collapsed ? "Expand " : "Collapse ";
      toggle.setAttribute("aria-label", verb + descendants[index] + " child spans");
    }
    const end = index + descendants[index];
    if (collapsed) {
      for (let i = index + 1; i <= end; i += 1) {
        rows[i].hidden = true;
      }
    } else {
      let i = index + 1;
      while (i <= end) {
        rows[i].hidden = false;
        // A subtree collapsed on its own stays collapsed.
        i += rows[i].classList.contains("collapsed") ? descendants[i] + 1 : 1;
      }
    }
    updateHiddenCount(index);
  }

  function collapseAll() {
    // Keep the root level and its children visible; fold everything below.
    for (let i = rows.length - 1; i >= 0; i -= 1) {
      if (depths[i] >= 1) {
        setCollapsed(i, true);
      }
    }
  }

  function expandAll() {
    for (let i = 0; i < rows.length; i += 1) {
      rows[i].hidden = false;
      if (rows[i].classList.contains("collapsed")) {
        rows[i].classList.remove("collapsed");
        rows[i].setAttribute("aria-expanded", "true");
        updateHiddenCount(i);
      }
    }
  }

  function reveal(index) {
    // Expand every collapsed ancestor, nearest first.
    let depth = depths[index];
    for (let i = index - 1; i >= 0 && depth > 0; i -= 1) {
      if (depths[i] < depth) {
        depth = depths[i];
        if (rows[i].classList.contains("collapsed") && i + descendants[i] >= index) {
          setCollapsed(i, false);
        }
      }
    }
  }

  // -- details panel -----------------------------------------------------------

  const details = document.querySelector(".details");
  const detailsBody = details.querySelector(".details-body");
  const detailsEmpty = details.querySelector(".details-empty");
  let selected = null;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function showDetails(span) {
    detailsEmpty.hidden = true;
    detailsBody.hidden = false;
    details.classList.toggle("is-error", span.status === "error");
    const swatch = details.querySelector(".details-swatch");
    swatch.className = "swatch details-swatch " + span.service_class;
    details.querySelector(".details-op").textContent = span.operation || "(unnamed)";

    const fields = details.querySelector(".details-fields");
    fields.replaceChildren();
    span.fields.forEach(function (value, index) {
      const item = element("div");
      item.append(element("dt", "", data.fields[index]), element("dd", "", value));
      fields.append(item);
    });

    const tags = details.querySelector(".details-tags tbody");
    tags.replaceChildren();
    for (const [key, value] of span.tags) {
      const tr = element("tr");
      tr.append(element("th", "", key), element("td", "", value));
      tags.append(tr);
    }
    details.querySelector(".details-no-tags").hidden = span.tags.length > 0;

    const logs = details.querySelector(".details-logs");
    logs.replaceChildren();
    for (const [offset, level, message] of span.logs) {
      const li = element("li", "log-" + (/^[a-z]+$/.test(level) ? level : "other"));
      li.append(
        element("span", "log-time", offset),
        element("span", "log-level", level),
        element("span", "log-message", message),
      );
      logs.append(li);
    }
    details.querySelector(".details-no-logs").hidden = span.logs.length > 0;
  }

  function select(spanId, scroll) {
    const index = rowIndex.get(spanId);
    const span = data.spans[spanId];
    if (index === undefined || span === undefined) {
      return;
    }
    reveal(index);
    if (selected !== null) {
      selected.classList.remove("selected");
      selected.removeAttribute("aria-selected");
      selected.removeAttribute("tabindex");
    }
    selected = rows[index];
    selected.classList.add("selected");
    selected.setAttribute("aria-selected", "true");
    selected.tabIndex = 0;
    showDetails(span);
    if (scroll) {
      selected.scrollIntoView({ block: "center" });
      selected.focus({ preventScroll: true });
    }
  }

  // -- events: one listener per kind, delegated -----------------------------------

  waterfall.addEventListener("click", function (event) {
    const row = event.target.closest(".span-row");
    if (!row) {
      return;
    }
    const index = rowIndex.get(spanIdOf(row));
    if (event.target.closest(".toggle")) {
      setCollapsed(index, !row.classList.contains("collapsed"));
      return;
    }
    select(spanIdOf(row), false);
  });

  waterfall.addEventListener("keydown", function (event) {
    if (selected === null) {
      return;
    }
    let index = rowIndex.get(spanIdOf(selected));
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      const step = event.key === "ArrowDown" ? 1 : -1;
      for (let i = index + step; i >= 0 && i < rows.length; i += step) {
        if (!rows[i].hidden) {
          index = i;
          break;
        }
      }
      select(spanIdOf(rows[index]), true);
    } else if (event.key === "ArrowLeft") {
      setCollapsed(index, true);
    } else if (event.key === "ArrowRight") {
      setCollapsed(index, false);
    } else {
      return;
    }
    event.preventDefault();
  });

  document.addEventListener("click", function (event) {
    const link = event.target.closest("[data-span-link]");
    if (link) {
      event.preventDefault();
      select(link.dataset.spanLink, true);
      history.replaceState(null, "", "#span-" + link.dataset.spanLink);
    }
    const action = event.target.closest("[data-action]");
    if (action) {
      if (action.dataset.action === "collapse-all") {
        collapseAll();
      } else if (action.dataset.action === "expand-all") {
        expandAll();
      }
    }
  });

  const fromHash = /^#span-([0-9a-f]{16})$/.exec(location.hash);
  if (fromHash && rowIndex.has(fromHash[1])) {
    select(fromHash[1], true);
  } else if (data.initial) {
    select(data.initial, false);
  }
})();

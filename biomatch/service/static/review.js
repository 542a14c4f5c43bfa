// The examiner's page: the REVIEW queue, a case's probe beside each candidate, the outcome.
// The API key lives in this closure only: never in a URL, a cookie or storage; a reload asks again.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  let apiKey = null;
  let current = null; // the case shown
  const $ = (id) => document.getElementById(id);

  function status(text, isError) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  }

  async function api(method, path, body) {
    const headers = { Authorization: "Bearer " + apiKey };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                                  cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" });
    let doc = null;
    try { doc = await r.json(); } catch (e) { doc = null; }
    if (!r.ok) {
      const why = doc && doc.detail ? doc.detail : r.status + " " + r.statusText;
      const err = new Error(why);
      err.status = r.status;
      throw err;
    }
    return doc;
  }

  async function fetchImage(url) { // a stored image (when the gallery keeps them): same key, header only
    const r = await fetch(url, { headers: { Authorization: "Bearer " + apiKey }, cache: "no-store",
                                 credentials: "omit" });
    if (!r.ok) throw new Error("image " + r.status);
    return URL.createObjectURL(await r.blob());
  }

  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    return e;
  }

  // ---- the queue -------------------------------------------------------------------------------
  async function loadQueue() {
    const doc = await api("GET", "/v1/reviews?status=open&limit=200");
    const body = $("cases");
    body.replaceChildren();
    for (const c of doc.cases) {
      const best = c.candidates.length ? c.candidates[0] : null;
      const tr = el("tr", { "data-case": c.case_id });
      tr.append(el("td", {}, c.case_id), el("td", {}, c.subject_id), el("td", {}, best ? best.subject_id : "-"),
                el("td", { class: "num" }, best ? Number(best.score).toFixed(2) : "-"),
                el("td", {}, new Date(c.opened_utc * 1000).toISOString().replace("T", " ").slice(0, 19)));
      const td = el("td");
      const b = el("button", { type: "button", class: "open", "data-case": c.case_id }, "Open");
      b.addEventListener("click", () => openCase(c.case_id).catch((e) => status(e.message, true)));
      td.append(b);
      tr.append(td);
      body.append(tr);
    }
    $("empty").hidden = doc.cases.length > 0;
    $("queue").hidden = false;
    $("case").hidden = true;
    status(doc.cases.length + " open case" + (doc.cases.length === 1 ? "" : "s"));
  }

  // ---- one case --------------------------------------------------------------------------------
  async function openCase(caseId) {
    current = await api("GET", "/v1/reviews/" + encodeURIComponent(caseId));
    $("case-id").textContent = current.case_id;
    $("case-subject").textContent = "probe " + current.subject_id;
    $("outcome").textContent = "";
    const sel = $("candidate");
    sel.replaceChildren();
    current.views.forEach((v, i) => sel.append(el("option", { value: String(i) },
      v.subject_id + " (score " + (v.score === null ? "-" : Number(v.score).toFixed(2)) + ")")));
    setDecisionEnabled(current.outcome === null);
    if (current.outcome === "different_person" && current.enrolled === null && current.probe_kept) {
      $("different").disabled = false; // resolved, its enrolment interrupted: recording it again finishes it
      $("outcome").textContent = "Resolved different person; the probe's enrolment was interrupted: record it again.";
    }
    $("queue").hidden = true;
    $("case").hidden = false;
    if (!current.views.length) {
      $("fingers").replaceChildren(el("p", {}, current.outcome
        ? "Resolved " + current.outcome + ": the probe is no longer kept."
        : "No probe was kept with this case (opened by an older version): the registry re-sends the record."));
      $("face").replaceChildren();
      return;
    }
    await showCandidate(0);
    status("case " + current.case_id);
  }

  function setDecisionEnabled(on) {
    $("same").disabled = !on;
    $("different").disabled = !on;
  }

  async function showCandidate(i) {
    const v = current.views[i];
    $("candidate-score").textContent = " fused score " + (v.score === null ? "-" : Number(v.score).toFixed(2)) +
      " decades" + (v.enrolled ? "" : " (candidate removed since)");
    const face = $("face");
    face.replaceChildren();
    for (const [url, who] of [[v.probe_face_image, "probe"], [v.face_image, "candidate"]]) {
      if (!url) continue;
      try {
        face.append(el("img", { src: await fetchImage(url), alt: who + " face", class: "face " + who }));
      } catch (e) {
        status("the kept face image could not be read: " + e.message, true);
      }
    }
    if (v.face_score !== null && v.face_score !== undefined) {
      face.append(el("span", { class: "face-score" }, "face score " + Number(v.face_score).toFixed(3) +
        (v.probe_face_image || v.face_image ? "" : " (face images are shown when the service keeps them)")));
    } else if (v.has_probe_face) {
      face.append(el("span", {}, "The probe has a face; this candidate has none to compare."));
    }
    const box = $("fingers");
    box.replaceChildren();
    const pairing = new Set();
    for (const f of v.fingers) {
      pairing.add(f.pairing);
      box.append(await fingerRow(f));
    }
    $("pairing").textContent = [...pairing].join(", ") || "-";
    if (!v.fingers.length) box.append(el("p", {}, "No finger in common with this candidate."));
  }

  async function fingerRow(f) {
    const row = el("div", { class: "finger", "data-position": String(f.position) });
    const numbers = { probe: new Map(), candidate: new Map() };
    f.pairs.slice().sort((a, b) => a[0] - b[0]).forEach(([a, b], k) => {
      numbers.probe.set(a, k + 1);
      numbers.candidate.set(b, k + 1);
    });
    const mid = el("div", { class: "mid" });
    mid.append(el("div", {}, f.position + " " + f.name), el("div", { class: "score" }, f.score.toFixed(3)),
               el("div", { class: "npairs" }, f.pairs.length + " paired"));
    row.append(await side("probe", f.probe, numbers.probe), mid, await side("candidate", f.candidate, numbers.candidate));
    return row;
  }

  async function side(which, s, numbers) {
    const fig = el("figure");
    const w = Math.max(s.width, 1), h = Math.max(s.height, 1);
    const svg = svgEl("svg", { class: "print " + which, viewBox: "0 0 " + w + " " + h,
                               preserveAspectRatio: "xMidYMid meet", role: "img" });
    svg.append(svgEl("rect", { x: 0, y: 0, width: w, height: h, fill: "#f3f1ea" }));
    if (s.image) {
      try {
        svg.append(svgEl("image", { href: await fetchImage(s.image), x: 0, y: 0, width: w, height: h,
                                    preserveAspectRatio: "none", class: "print-image" }));
      } catch (e) {
        status("the stored image could not be read: " + e.message, true);
      }
    }
    s.minutiae.forEach((m, i) => {
      const [x, y, angle] = m;
      const n = numbers.get(i);
      const g = svgEl("g", { class: "minutia" + (n ? " paired" : ""), "data-index": i });
      // angle: counter-clockwise from the x axis as displayed (y down), so dy = -sin
      g.append(svgEl("circle", { cx: x, cy: y, r: 5 }),
               svgEl("line", { x1: x, y1: y, x2: x + 14 * Math.cos(angle), y2: y - 14 * Math.sin(angle) }));
      if (n) {
        const t = svgEl("text", { x: x + 6, y: y - 6 });
        t.textContent = String(n);
        g.append(t);
      }
      svg.append(g);
    });
    fig.append(svg, el("figcaption", {}, which + ": " + s.minutiae.length + " minutiae, quality " + s.quality));
    return fig;
  }

  async function decide(outcome) {
    if (!current) return;
    setDecisionEnabled(false);
    try {
      const c = await api("POST", "/v1/reviews/" + encodeURIComponent(current.case_id) + "/outcome", { outcome });
      let text = "Resolved: " + outcome.replace("_", " ") + ".";
      if (outcome === "different_person") {
        text += c.enrolled === true ? " The probe " + c.subject_id + " is enrolled."
          : c.enrolled === false ? " The gallery refused the probe (" + (c.enrolment && c.enrolment.decision) + ")."
          : " The registry re-sends the record with review_case " + c.case_id + ".";
      }
      $("outcome").textContent = text;
      status(text);
    } catch (e) {
      setDecisionEnabled(true);
      $("outcome").textContent = "Not recorded: " + e.message;
    }
  }

  // ---- wiring ----------------------------------------------------------------------------------
  $("login").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    apiKey = $("key").value.trim();
    $("key").value = "";
    try {
      await loadQueue();
      $("forget").hidden = false;
    } catch (e) {
      apiKey = null;
      status(e.status === 401 ? "Unknown or revoked key." : e.status === 403 ? "This key has no adjudicate role."
        : e.message, true);
    }
  });
  $("forget").addEventListener("click", () => {
    apiKey = null;
    current = null;
    $("queue").hidden = true;
    $("case").hidden = true;
    $("forget").hidden = true;
    status("Key forgotten.");
  });
  $("refresh").addEventListener("click", () => loadQueue().catch((e) => status(e.message, true)));
  $("back").addEventListener("click", () => loadQueue().catch((e) => status(e.message, true)));
  $("candidate").addEventListener("change", (ev) => showCandidate(Number(ev.target.value)));
  $("same").addEventListener("click", () => decide("same_person"));
  $("different").addEventListener("click", () => decide("different_person"));
})();

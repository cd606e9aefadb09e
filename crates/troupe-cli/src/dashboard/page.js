// The troupe cluster dashboard: polls api/picture, computes rates from successive pictures, lays
// the overlay out with a force simulation and draws it in SVG. Everything that comes from the
// network is written with textContent/setAttribute, never parsed as HTML.
(() => {
  'use strict';

  const POLL_MS = __POLL_MS__;
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const LABEL_LIMIT = 150;     // above this many nodes, names show for the focused node only
  const PASSIVE_LIMIT = 3000;  // above this many passive links they start hidden
  const FRAME_BUDGET_MS = 12;  // layout work per animation frame
  const WARMUP_MS = 250;       // layout work before the first paint
  const LINK = 70;             // rest length of an active link
  const CHARGE = -260;         // repulsion between nodes (Barnes-Hut)
  const THETA2 = 0.81;         // Barnes-Hut accuracy (theta = 0.9)
  const GRAVITY = 0.04;        // pull towards the centre
  const DECAY = 0.6;           // velocity kept per iteration
  const ALPHA_DECAY = 0.0228;  // about 300 iterations from hot to still
  const ALPHA_MIN = 0.002;
  const ROLE_COLORS = ['#38bdf8', '#34d399', '#a78bfa', '#f472b6', '#fbbf24', '#fb923c', '#2dd4bf', '#e879f9'];
  const EDGE_BASE = { active: [100, 116, 139], tree: [129, 140, 248] };
  const EDGE_HOT = [251, 146, 60];

  const $ = (id) => document.getElementById(id);
  const svg = $('graph');
  const gEdges = $('edges');
  const gNodes = $('nodes');
  const gLabels = $('labels');
  const tooltip = $('tooltip');
  const rowsEl = $('member-rows');

  // A seeded generator, so a given cluster is laid out the same way on every load.
  let seed = 0x2545f491;
  function rand() {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  const nodes = new Map();  // id -> node
  let nodeList = [];
  let links = [];           // undirected links, one per pair of nodes
  let linksByKey = new Map();
  let prev = null;          // counters of the last picture rates were computed from
  let picture = null;
  let alpha = 0;
  let animating = false;
  let selected = null;
  let hovered = null;
  let view = null;          // the user's zoom/pan as a viewBox; null = fit the graph
  let sort = { key: 'name', dir: 1 };
  let rowOrder = [];
  let roleColors = new Map();
  let failures = 0;
  let passiveTouched = false;
  let labelsTouched = false;
  let radiusPx = 8;         // node size on screen, whatever the zoom
  let unit = 1;             // graph units per screen pixel
  // A link to one node: #node=<name> selects it once it appears.
  let wanted = null;
  function readHash() {
    const m = /^#node=(.+)$/.exec(location.hash);
    wanted = m ? decodeURIComponent(m[1]) : null;
  }
  readHash();

  // ---------------------------------------------------------------- formatting

  function fmtNum(x) {
    if (!Number.isFinite(x)) return '–';
    if (x < 10) return x.toFixed(1);
    if (x < 1000) return Math.round(x).toString();
    if (x < 1e6) return (x / 1e3).toFixed(x < 1e4 ? 2 : 1) + 'k';
    if (x < 1e9) return (x / 1e6).toFixed(x < 1e7 ? 2 : 1) + 'M';
    return (x / 1e9).toFixed(1) + 'G';
  }
  function fmtBytes(x) {
    if (!Number.isFinite(x)) return '–';
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (x >= 1000 && i < units.length - 1) { x /= 1000; i++; }
    return (i === 0 ? Math.round(x).toString() : x.toFixed(x < 10 ? 2 : 1)) + ' ' + units[i];
  }
  function rate(now, before, dt) {
    const d = Number(now) - Number(before);
    return d > 0 && dt > 0 ? d / dt : 0;  // a counter that went back means a restart: no rate
  }
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function svgEl(tag, attrs) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const k in attrs || {}) e.setAttribute(k, attrs[k]);
    return e;
  }
  function colorOf(n) {
    return roleColors.get(n.v.role || '') || ROLE_COLORS[0];
  }
  function mix(a, b, t) {
    return 'rgb(' + a.map((v, i) => Math.round(v + (b[i] - v) * t)).join(',') + ')';
  }

  // ---------------------------------------------------------------- polling

  async function poll() {
    try {
      const response = await fetch('api/picture', { cache: 'no-store' });
      if (!response.ok) throw new Error('HTTP ' + response.status + ' ' + (await response.text()).slice(0, 120));
      apply(await response.json());
      failures = 0;
      setStatus('live', 'live · ' + new Date().toLocaleTimeString());
    } catch (err) {
      failures++;
      setStatus('error', 'no picture: ' + (err && err.message ? err.message : err) + ' · retrying');
    }
    const backoff = failures ? Math.min(POLL_MS * 2 ** failures, 15000) : POLL_MS;
    setTimeout(poll, document.hidden ? Math.max(backoff, 5 * POLL_MS) : backoff);
  }
  function setStatus(kind, text) {
    $('status').className = 'status ' + kind;
    $('status-text').textContent = text;
    $('status').title = text;
  }

  // ---------------------------------------------------------------- the model

  function apply(pic) {
    if (!pic || !Array.isArray(pic.nodes) || !Array.isArray(pic.edges)) throw new Error('malformed picture');
    const t = Number(pic.taken_at_ms) || 0;
    const dt = prev ? (t - prev.t) / 1000 : 0;
    const fresh = dt > 0;  // the same picture again (served from cache) keeps the old rates
    picture = pic;

    const seen = new Set();
    const added = [];
    for (const v of pic.nodes) {
      if (!v || typeof v.id !== 'string' || seen.has(v.id)) continue;
      seen.add(v.id);
      let n = nodes.get(v.id);
      if (!n) {
        n = { id: v.id, x: NaN, y: NaN, vx: 0, vy: 0, rin: 0, rout: 0, bin: 0, bout: 0, fixed: false };
        nodes.set(v.id, n);
        added.push(n);
      }
      n.v = v;
      n.name = String(v.name || v.id);
      const p = fresh ? prev.nodes.get(v.id) : null;
      if (p) {
        n.rin = rate(v.msgs_in, p.msgs_in, dt);
        n.rout = rate(v.msgs_out, p.msgs_out, dt);
        n.bin = rate(v.bytes_in, p.bytes_in, dt);
        n.bout = rate(v.bytes_out, p.bytes_out, dt);
      } else if (fresh) {
        n.rin = n.rout = n.bin = n.bout = 0;
      }
    }
    let removed = 0;
    for (const [id, n] of nodes) {
      if (!seen.has(id)) { removeNode(n); nodes.delete(id); removed++; }
    }
    nodeList = Array.from(nodes.values());

    // One drawn link per pair of nodes, whatever the directions and kinds reported.
    const pairs = new Map();
    for (const e of pic.edges) {
      if (!e || e.from === e.to || !nodes.has(e.from) || !nodes.has(e.to)) continue;
      const kind = e.kind === 'tree' || e.kind === 'passive' ? e.kind : 'active';
      const key = e.from < e.to ? e.from + '\u0000' + e.to : e.to + '\u0000' + e.from;
      let l = pairs.get(key);
      if (!l) {
        const old = linksByKey.get(key);
        l = { key, a: nodes.get(e.from), b: nodes.get(e.to), kinds: new Set(), msgs: 0,
              rate: fresh ? 0 : (old ? old.rate : 0), el: old ? old.el : null, title: old ? old.title : null };
        pairs.set(key, l);
      }
      l.kinds.add(kind);
      l.msgs += Number(e.msgs) || 0;
      if (fresh) {
        const before = prev.edges.get(e.from + '\u0000' + e.to + '\u0000' + kind);
        if (before !== undefined) l.rate += rate(e.msgs, before, dt);
      }
    }
    let linksChanged = pairs.size !== linksByKey.size;
    for (const [key, l] of linksByKey) {
      if (!pairs.has(key)) { linksChanged = true; if (l.el) l.el.remove(); }
    }
    linksByKey = pairs;
    links = Array.from(pairs.values());
    for (const n of nodeList) { n.adj = new Set(); n.deg = 0; n.pdeg = 0; }
    for (const l of links) {
      l.kind = l.kinds.has('tree') ? 'tree' : l.kinds.has('active') ? 'active' : 'passive';
      l.a.adj.add(l.b);
      l.b.adj.add(l.a);
      if (l.kind === 'passive') { l.a.pdeg++; l.b.pdeg++; } else { l.a.deg++; l.b.deg++; }
    }
    for (const l of links) {
      const passive = l.kind === 'passive';
      const da = passive ? l.a.pdeg : l.a.deg;
      const db = passive ? l.b.pdeg : l.b.deg;
      l.strength = (passive ? 0.04 : 1) / Math.max(1, Math.min(da, db));
      l.bias = da / Math.max(1, da + db);
      l.length = passive ? LINK * 2 : LINK;
    }

    if (!prev || fresh) {
      const counters = new Map();
      for (const v of pic.nodes) if (v && typeof v.id === 'string') counters.set(v.id, v);
      const edges = new Map();
      for (const e of pic.edges) if (e) edges.set(e.from + '\u0000' + e.to + '\u0000' + e.kind, Number(e.msgs) || 0);
      prev = { t, nodes: counters, edges };
    }

    const roles = Array.from(new Set(nodeList.map((n) => n.v.role || ''))).sort();
    roleColors = new Map(roles.map((r, i) => [r, ROLE_COLORS[i % ROLE_COLORS.length]]));
    radiusPx = nodeList.length > 400 ? 3.5 : nodeList.length > 100 ? 5.5 : 7.5;

    const first = added.length === nodeList.length;
    place(added, first);
    render(added.length > 0);
    if (first && nodeList.length) {
      alpha = 1;
      const until = performance.now() + WARMUP_MS;
      while (alpha > 0.02 && performance.now() < until) step();
    } else if (added.length || removed) {
      alpha = Math.max(alpha, 0.4);
    } else if (linksChanged) {
      alpha = Math.max(alpha, 0.15);
    }
    draw();
    startAnimation();
    if (wanted !== null) {
      const n = nodeList.find((m) => m.name === wanted);
      if (n) { wanted = null; select(n, true); }
    }
  }

  // Where new nodes appear: the first picture on a golden-angle spiral in breadth-first order
  // (neighbours start close), later ones next to the neighbours they already have.
  function place(added, first) {
    if (!added.length) return;
    if (first) {
      const order = [];
      const done = new Set();
      for (const start of added) {
        if (done.has(start)) continue;
        done.add(start);
        const queue = [start];
        for (let i = 0; i < queue.length; i++) {
          order.push(queue[i]);
          for (const m of queue[i].adj) if (!done.has(m)) { done.add(m); queue.push(m); }
        }
      }
      order.forEach((n, i) => {
        const r = LINK * 0.5 * Math.sqrt(0.5 + i);
        const a = i * Math.PI * (3 - Math.sqrt(5));
        n.x = r * Math.cos(a);
        n.y = r * Math.sin(a);
      });
      return;
    }
    let pending = added;
    while (pending.length) {
      const rest = [];
      for (const n of pending) {
        let sx = 0, sy = 0, k = 0;
        for (const m of n.adj) if (Number.isFinite(m.x)) { sx += m.x; sy += m.y; k++; }
        if (k) {
          const a = rand() * 2 * Math.PI;
          const r = LINK * (0.3 + 0.3 * rand());
          n.x = sx / k + r * Math.cos(a);
          n.y = sy / k + r * Math.sin(a);
        } else {
          rest.push(n);
        }
      }
      if (rest.length === pending.length) {
        // Nobody placed this round: put one node at the rim and let its neighbours follow.
        const n = rest.shift();
        const [cx, cy, span] = extent();
        const a = rand() * 2 * Math.PI;
        n.x = cx + (span / 2 + LINK) * Math.cos(a);
        n.y = cy + (span / 2 + LINK) * Math.sin(a);
      }
      pending = rest;
    }
  }
  function extent() {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of nodeList) {
      if (!Number.isFinite(n.x)) continue;
      if (n.x < x0) x0 = n.x; if (n.x > x1) x1 = n.x;
      if (n.y < y0) y0 = n.y; if (n.y > y1) y1 = n.y;
    }
    if (x0 === Infinity) return [0, 0, 0, 0, 0, 0, 0];
    return [(x0 + x1) / 2, (y0 + y1) / 2, Math.max(x1 - x0, y1 - y0), x0, y0, x1, y1];
  }

  // ---------------------------------------------------------------- the layout

  function step() {
    const n = nodeList.length;
    if (n > 1) {
      const tree = quadtree();
      const k = CHARGE * alpha;
      for (const node of nodeList) repel(tree, node, k);
    }
    for (const l of links) {
      const a = l.a, b = l.b;
      let dx = b.x + b.vx - a.x - a.vx;
      let dy = b.y + b.vy - a.y - a.vy;
      const d = Math.sqrt(dx * dx + dy * dy) || 1e-3;
      const s = ((d - l.length) / d) * alpha * l.strength;
      dx *= s; dy *= s;
      b.vx -= dx * l.bias; b.vy -= dy * l.bias;
      a.vx += dx * (1 - l.bias); a.vy += dy * (1 - l.bias);
    }
    for (const node of nodeList) {
      if (node.fixed) { node.vx = node.vy = 0; continue; }
      node.vx = (node.vx - node.x * GRAVITY * alpha) * DECAY;
      node.vy = (node.vy - node.y * GRAVITY * alpha) * DECAY;
      const v = Math.hypot(node.vx, node.vy);
      if (v > 60) { node.vx *= 60 / v; node.vy *= 60 / v; }
      node.x += node.vx;
      node.y += node.vy;
    }
    alpha += (0 - alpha) * ALPHA_DECAY;
  }

  function quadtree() {
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const n of nodeList) {
      if (n.x < x0) x0 = n.x; if (n.x > x1) x1 = n.x;
      if (n.y < y0) y0 = n.y; if (n.y > y1) y1 = n.y;
    }
    const root = { x0, y0, s: Math.max(x1 - x0, y1 - y0, 1) * 1.0001, kids: null, pts: [], c: 0, cx: 0, cy: 0 };
    for (const n of nodeList) insert(root, n, 0);
    mass(root);
    return root;
  }
  function insert(q, n, depth) {
    if (!q.kids) {
      if (!q.pts.length || depth > 24) { q.pts.push(n); return; }
      const old = q.pts;
      q.pts = [];
      q.kids = [null, null, null, null];
      for (const o of old) insertChild(q, o, depth);
    }
    insertChild(q, n, depth);
  }
  function insertChild(q, n, depth) {
    const h = q.s / 2;
    const i = (n.x >= q.x0 + h ? 1 : 0) + (n.y >= q.y0 + h ? 2 : 0);
    if (!q.kids[i]) q.kids[i] = { x0: q.x0 + (i & 1) * h, y0: q.y0 + (i >> 1) * h, s: h, kids: null, pts: [], c: 0, cx: 0, cy: 0 };
    insert(q.kids[i], n, depth + 1);
  }
  function mass(q) {
    let c = 0, x = 0, y = 0;
    if (q.kids) {
      for (const k of q.kids) if (k) { mass(k); c += k.c; x += k.cx * k.c; y += k.cy * k.c; }
    } else {
      for (const p of q.pts) { c++; x += p.x; y += p.y; }
    }
    q.c = c; q.cx = x / c; q.cy = y / c;
  }
  function repel(q, n, k) {
    const dx = q.cx - n.x, dy = q.cy - n.y;
    let l = dx * dx + dy * dy;
    if (q.kids && (q.s * q.s) / THETA2 < l) {
      // Far enough: the whole cell acts as one body at its centre of mass.
      if (l < 25) l = Math.sqrt(25 * l);
      n.vx += (dx * k * q.c) / l;
      n.vy += (dy * k * q.c) / l;
      return;
    }
    if (q.kids) {
      for (const kid of q.kids) if (kid) repel(kid, n, k);
      return;
    }
    for (const m of q.pts) {
      if (m === n) continue;
      let ex = m.x - n.x, ey = m.y - n.y;
      let d2 = ex * ex + ey * ey;
      if (d2 === 0) { ex = rand() - 0.5; ey = rand() - 0.5; d2 = ex * ex + ey * ey; }
      if (d2 < 25) d2 = Math.sqrt(25 * d2);
      n.vx += (ex * k) / d2;
      n.vy += (ey * k) / d2;
    }
  }

  function startAnimation() {
    if (animating || alpha < ALPHA_MIN) return;
    animating = true;
    requestAnimationFrame(frame);
  }
  function frame() {
    const until = performance.now() + FRAME_BUDGET_MS;
    let steps = 0;
    // Small graphs move at one iteration per frame (smooth); big ones get what the budget allows.
    do { step(); steps++; } while (alpha >= ALPHA_MIN && nodeList.length > 60 && performance.now() < until && steps < 4);
    draw();
    if (alpha >= ALPHA_MIN) requestAnimationFrame(frame);
    else animating = false;
  }

  // ---------------------------------------------------------------- drawing

  function removeNode(n) {
    if (n.el) n.el.remove();
    if (n.label) n.label.remove();
    if (n.row) n.row.remove();
    if (selected === n) select(null);
    if (hovered === n) hover(null);
  }

  function render(structureChanged) {
    const total = nodeList.length;
    $('empty').style.display = total ? 'none' : '';
    if (!total) $('empty').textContent = 'the picture has no nodes yet';
    const observer = picture.observer;
    for (const n of nodeList) {
      if (!n.el) {
        n.el = svgEl('circle', { class: 'node' });
        n.el.addEventListener('pointerenter', () => hover(n));
        n.el.addEventListener('pointerleave', () => hover(null));
        n.el.addEventListener('pointerdown', (ev) => startDrag(ev, n));
        gNodes.appendChild(n.el);
        n.label = svgEl('text');
        gLabels.appendChild(n.label);
      }
      n.el.setAttribute('data-node', n.name);
      n.el.setAttribute('data-id', n.id);
      n.el.setAttribute('r', (radiusPx * unit).toFixed(2));
      n.el.style.fill = colorOf(n);
      n.el.classList.toggle('down', !n.v.up);
      n.el.classList.toggle('observer', n.name === observer);
      n.el.classList.toggle('sel', n === selected);
      n.label.textContent = n.name;
    }
    let maxRate = 0;
    for (const l of links) if (l.kind !== 'passive' && l.rate > maxRate) maxRate = l.rate;
    let active = 0, passive = 0, tree = 0;
    for (const l of links) {
      if (!l.el) {
        l.el = svgEl('line');
        l.title = svgEl('title');
        l.el.appendChild(l.title);
        gEdges.appendChild(l.el);
      }
      l.el.setAttribute('data-from', l.a.name);
      l.el.setAttribute('data-to', l.b.name);
      l.el.setAttribute('data-kind', l.kind);
      l.el.setAttribute('class', 'edge ' + l.kind);
      if (l.kind === 'passive') {
        passive++;
        l.el.removeAttribute('style');
      } else {
        if (l.kind === 'tree') tree++; else active++;
        // Linear in the busiest link's rate: the hot spots stand out, quiet links stay quiet.
        const t = maxRate > 0 ? l.rate / maxRate : 0;
        const big = nodeList.length > 400;
        l.el.style.stroke = mix(EDGE_BASE[l.kind], EDGE_HOT, t);
        l.el.style.strokeWidth = ((big ? 0.8 : 1.4) + (big ? 2.2 : 3.6) * t).toFixed(2);
        l.el.style.strokeOpacity = ((big ? 0.35 : 0.6) + (big ? 0.65 : 0.4) * t).toFixed(2);
      }
      l.title.textContent = l.a.name + ' ↔ ' + l.b.name + ' · ' + Array.from(l.kinds).join('+') +
        ' · ' + fmtNum(l.rate) + ' msg/s · ' + fmtNum(l.msgs) + ' msgs';
    }

    if (!passiveTouched) $('show-passive').checked = passive <= PASSIVE_LIMIT;
    if (!labelsTouched) $('show-labels').checked = total <= LABEL_LIMIT;
    applyToggles();

    const up = nodeList.filter((n) => n.v.up).length;
    let rin = 0, bin = 0, bout = 0;
    for (const n of nodeList) { rin += n.rin; bin += n.bin; bout += n.bout; }
    $('s-overlay').textContent = String(picture.overlay || '–');
    $('s-observer').textContent = String(observer || '–');
    $('s-nodes').textContent = up === total ? String(total) : up + ' up / ' + total;
    $('s-links').textContent = active + tree + ' active · ' + passive + ' passive' + (tree ? ' · ' + tree + ' tree' : '');
    $('s-msgs').textContent = fmtNum(rin) + '/s';
    $('s-bytes').textContent = fmtBytes(Math.max(bin, bout)) + '/s';
    document.title = 'troupe · ' + (picture.overlay || 'cluster') + ' · ' + total + ' nodes';

    renderTable();
    renderDetails();
    if (structureChanged) renderLegend();
    highlight();
  }

  function draw() {
    for (const n of nodeList) {
      const x = n.x.toFixed(1), y = n.y.toFixed(1);
      n.el.setAttribute('cx', x);
      n.el.setAttribute('cy', y);
      n.label.setAttribute('x', (n.x + (radiusPx + 3) * unit).toFixed(1));
      n.label.setAttribute('y', (n.y + 4 * unit).toFixed(1));
    }
    for (const l of links) {
      l.el.setAttribute('x1', l.a.x.toFixed(1));
      l.el.setAttribute('y1', l.a.y.toFixed(1));
      l.el.setAttribute('x2', l.b.x.toFixed(1));
      l.el.setAttribute('y2', l.b.y.toFixed(1));
    }
    if (!view) fit();
    if (hovered) placeTooltip();
  }

  function fit() {
    const [, , , x0, y0, x1, y1] = extent();
    if (!nodeList.length) return;
    const margin = 24 * Math.max(unit, 1) + 60;
    let w = Math.max(x1 - x0 + 2 * margin, 300);
    let h = Math.max(y1 - y0 + 2 * margin, 220);
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    // Leave room for the toolbar above and the legend below.
    h *= 1.12;
    svg.setAttribute('viewBox', [cx - w / 2, cy - h / 2, w, h].map((v) => v.toFixed(1)).join(' '));
    rescale();
  }

  // Nodes and names keep their size on screen at any zoom (strokes do so by CSS).
  function rescale() {
    const b = svg.viewBox.baseVal;
    const cw = svg.clientWidth || 800, ch = svg.clientHeight || 600;
    const u = Math.max(b.width / cw, b.height / ch);
    if (!Number.isFinite(u) || u <= 0 || Math.abs(u - unit) / unit < 0.02) return;
    unit = u;
    const r = (radiusPx * unit).toFixed(2);
    for (const n of nodeList) if (n.el) n.el.setAttribute('r', r);
    gLabels.setAttribute('font-size', (11 * unit).toFixed(2));
    gLabels.style.strokeWidth = (3 * unit).toFixed(2);
  }

  function applyToggles() {
    gEdges.classList.toggle('hide-passive', !$('show-passive').checked);
    gLabels.classList.toggle('sparse', !$('show-labels').checked);
  }

  function renderLegend() {
    const legend = $('legend');
    legend.replaceChildren();
    const lineSample = (cls, style) => {
      const s = svgEl('svg', { width: 26, height: 8 });
      const line = svgEl('line', { x1: 1, y1: 4, x2: 25, y2: 4, class: 'edge ' + cls });
      if (style) line.setAttribute('style', style);
      s.appendChild(line);
      return s;
    };
    const dot = (fill, cls) => {
      const s = svgEl('svg', { width: 12, height: 12 });
      const c = svgEl('circle', { cx: 6, cy: 6, r: 4.5, class: 'node ' + (cls || '') });
      c.style.fill = fill;
      s.appendChild(c);
      return s;
    };
    const item = (sample, text) => {
      const span = el('span');
      span.appendChild(sample);
      span.appendChild(document.createTextNode(text));
      legend.appendChild(span);
    };
    item(lineSample('active', 'stroke:' + mix(EDGE_BASE.active, EDGE_HOT, 0) + ';stroke-width:1.6'), 'active');
    if (links.some((l) => l.kind === 'tree')) {
      item(lineSample('tree', 'stroke:' + mix(EDGE_BASE.tree, EDGE_HOT, 0) + ';stroke-width:1.6'), 'tree');
    }
    item(lineSample('passive', 'stroke-opacity:.7'), 'passive');
    item(lineSample('active', 'stroke:' + mix(EDGE_BASE.active, EDGE_HOT, 1) + ';stroke-width:4'), 'busy');
    for (const [role, color] of roleColors) item(dot(color), role || 'node');
    if (nodeList.some((n) => !n.v.up)) item(dot('#1f2937', 'down'), 'down');
  }

  // ---------------------------------------------------------------- the member table

  function renderTable() {
    $('member-count').textContent = '· ' + nodeList.length;
    for (const n of nodeList) {
      if (!n.row) {
        const tr = el('tr');
        tr.cells_ = {
          name: el('td', { class: 'name', 'data-col': 'name' }),
          role: el('td', { 'data-col': 'role' }),
          up: el('td', { 'data-col': 'status' }),
          rin: el('td', { class: 'num', 'data-col': 'in' }),
          rout: el('td', { class: 'num', 'data-col': 'out' }),
          bytes: el('td', { class: 'num', 'data-col': 'traffic' }),
        };
        for (const k in tr.cells_) tr.appendChild(tr.cells_[k]);
        tr.addEventListener('click', () => select(selected === n ? null : n, false));
        tr.addEventListener('pointerenter', () => hover(n, true));
        tr.addEventListener('pointerleave', () => hover(null));
        n.row = tr;
      }
      const c = n.row.cells_;
      n.row.setAttribute('data-node', n.name);
      n.row.classList.toggle('down', !n.v.up);
      n.row.classList.toggle('sel', n === selected);
      const swatch = el('span', { class: 'swatch' });
      swatch.style.background = n.v.up ? colorOf(n) : '#475569';
      c.name.replaceChildren(swatch, document.createTextNode(n.name));
      c.name.title = n.name + ' · ' + (n.v.addr || '');
      c.role.textContent = n.v.role || '–';
      c.up.replaceChildren(el('span', { class: 'badge ' + (n.v.up ? 'up' : 'down') }, n.v.up ? 'up' : 'down'));
      c.rin.textContent = fmtNum(n.rin);
      c.rout.textContent = fmtNum(n.rout);
      c.bytes.textContent = fmtBytes(n.bin + n.bout) + '/s';
    }
    const key = sort.key;
    const value = (n) => key === 'name' ? n.name : key === 'role' ? (n.v.role || '') :
      key === 'up' ? (n.v.up ? 1 : 0) : key === 'bytes' ? n.bin + n.bout : n[key];
    const sorted = nodeList.slice().sort((a, b) => {
      const va = value(a), vb = value(b);
      const c = typeof va === 'string' ? va.localeCompare(vb, undefined, { numeric: true }) : va - vb;
      return c * sort.dir || a.name.localeCompare(b.name, undefined, { numeric: true });
    });
    if (sorted.length !== rowOrder.length || sorted.some((n, i) => rowOrder[i] !== n)) {
      rowsEl.replaceChildren(...sorted.map((n) => n.row));
      rowOrder = sorted;
    }
    for (const th of document.querySelectorAll('th[data-sort]')) {
      th.classList.toggle('sorted', th.dataset.sort === sort.key);
      th.classList.toggle('asc', sort.dir > 0);
    }
  }

  // ---------------------------------------------------------------- details, hover, selection

  function detailsOf(n, container) {
    const dl = el('dl', { class: 'kv' });
    const row = (k, v) => { dl.appendChild(el('dt', {}, k)); dl.appendChild(el('dd', {}, v)); };
    const active = [], passive = [];
    for (const l of links) {
      const other = l.a === n ? l.b : l.b === n ? l.a : null;
      if (other) (l.kind === 'passive' ? passive : active).push(other.name);
    }
    active.sort();
    row('status', n.v.up ? 'up' : 'down');
    row('role', n.v.role || '–');
    row('address', n.v.addr || '–');
    row('incarnation', n.id);
    row('messages in', fmtNum(n.rin) + '/s · ' + fmtNum(Number(n.v.msgs_in)) + ' total');
    row('messages out', fmtNum(n.rout) + '/s · ' + fmtNum(Number(n.v.msgs_out)) + ' total');
    row('bytes in', fmtBytes(n.bin) + '/s · ' + fmtBytes(Number(n.v.bytes_in)) + ' total');
    row('bytes out', fmtBytes(n.bout) + '/s · ' + fmtBytes(Number(n.v.bytes_out)) + ' total');
    const shown = active.slice(0, 12).join(', ') + (active.length > 12 ? ' … +' + (active.length - 12) : '');
    row('neighbours', active.length ? active.length + ': ' + shown : 'none');
    row('passive', String(passive.length));
    container.appendChild(dl);
  }

  function renderDetails() {
    const box = $('details');
    const n = selected || hovered;
    box.replaceChildren();
    if (!n) {
      box.appendChild(el('h2', {}, 'Busiest links'));
      const busy = links.filter((l) => l.kind !== 'passive' && l.rate > 0).sort((a, b) => b.rate - a.rate).slice(0, 5);
      if (busy.length) {
        const list = el('ul', { class: 'busiest' });
        for (const l of busy) {
          const li = el('li');
          li.appendChild(el('span', {}, l.a.name + ' ↔ ' + l.b.name));
          li.appendChild(el('span', {}, fmtNum(l.rate) + ' msg/s'));
          list.appendChild(li);
        }
        box.appendChild(list);
      } else {
        box.appendChild(el('p', { class: 'muted' }, 'No traffic measured yet.'));
      }
      box.appendChild(el('p', { class: 'hint' }, 'Hover or click a node for its details; drag to pan, wheel to zoom.'));
      return;
    }
    const title = el('div', { class: 'title' });
    const swatch = el('span', { class: 'swatch' });
    swatch.style.background = n.v.up ? colorOf(n) : '#475569';
    title.appendChild(swatch);
    title.appendChild(el('span', { class: 'name' }, n.name));
    if (picture && n.name === picture.observer) title.appendChild(el('span', { class: 'muted' }, 'this node'));
    if (n === selected) title.appendChild(el('span', { class: 'muted' }, '· pinned'));
    box.appendChild(title);
    detailsOf(n, box);
  }

  function hover(n, fromTable) {
    hovered = n;
    tooltip.hidden = !n || fromTable === true;
    if (n && !fromTable) {
      tooltip.replaceChildren(el('b', {}, n.name));
      const dl = el('dl', { class: 'kv' });
      const row = (k, v) => { dl.appendChild(el('dt', {}, k)); dl.appendChild(el('dd', {}, v)); };
      row('status', (n.v.up ? 'up' : 'down') + (n.v.role ? ' · ' + n.v.role : ''));
      row('address', n.v.addr || '–');
      row('msg/s', fmtNum(n.rin) + ' in · ' + fmtNum(n.rout) + ' out');
      row('links', n.deg + ' active · ' + n.pdeg + ' passive');
      tooltip.appendChild(dl);
      placeTooltip();
    }
    if (!selected) renderDetails();
    highlight();
  }

  function placeTooltip() {
    if (!hovered || tooltip.hidden) return;
    const box = hovered.el.getBoundingClientRect();
    const panel = $('graph-panel').getBoundingClientRect();
    let x = box.right - panel.left + 10;
    let y = box.top - panel.top - 8;
    if (x + tooltip.offsetWidth > panel.width - 8) x = box.left - panel.left - tooltip.offsetWidth - 10;
    if (y + tooltip.offsetHeight > panel.height - 8) y = panel.height - tooltip.offsetHeight - 8;
    tooltip.style.left = Math.max(8, x) + 'px';
    tooltip.style.top = Math.max(8, y) + 'px';
  }

  function select(n, fromGraph) {
    if (selected && selected.el) selected.el.classList.remove('sel');
    if (selected && selected.row) selected.row.classList.remove('sel');
    selected = n;
    const hash = n ? '#node=' + encodeURIComponent(n.name) : '';
    if (location.hash !== hash) history.replaceState(null, '', hash || location.pathname + location.search);
    if (n) {
      n.el.classList.add('sel');
      n.row.classList.add('sel');
      if (fromGraph) n.row.scrollIntoView({ block: 'nearest' });
    }
    renderDetails();
    highlight();
  }

  function highlight() {
    const focus = selected || hovered;
    svg.classList.toggle('focus', !!focus);
    for (const e of document.querySelectorAll('#graph .hl')) e.classList.remove('hl');
    if (!focus || !focus.el) return;
    focus.el.classList.add('hl');
    focus.label.classList.add('hl');
    for (const m of focus.adj) { m.el.classList.add('hl'); m.label.classList.add('hl'); }
    for (const l of links) if (l.a === focus || l.b === focus) l.el.classList.add('hl');
  }

  // ---------------------------------------------------------------- pan, zoom, drag

  function toGraph(ev) {
    const m = svg.getScreenCTM();
    if (!m) return { x: 0, y: 0 };
    const p = new DOMPoint(ev.clientX, ev.clientY).matrixTransform(m.inverse());
    return { x: p.x, y: p.y };
  }
  function currentBox() {
    const b = svg.viewBox.baseVal;
    return { x: b.x, y: b.y, w: b.width, h: b.height };
  }
  function setBox(b) {
    view = b;
    svg.setAttribute('viewBox', [b.x, b.y, b.w, b.h].map((v) => v.toFixed(1)).join(' '));
    rescale();
    draw();
  }

  let dragging = null;
  function startDrag(ev, n) {
    ev.stopPropagation();
    dragging = { n, moved: false, id: ev.pointerId };
    svg.setPointerCapture(ev.pointerId);
  }
  let panning = null;
  svg.addEventListener('pointerdown', (ev) => {
    if (dragging) return;
    panning = { start: toGraph(ev), box: currentBox(), moved: false };
    svg.setPointerCapture(ev.pointerId);
    svg.classList.add('panning');
  });
  svg.addEventListener('pointermove', (ev) => {
    if (dragging) {
      const p = toGraph(ev);
      dragging.moved = true;
      dragging.n.fixed = true;
      dragging.n.x = p.x;
      dragging.n.y = p.y;
      alpha = Math.max(alpha, 0.12);
      draw();
      startAnimation();
    } else if (panning) {
      const p = toGraph(ev);
      const dx = p.x - panning.start.x, dy = p.y - panning.start.y;
      if (Math.abs(dx) + Math.abs(dy) > 0.5) panning.moved = true;
      if (panning.moved) {
        const b = currentBox();
        setBox({ x: b.x - dx, y: b.y - dy, w: b.w, h: b.h });
      }
    }
  });
  svg.addEventListener('pointerup', () => {
    if (dragging) {
      const { n, moved } = dragging;
      n.fixed = false;
      dragging = null;
      if (!moved) select(selected === n ? null : n, true);
    } else if (panning) {
      if (!panning.moved) select(null);
      panning = null;
    }
    svg.classList.remove('panning');
  });
  svg.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    const p = toGraph(ev);
    const b = currentBox();
    const f = Math.exp(Math.sign(ev.deltaY) * Math.min(Math.abs(ev.deltaY), 100) * 0.002);
    setBox({ x: p.x - (p.x - b.x) * f, y: p.y - (p.y - b.y) * f, w: b.w * f, h: b.h * f });
  }, { passive: false });
  $('fit').addEventListener('click', () => { view = null; fit(); });
  $('show-passive').addEventListener('change', () => { passiveTouched = true; applyToggles(); });
  $('show-labels').addEventListener('change', () => { labelsTouched = true; applyToggles(); });
  for (const th of document.querySelectorAll('th[data-sort]')) {
    th.addEventListener('click', () => {
      const key = th.dataset.sort;
      sort = { key, dir: sort.key === key ? -sort.dir : key === 'name' || key === 'role' ? 1 : -1 };
      renderTable();
    });
  }
  window.addEventListener('resize', () => { if (!view) fit(); });
  window.addEventListener('hashchange', () => {
    readHash();
    const n = wanted === null ? null : nodeList.find((m) => m.name === wanted);
    if (n) { wanted = null; select(n, true); }
  });

  poll();
})();

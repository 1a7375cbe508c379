// The wharf dashboard. No framework: the page is built from DOM nodes and `textContent`
// only (never HTML strings), so every name from the manifest or the ledger stays text.
// State arrives over Server-Sent Events (`/ui/events`); actions go through the API's own
// routes with the session cookie and the session's CSRF token.
'use strict';

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const SVG = 'http://www.w3.org/2000/svg';

const ui = {
  snapshot: null,
  selected: null,
  ledgerSize: -1,
  lastVerify: 0,
  pending: null, // the action waiting for its confirmation
};

const $ = (id) => document.getElementById(id);

// An element with attributes (set as attributes, never parsed) and children (nodes or text).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'onclick') node.addEventListener('click', value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function table(headers, rows) {
  return el('table', {},
    el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', { class: h.num ? 'num' : null }, h.text || h)))),
    el('tbody', {}, ...rows));
}

function say(text, error) {
  const box = $('message');
  box.textContent = text;
  box.className = error ? 'message error' : 'message';
  box.hidden = false;
}

class SessionEnded extends Error {}

async function api(method, path) {
  const options = { method, headers: { Accept: 'application/json' }, credentials: 'same-origin' };
  if (method !== 'GET') {
    options.headers['X-CSRF-Token'] = CSRF;
    options.headers['Content-Type'] = 'application/json';
    options.body = '{}';
  }
  const response = await fetch(path, options);
  if (response.status === 401) {
    window.location.assign('/ui/login');
    throw new SessionEnded('the session ended');
  }
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    throw new Error(body && body.error ? body.error.message : response.statusText);
  }
  return body;
}

// ── the stack as a dependency graph ────────────────────────────────────────────────────

function healthClass(service) {
  if (service.state === 'stopped' || service.state === 'exited') return 'idle';
  return service.health; // pass | warn | fail
}

function layers(services) {
  const byName = new Map(services.map((s) => [s.name, s]));
  const depth = new Map();
  const visit = (name, trail) => {
    if (depth.has(name)) return depth.get(name);
    if (trail.has(name)) return 0;
    trail.add(name);
    let d = 0;
    for (const dep of byName.get(name).dependencies) {
      if (byName.has(dep.name)) d = Math.max(d, visit(dep.name, trail) + 1);
    }
    trail.delete(name);
    depth.set(name, d);
    return d;
  };
  services.forEach((s) => visit(s.name, new Set()));
  return depth;
}

function cut(text, max) {
  return text.length > max ? text.slice(0, max - 1) + '…' : text;
}

function renderGraph(report) {
  const services = report.services;
  const depth = layers(services);
  const columns = [];
  for (const service of services) {
    const d = depth.get(service.name);
    (columns[d] = columns[d] || []).push(service);
  }
  const W = 210, H = 74, GX = 60, GY = 16;
  const place = new Map();
  columns.forEach((column, c) => column.forEach((s, r) => place.set(s.name, { x: 10 + c * (W + GX), y: 10 + r * (H + GY) })));
  const width = 20 + columns.length * (W + GX);
  const height = 20 + Math.max(1, ...columns.map((c) => c.length)) * (H + GY);
  const root = svg('svg', { width, height, viewBox: `0 0 ${width} ${height}`, role: 'img' });
  for (const service of services) {
    const to = place.get(service.name);
    for (const dep of service.dependencies) {
      const from = place.get(dep.name);
      if (!from) continue;
      const x1 = from.x + W, y1 = from.y + H / 2, x2 = to.x, y2 = to.y + H / 2;
      root.append(svg('path', {
        class: dep.critical ? 'edge' : 'edge optional',
        d: `M${x1},${y1} C${x1 + GX / 2},${y1} ${x2 - GX / 2},${y2} ${x2},${y2}`,
      }));
    }
  }
  for (const service of services) {
    const { x, y } = place.get(service.name);
    const selected = ui.selected === service.name ? ' selected' : '';
    const group = svg('g', {
      class: `node ${healthClass(service)}${selected}`,
      transform: `translate(${x},${y})`,
      tabindex: 0,
      'data-service': service.name,
      'data-health': healthClass(service),
    });
    group.append(svg('title', {}, service.name));
    group.append(svg('rect', { width: W, height: H, rx: 8 }));
    group.append(svg('text', { x: 10, y: 19, class: 'title' }, cut(service.name, 26)));
    const counts = service.external ? 'external' : `${service.ready}/${service.desired} ready`;
    group.append(svg('text', { x: 10, y: 37 }, `${service.state} · ${counts} · ${cut(service.version, 12)}`));
    let cause = '';
    if (service.blocked_by) cause = `blocked by ${service.blocked_by}`;
    else if (service.health === 'fail' && service.reason) cause = service.reason;
    else if (service.rollout) cause = `rollout: ${service.rollout}`;
    if (cause) group.append(svg('text', { x: 10, y: 56, class: 'cause' }, cut(cause, 30)));
    group.addEventListener('click', () => select(service.name));
    group.addEventListener('keydown', (e) => { if (e.key === 'Enter') select(service.name); });
    root.append(group);
  }
  return root;
}

function renderPages(report) {
  const pages = report.pages || [];
  if (!pages.length) {
    $('pages').replaceChildren();
    return;
  }
  $('pages').replaceChildren(el('p', {}, el('strong', {}, 'Open pages: '),
    ...pages.map((p) => el('span', { class: 'pill fail' }, `${p.alert}: ${p.root_cause}${p.affected.length ? ` (affects ${p.affected.join(', ')})` : ''}`))));
}

// ── one service ────────────────────────────────────────────────────────────────────────

function select(name) {
  ui.selected = name;
  render();
  loadConfig(name);
  loadHistory(name);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return '';
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h`;
  return `${Math.round(seconds / 86400)}d`;
}

function renderService(report) {
  const service = report.services.find((s) => s.name === ui.selected);
  if (!service) {
    $('service-title').textContent = '(select one in the graph)';
    $('service').replaceChildren();
    return;
  }
  $('service-title').textContent = service.name;
  const facts = el('p', { class: 'row' },
    el('span', { class: `pill ${service.health}` }, service.state),
    `version ${service.version}`,
    service.public_port ? ` · port ${service.public_port}` : '',
    ` · restarts ${service.restarts}`,
    service.probe_latency_ms !== undefined && service.probe_latency_ms !== null ? ` · probe ${service.probe_latency_ms} ms` : '',
    service.dependencies.length ? ` · depends on ${service.dependencies.map((d) => d.name + (d.critical ? '' : ' (optional)')).join(', ')}` : '');
  const why = [];
  if (service.blocked_by) why.push(el('p', { class: 'error' }, `Blocked by ${service.blocked_by}`));
  if (service.reason) why.push(el('p', { class: service.health === 'fail' ? 'error' : 'muted' }, service.reason));
  if (service.backups) why.push(el('p', { class: 'muted' }, `Backups: ${JSON.stringify(service.backups)}`));
  const rows = service.instances.map((i) => {
    const history = i.probe_history || [];
    return el('tr', {},
      el('td', {}, `#${i.ordinal}`),
      el('td', {}, i.version),
      el('td', {}, i.phase),
      el('td', {}, i.ready === true ? 'ready' : i.ready === false ? 'not ready' : ''),
      el('td', {}, el('span', { class: 'spark', title: 'the latest ready-probe results, oldest first' },
        ...history.map((h) => el('i', { class: h })))),
      el('td', { class: 'num' }, i.probe_latency_ms ?? ''),
      el('td', { class: 'num' }, i.restarts),
      el('td', {}, duration(i.uptime_secs)),
      el('td', {}, i.pid ?? ''),
      el('td', { class: 'details' }, [i.last_exit, i.error, i.probe_reason].filter(Boolean).join(' · ')));
  });
  $('service').replaceChildren(facts, ...why,
    table(['instance', 'version', 'phase', 'ready', 'probes', { text: 'ms', num: true }, { text: 'restarts', num: true }, 'uptime', 'pid', 'last exit / error'], rows),
    el('div', { id: 'config' }), el('div', { id: 'history' }));
  renderConfig();
  renderHistory();
}

async function loadHistory(name) {
  try {
    ui.history = { service: name, list: await api('GET', `/v1/services/${encodeURIComponent(name)}/health-history`) };
  } catch (error) {
    ui.history = { service: name, error: error.message };
  }
  renderHistory();
}

function renderHistory() {
  const box = $('history');
  if (!box || !ui.history || ui.history.service !== ui.selected) return;
  if (ui.history.error) {
    box.replaceChildren(el('p', { class: 'muted' }, `State history: ${ui.history.error}`));
    return;
  }
  const list = ui.history.list.slice(-12).reverse();
  box.replaceChildren(el('p', {}, el('strong', {}, 'State history'), el('span', { class: 'muted' }, ' (newest first)')),
    el('ol', { class: 'timeline' }, ...list.map((h) => el('li', {}, `${h.time} `, el('strong', {}, h.state), h.reason ? ` — ${h.reason}` : ''))));
}

async function loadConfig(name) {
  try {
    ui.config = { service: name, answer: await api('GET', `/v1/config/${encodeURIComponent(name)}`) };
  } catch (error) {
    ui.config = { service: name, error: error.message };
  }
  renderConfig();
}

function renderConfig() {
  const box = $('config');
  if (!box || !ui.config || ui.config.service !== ui.selected) return;
  if (ui.config.error) {
    box.replaceChildren(el('p', { class: 'muted' }, `Config: ${ui.config.error}`));
    return;
  }
  const { config, revisions } = ui.config.answer;
  const keys = Object.keys(config);
  const last = revisions[revisions.length - 1];
  box.replaceChildren(el('p', { class: 'muted' },
    keys.length ? `Config overrides: ${keys.join(', ')}` : 'No config overrides',
    last ? ` · revision ${last.revision} by ${last.actor} at ${last.created_at}` : ''));
}

// ── rollouts ───────────────────────────────────────────────────────────────────────────

function percent(part, whole) {
  return whole ? `${((100 * part) / whole).toFixed(1)}%` : '–';
}

// A part of the page is rebuilt only when what it shows changed (the graph, on every update
// of the stream otherwise).
const built = new Map();
function keep(key, data, build) {
  const text = JSON.stringify(data);
  const known = built.get(key);
  if (known && known.text === text) return known.node;
  const node = build(data);
  built.set(key, { text, node });
  return node;
}

// A rollout's card: its buttons are built once per rollout (so a click never loses its
// target to an update); what changes — phase, weights, traffic, verdict, timeline — is
// rebuilt beside them only when it changed.
const cards = new Map(); // service -> { id, node, head, body, buttons }

function renderRollouts(rollouts) {
  if (!rollouts.length) {
    cards.clear();
    $('rollouts').replaceChildren(el('p', { class: 'muted' }, 'No rollout under way.'));
    return;
  }
  const shown = rollouts.map((r) => {
    let card = cards.get(r.service);
    if (!card || card.id !== r.id) {
      card = rolloutCard(r);
      cards.set(r.service, card);
    }
    updateCard(card, r);
    return card.node;
  });
  for (const service of [...cards.keys()]) {
    if (!rollouts.some((r) => r.service === service)) cards.delete(service);
  }
  const box = $('rollouts');
  if (shown.length !== box.children.length || shown.some((c, i) => box.children[i] !== c)) {
    box.replaceChildren(...shown);
  }
}

function rolloutCard(r) {
  const buttons = ['pause', 'resume', 'promote', 'abort'].map((command) => el('button', {
    type: 'button',
    class: command === 'abort' ? 'danger' : null,
    'data-command': command,
    'data-service': r.service,
    onclick: () => ask(`${command[0].toUpperCase()}${command.slice(1)} the rollout of ${r.service} (${r.stable_version} → ${r.new_version})?${command === 'abort' ? ` Traffic goes back to ${r.stable_version}.` : ''}`,
      () => rolloutCommand(r.service, command)),
  }, command));
  const head = el('h3', {});
  const body = el('div', {});
  const node = el('div', { class: 'rollout', 'data-service': r.service },
    head, body, el('div', { class: 'row' }, ...buttons));
  return { id: r.id, node, head, body, buttons, text: '' };
}

function updateCard(card, r) {
  const done = Boolean(r.outcome);
  for (const button of card.buttons) button.disabled = done;
  const text = JSON.stringify(r);
  if (text === card.text) return;
  card.text = text;
  const status = r.outcome || r.phase;
  card.head.replaceChildren(
    `${r.service}: ${r.stable_version} → ${r.new_version}`,
    el('span', { class: `pill ${status}`, 'data-phase': status }, status),
    el('span', { class: 'muted' }, `${r.strategy}${r.step !== undefined && r.step !== null ? ` · step ${r.step + 1}/${r.steps}` : ''}`));
  const weights = el('div', { class: 'weights' });
  const stable = el('div', { class: 'stable' }, `${r.stable_version} ${r.weight_stable}%`);
  const fresh = el('div', { class: 'new' }, `${r.new_version} ${r.weight_new}%`);
  stable.style.width = `${r.weight_stable}%`;
  fresh.style.width = `${r.weight_new}%`;
  weights.append(stable, fresh);
  const traffic = Object.entries(r.traffic || {}).map(([version, t]) => el('tr', {},
    el('td', {}, version),
    el('td', { class: 'num' }, t.requests),
    el('td', { class: 'num' }, t.errors),
    el('td', { class: 'num' }, percent(t.errors, t.requests)),
    el('td', { class: 'num' }, t.p95_ms !== undefined && t.p95_ms !== null ? t.p95_ms.toFixed(1) : '–')));
  const verdict = r.verdict ? el('p', { class: 'details' }, `Analysis: ${JSON.stringify(r.verdict)}`) : el('p', { class: 'muted' }, 'Analysis: no verdict yet');
  const timeline = el('ol', { class: 'timeline' }, ...(r.history || []).map((h) => el('li', {},
    `${h.at || ''} ${h.action || ''} `, el('span', { class: 'details' }, h.details ? JSON.stringify(h.details) : ''))));
  card.body.replaceChildren(weights,
    table(['version', { text: 'requests', num: true }, { text: 'errors', num: true }, { text: 'error rate', num: true }, { text: 'p95 ms', num: true }], traffic),
    verdict,
    r.reason ? el('p', { class: 'muted' }, r.reason) : '',
    r.deadline && !done ? el('p', { class: 'muted' }, `Phase deadline ${r.deadline}`) : '',
    timeline);
}

async function rolloutCommand(service, command) {
  try {
    const view = await api('POST', `/v1/services/${encodeURIComponent(service)}/rollout/${command}`);
    say(`${command}: the rollout of ${service} is ${view.outcome || view.phase}`);
  } catch (error) {
    say(`${command} refused: ${error.message}`, true);
  }
}

function ask(text, action) {
  ui.pending = action;
  $('confirm-text').textContent = text;
  $('confirm').hidden = false;
  $('confirm-no').focus();
}

// ── config and secrets metadata ────────────────────────────────────────────────────────

async function loadSecrets() {
  try {
    const secrets = await api('GET', '/v1/secrets');
    const rows = secrets.map((s) => el('tr', {},
      el('td', {}, s.name), el('td', { class: 'num' }, s.version), el('td', {}, s.created_at),
      el('td', {}, s.actor), el('td', {}, s.origin), el('td', { class: 'details' }, s.fingerprint)));
    $('secrets').replaceChildren(rows.length
      ? table(['secret', { text: 'version', num: true }, 'set at', 'by', 'origin', 'fingerprint'], rows)
      : el('p', { class: 'muted' }, 'No secrets stored.'));
  } catch (error) {
    $('secrets').replaceChildren(el('p', { class: 'muted' }, error.message));
  }
}

// ── the audit log ──────────────────────────────────────────────────────────────────────

async function loadAudit() {
  try {
    const page = await api('GET', '/v1/audit/entries?limit=50');
    const rows = page.entries.map((e) => el('tr', { 'data-seq': e.seq },
      el('td', { class: 'num' }, e.seq), el('td', {}, e.time), el('td', {}, e.actor),
      el('td', {}, e.action), el('td', {}, e.target),
      el('td', { class: 'details' }, e.unreadable ? `unreadable: ${e.unreadable}` : JSON.stringify(e.details)),
      el('td', {},
        el('a', { href: `/v1/audit/entries/${e.seq}/proof`, class: 'proof', 'data-seq': e.seq, onclick: (event) => { event.preventDefault(); showProof(e.seq); } }, 'proof'))));
    $('audit').replaceChildren(el('p', { class: 'muted' }, `${page.size} entries; the newest ${page.entries.length}:`),
      table([{ text: 'seq', num: true }, 'time', 'actor', 'action', 'target', 'details', ''], rows));
  } catch (error) {
    $('audit').replaceChildren(el('p', { class: 'muted' }, error.message));
  }
}

async function showProof(seq) {
  const box = $('proof');
  try {
    const p = await api('GET', `/v1/audit/entries/${seq}/proof`);
    box.textContent = [`entry ${p.seq} in the tree of ${p.tree_size} entries`, `leaf: ${p.leaf}`,
      `leaf hash: ${p.leaf_hash}`, `root: ${p.root}`, `proof (leaf side first):`, ...p.proof.map((h) => `  ${h}`),
      p.checkpoint ? `signed checkpoint:\n${p.checkpoint}` : 'no signed checkpoint of this size yet'].join('\n');
  } catch (error) {
    box.textContent = error.message;
  }
  box.hidden = false;
}

async function verify() {
  ui.lastVerify = Date.now();
  const pill = $('verify');
  try {
    const v = await api('GET', '/v1/audit/verify');
    pill.className = v.ok ? 'pill pass' : v.unpinned ? 'pill warn' : 'pill fail';
    pill.textContent = v.ok
      ? `verified: ${v.size} entries, ${v.checkpoints_verified} signed checkpoint(s)`
      : v.unpinned
        ? 'not verified yet: no ledger key is pinned (run `wharf audit verify` once)'
        : `verification FAILED: ${v.failure}`;
  } catch (error) {
    pill.className = 'pill warn';
    pill.textContent = `not verified: ${error.message}`;
  }
}

// ── the live stream ────────────────────────────────────────────────────────────────────

function render() {
  const snapshot = ui.snapshot;
  if (!snapshot) return;
  const report = snapshot.status;
  $('stack-name').textContent = report.stack;
  const status = $('stack-status');
  status.textContent = report.status;
  status.className = `pill ${report.status}`;
  document.title = `wharf: ${report.stack} (${report.status})`;
  renderPages(report);
  const graphKey = {
    selected: ui.selected,
    services: report.services.map((s) => [s.name, s.state, s.health, s.ready, s.desired, s.version,
      s.blocked_by, s.reason, s.rollout, s.external, s.dependencies]),
  };
  const graph = keep('graph', graphKey, () => renderGraph(report));
  if ($('graph').firstChild !== graph) $('graph').replaceChildren(graph);
  renderRollouts(snapshot.rollouts);
  renderService(report);
}

let retry = 1000;

function connect() {
  const events = new EventSource('/ui/events');
  events.addEventListener('snapshot', (event) => {
    retry = 1000;
    const live = $('live');
    live.className = 'live on';
    live.textContent = 'live';
    ui.snapshot = JSON.parse(event.data);
    render();
    if (ui.snapshot.ledger_size !== ui.ledgerSize) {
      ui.ledgerSize = ui.snapshot.ledger_size;
      loadAudit();
      loadSecrets();
      if (ui.selected) loadHistory(ui.selected);
      if (Date.now() - ui.lastVerify > 30000) verify();
    }
    if (!document.body.dataset.ready) performance.mark('wharf-first-render');
    document.body.dataset.ready = 'true';
  });
  events.addEventListener('error', async () => {
    const live = $('live');
    live.className = 'live off';
    live.textContent = 'reconnecting';
    // The browser retries a dropped stream by itself, but gives up on one refused with an
    // error status: then ask who we are (`api` sends an ended session to the login form)
    // and, if the session holds, open a new stream after a growing pause.
    if (events.readyState !== EventSource.CLOSED) return;
    try {
      await api('GET', '/v1/whoami');
    } catch (error) {
      if (error instanceof SessionEnded) return;
    }
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 30000);
  });
}

function start() {
  $('confirm-no').addEventListener('click', () => { ui.pending = null; $('confirm').hidden = true; });
  $('confirm-yes').addEventListener('click', () => {
    const action = ui.pending;
    ui.pending = null;
    $('confirm').hidden = true;
    if (action) action();
  });
  $('verify-now').addEventListener('click', verify);
  $('logout').addEventListener('click', async () => {
    try {
      await api('POST', '/ui/logout');
    } finally {
      window.location.assign('/ui/login');
    }
  });
  connect();
}

start();

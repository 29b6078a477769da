/* Order-accuracy dashboard: vanilla JS, no build step, nothing fetched but the API.
 *
 * DOM hooks for browser tests (keep them stable):
 *   #signin               sign-in prompt, shown when a token is needed or refused
 *                         (#signin-reason says why; #token, #remember, #signin-form)
 *   #app                  all data; [hidden] and emptied while signed out
 *   body[data-auth]       pending | signed-in | open (the API asks no token) | signed-out
 *   #status[data-level]   status line (info|ok|warn|error): every network error lands here
 *   #live[data-live]      event stream: open | connecting | closed | off (not served)
 *   .station[data-station="station_1"][data-state="running"]  one card per station in
 *                         #stations; state as the API says (starting, running, backoff,
 *                         failing, stopped, finished) or unknown; .badge has the text label;
 *                         [data-field=uptime|restarts|fps|frames|last-order|exit]
 *   #orders               feed <tbody>, newest first: tr[data-order-key="{station}/{order}"]
 *                         [data-status][data-station][data-order]; click/Enter/Space opens
 *   #f-station #f-status #f-span  filters; #more loads older orders; #alert latest mismatch
 *   #detail[data-state=loading|ready|error][data-order-key][data-status]  Escape closes;
 *                         .frame[data-frame=N][data-loaded=loading|yes|error] img,
 *                         table.items tr[data-item][data-diff=ok|missing|extra|quantity|unchecked],
 *                         details.raw-json pre; #detail-close; #zoom #zoom-img full size
 *   svg#chart-orders g[data-hour], #chart-mismatch g[data-station][data-rate],
 *   #chart-latency g[data-bin][data-count]
 *   #expected tr[data-order-id]; #expected-form (#x-order, #x-items .item-row .name/.qty);
 *   #expected-msg[data-level] shows the server's message on 4xx
 * performance marks: oa-stations, oa-feed, oa-charts, oa-latency (each part first shown).
 * A token may be handed over as /#token=... (stored for the tab, then cut from the URL).
 */
(() => {
  'use strict';
  const TOKEN_KEY = 'oa.dashboard.token', PAGE = 100, MAX_ROWS = 2000, HOUR = 3600000;
  const TOKEN_RE = /^[A-Za-z0-9\-._~+/=]+$/, ORDER_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;
  const STATE = { starting: 'Starting', running: 'Running', backoff: 'Restarting', failing: 'FAILING', stopped: 'Stopped', finished: 'Finished', unknown: 'Unknown' };
  const STATUS = { validated: 'Validated', mismatch: 'MISMATCH', 'unknown-order': 'Unknown order', 'no-frames': 'No frames', 'recognition-failed': 'Recognition failed', 'awaiting-order': 'Awaiting order' };

  const $ = (id) => document.getElementById(id);
  const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  const esc = (s) => String(s == null ? '' : s).replace(/[&<>"']/g, (c) => ESC[c]);
  const num = (v) => (typeof v === 'number' && isFinite(v) ? v : null);
  const arr = (v) => (Array.isArray(v) ? v : []);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const pad = (n) => String(n).padStart(2, '0');
  const clock = (ms) => { const d = new Date(ms); return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`; };
  const hh = (ms) => pad(new Date(ms).getHours());
  const when = (ms) => {
    if (ms == null) return '—';
    const d = new Date(ms);
    if (d.toDateString() === new Date().toDateString()) return clock(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
  };
  const dur = (ms) => ms == null ? '—' : ms < 1000 ? Math.round(ms) + ' ms' : ms < 60000 ? (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s' : (ms / 60000).toFixed(1) + ' min';
  const uptime = (s) => {
    if (!(s > 0)) return '—';
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return d ? `${d} d ${h} h` : h ? `${h} h ${pad(m)} min` : m ? `${m} min ${pad(s % 60)} s` : `${s} s`;
  };
  const pct = (x) => x == null ? '—' : (x * 100).toFixed(x >= 0.1 || x === 0 ? 0 : 1) + ' %';
  const plural = (n, w, ws) => `${n} ${n === 1 ? w : ws || w + 's'}`;
  const keyOf = (r) => r.station_id + '/' + r.order_id;
  // When the bag was complete (as stats::completed_ms): the marker's time, else the last frame's.
  const timeOf = (r) => num(r.marker_last_modified_ms) != null ? r.marker_last_modified_ms : num(r.manifest_last_unix_ms);
  const items = (l) => arr(l).map((i) => `${i.quantity} × ${i.name}`).join(', ');
  const enc = encodeURIComponent;
  const orderPath = (s, o) => `/api/orders/${enc(s)}/${enc(o)}`;
  const badge = (cls, text) => `<span class="badge s-${esc(cls)}">${esc(text)}</span>`;
  // An SVG (or HTML) element as text; attribute values escaped.
  const tag = (name, a, inner) => `<${name}${Object.keys(a).map((k) => ` ${k}="${esc(a[k])}"`).join('')}>${inner || ''}</${name}>`;
  const f1 = (v) => Math.round(v * 10) / 10;

  const S = {
    gen: 0, token: '', auth: 'pending', stations: new Map(), frames: new Map(), last: new Map(),
    orders: new Map(), fresh: new Set(), next: null, seen: new Set(), seenQ: [], latency: new Map(),
    names: new Set(), hours: null, hourBase: 0, stream: {}, urls: [], detail: null, back: null,
    focusKey: null, tick: 0, timer: null, busy: {}, src: null, feedSeq: 0,
  };
  class ApiError { constructor(status, message) { this.status = status; this.message = message; } }
  const STALE = { stale: true }; // thrown for answers that arrive after a sign-out

  // ---- status line ---------------------------------------------------------------------
  function setStatus(level, text, src) {
    const el = $('status');
    el.dataset.level = level;
    el.textContent = (level === 'error' || level === 'warn' ? clock(Date.now()) + ' — ' : '') + text;
    S.src = src || null;
  }
  const liveText = () => S.stream.live === 'open' ? 'Live: new results appear as they are made.'
    : S.stream.off ? 'Live events are not served here; the list refreshes every 10 s.' : 'Connecting to live updates…';
  const clearStatus = (src) => { if (S.src === src) setStatus('ok', liveText()); };
  function report(e, what) {
    if (!e || e.stale || e.status === 401 || e.status === 403) return; // auth: the sign-in says it
    const m = e instanceof ApiError ? (e.status ? `HTTP ${e.status}: ` : '') + e.message : (e.message || String(e));
    setStatus('error', `${what}: ${m}`, what);
  }

  // ---- network -------------------------------------------------------------------------
  const authed = (h) => { if (S.token) h.Authorization = 'Bearer ' + S.token; return h; };
  async function errorText(res) {
    let text = '';
    try { text = await res.text(); } catch (e) { /* body lost */ }
    try { const j = JSON.parse(text); if (typeof j.error === 'string') return j.error; } catch (e) { /* not JSON */ }
    return text.trim().slice(0, 300) || res.statusText || 'request failed';
  }
  /* fetch with the token. Throws ApiError (status 0: no answer), or STALE after a sign-out.
     A 401, or a 403 on a read, signs out; a 403 on a write is for the caller to show. */
  async function api(path, o = {}) {
    const gen = S.gen, ctrl = new AbortController(), limit = o.timeout || 20000, method = o.method || 'GET';
    const timer = setTimeout(() => ctrl.abort(), limit);
    const init = { method, headers: authed({ Accept: o.accept || 'application/json' }), signal: ctrl.signal, cache: 'no-store', credentials: 'same-origin' };
    if (o.body !== undefined) { init.headers['Content-Type'] = 'application/json'; init.body = JSON.stringify(o.body); }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      if (gen !== S.gen) throw STALE;
      throw new ApiError(0, ctrl.signal.aborted ? `no answer within ${limit / 1000} s` : `cannot reach the orchestrator (${e.message || e})`);
    } finally { clearTimeout(timer); }
    if (gen !== S.gen) throw STALE;
    if (res.ok) return res;
    const err = new ApiError(res.status, await errorText(res));
    if (gen !== S.gen) throw STALE;
    if (res.status === 401 || (res.status === 403 && method === 'GET')) authFailed(err);
    throw err;
  }
  async function getJSON(path) {
    const res = await api(path), gen = S.gen;
    let body;
    try { body = await res.json(); } catch (e) { throw new ApiError(res.status, 'the answer is not JSON'); }
    if (gen !== S.gen) throw STALE;
    return { body, res };
  }

  // ---- token storage ---------------------------------------------------------------------
  const stores = () => ['sessionStorage', 'localStorage'].map((k) => { try { return window[k]; } catch (e) { return null; } }).filter(Boolean);
  const loadToken = () => { for (const s of stores()) { try { const t = s.getItem(TOKEN_KEY); if (t) return t; } catch (e) { /* blocked */ } } return ''; };
  const forgetToken = () => stores().forEach((s) => { try { s.removeItem(TOKEN_KEY); } catch (e) { /* blocked */ } });
  function saveToken(t, remember) {
    forgetToken();
    try { window[remember ? 'localStorage' : 'sessionStorage'].setItem(TOKEN_KEY, t); } catch (e) { /* memory only */ }
  }
  function tokenFromHash() {
    const m = /(?:^#|&)token=([^&]*)/.exec(location.hash || '');
    if (!m) return;
    let t = '';
    try { t = decodeURIComponent(m[1]); } catch (e) { /* malformed */ }
    try { history.replaceState(null, '', location.pathname + location.search); } catch (e) { location.hash = ''; }
    if (TOKEN_RE.test(t)) saveToken(t, false);
  }

  // ---- sign-in -------------------------------------------------------------------------
  function setAuth(a) { S.auth = a; document.body.dataset.auth = a; }
  function teardown() {
    S.gen++;
    try { if (S.stream.ctrl) S.stream.ctrl.abort(); } catch (e) { /* done */ }
    S.stream = {};
    setLive('closed');
    clearInterval(S.timer);
    closeZoom(true);
    closeDetail(true);
    S.timer = S.detail = null;
    for (const k of ['stations', 'frames', 'last', 'orders', 'fresh', 'seen', 'latency', 'names']) S[k].clear();
    Object.assign(S, { seenQ: [], hours: null, next: null, busy: {}, focusKey: null, armed: null });
    for (const id of ['stations', 'orders', 'expected', 'x-items', 'item-names', 'chart-orders', 'chart-mismatch', 'chart-latency',
      'chart-orders-desc', 'chart-mismatch-desc', 'chart-latency-desc', 'feed-summary', 'expected-note', 'expected-msg', 'alert']) $(id).innerHTML = '';
    const fs = $('f-station');
    while (fs.options.length > 1) fs.remove(1);
    fillForm('', null);
    for (const id of ['alert', 'more', 'orders-empty', 'app', 'signout']) $(id).hidden = true;
  }
  function showSignin(reason) {
    teardown();
    setAuth('signed-out');
    $('signin-reason').textContent = reason;
    $('signin').hidden = false;
    setStatus('warn', reason, 'auth');
    $('token').value = '';
    $('token').focus();
  }
  function authFailed(err) {
    if (S.auth === 'signed-out') return;
    const had = !!S.token;
    S.token = '';
    forgetToken();
    showSignin(had ? `The server refused this token (${err.status}: ${err.message}). Sign in again.`
      : 'This orchestrator needs an API token. Sign in to see the stations and orders.');
  }
  function onSignin(ev) {
    ev.preventDefault();
    const t = $('token').value.trim();
    const why = !t ? 'Enter a token.' : !TOKEN_RE.test(t) ? 'A token holds only letters, digits and - . _ ~ + / =' : null;
    if (why) { $('signin-reason').textContent = why; $('token').focus(); return; }
    S.token = t;
    saveToken(t, $('remember').checked);
    $('token').value = '';
    boot();
  }
  function onSignout() {
    S.token = '';
    forgetToken();
    showSignin('Signed out. Enter a token to sign in again.');
  }
  async function boot() {
    teardown();
    setAuth('pending');
    setStatus('info', 'Connecting…', 'boot');
    const gen = S.gen;
    let got;
    try {
      got = await getJSON('/api/stations');
    } catch (e) {
      if (e.stale || S.auth === 'signed-out') return;
      setStatus('error', `Cannot load the dashboard (${e.status ? 'HTTP ' + e.status + ': ' : ''}${e.message}); trying again in 5 s.`, 'boot');
      await sleep(5000);
      if (gen === S.gen) boot();
      return;
    }
    $('signin').hidden = true;
    $('app').hidden = false;
    setAuth(S.token ? 'signed-in' : 'open');
    $('signout').hidden = !S.token;
    setStatus('ok', 'Connected.');
    renderStations(arr(got.body));
    loadFeed(true);
    loadExpected();
    setTimeout(() => { if (gen === S.gen) { loadLastOrders(); loadCharts(); loadLatencySample(); } }, 300);
    streamLoop(gen);
    S.timer = setInterval(safe(onTick), 5000);
  }
  function onTick() {
    S.tick++;
    if (document.hidden && S.tick % 6) return;
    pollStations();
    if (S.tick % (S.stream.live === 'open' ? 6 : 2) === 0) loadFeed(false); // 30 s, 10 s without a stream
    if (S.tick % 60 === 0 || (S.hours && hourBase() !== S.hourBase)) loadCharts();
  }
  // performance.mark of the first time each part is shown (scripts/bench_dashboard reads them).
  const marked = new Set();
  const markOnce = (name) => { if (!marked.has(name)) { marked.add(name); performance.mark(name); } };
  const safe = (fn) => function (...a) {
    try {
      const r = fn.apply(this, a);
      if (r && r.catch) r.catch((e) => report(e, 'Dashboard'));
      return r;
    } catch (e) { report(e, 'Dashboard'); }
  };

  // ---- stations ------------------------------------------------------------------------
  async function pollStations() {
    if (S.busy.stations) return;
    S.busy.stations = true;
    try {
      renderStations(arr((await getJSON('/api/stations')).body));
      clearStatus('Loading the stations');
    } catch (e) {
      report(e, 'Loading the stations');
      if (!e.stale) document.querySelectorAll('.station').forEach((c) => { c.dataset.stale = 'true'; });
    } finally { S.busy.stations = false; }
  }
  function renderStations(list) {
    const now = performance.now(), box = $('stations'), ids = new Set();
    for (const st of list) {
      if (!st || typeof st.station_id !== 'string') continue;
      const id = st.station_id, prev = S.frames.get(id), n = st.frames && num(st.frames.received);
      ids.add(id);
      // Frames per second: frames.received (a counter) between two polls.
      if (n != null) {
        if (prev && now - prev.t < 1000) st.fps = prev.fps;
        else {
          if (prev && n >= prev.n) st.fps = (n - prev.n) / ((now - prev.t) / 1000);
          S.frames.set(id, { t: now, n, fps: st.fps });
        }
      }
      S.stations.set(id, st);
      renderStation(st);
    }
    if (list.length) box.querySelectorAll('.station').forEach((c) => { if (!ids.has(c.dataset.station)) c.remove(); });
    else if (!box.firstChild) box.innerHTML = '<p class="muted empty">No stations are supervised by this orchestrator.</p>';
    fillStationFilter();
    markOnce('oa-stations');
  }
  function card(id) {
    const box = $('stations');
    const found = [...box.querySelectorAll('.station')].find((c) => c.dataset.station === id);
    if (found) return found;
    const e = box.querySelector('.empty');
    if (e) e.remove();
    const c = document.createElement('article');
    c.className = 'station';
    c.dataset.station = id;
    c.setAttribute('aria-label', 'Station ' + id);
    c.innerHTML = '<h3><span class="name"></span><span class="badge" data-field="state"></span></h3><dl>' +
      ['Uptime', 'Restarts', 'Frames/s', 'Frames', 'Last order'].map((l) => `<dt>${l}</dt><dd data-field="${l === 'Frames/s' ? 'fps' : l.toLowerCase().replace(' ', '-')}"></dd>`).join('') +
      '<dd class="exit" data-field="exit"></dd></dl>';
    c.querySelector('.name').textContent = id;
    box.appendChild(c);
    return c;
  }
  function setField(c, f, text) {
    const el = c.querySelector(`[data-field="${f}"]`);
    if (el.textContent !== text) el.textContent = text;
    return el;
  }
  function renderStation(st) {
    const c = card(st.station_id), state = STATE[st.state] ? st.state : 'unknown', run = state === 'running';
    const fails = num(st.consecutive_failures) || 0, fr = st.frames || {};
    c.dataset.state = state;
    c.dataset.restarts = String(num(st.restarts) || 0);
    delete c.dataset.stale;
    setField(c, 'state', STATE[state] + (STATE[st.state] ? '' : ` (${st.state})`)).className = 'badge s-' + state;
    setField(c, 'uptime', run ? uptime(st.uptime_s) : '—');
    setField(c, 'restarts', (num(st.restarts) || 0) + (fails ? ` (${fails} failed in a row)` : ''));
    setField(c, 'fps', run && st.fps != null ? st.fps.toFixed(1) : '—');
    setField(c, 'frames', `${num(fr.stored) || 0} stored` + (fr.dropped ? `, ${fr.dropped} dropped` : ''));
    setField(c, 'exit', !run && st.last_exit ? 'Last exit: ' + st.last_exit : '');
    renderLast(st.station_id);
  }
  function renderLast(id) {
    const dd = card(id).querySelector('[data-field="last-order"]'), r = S.last.get(id);
    if (!r) { dd.textContent = '—'; return; }
    const label = `${r.order_id} · ${STATUS[r.status] || r.status} · ${when(timeOf(r))}`;
    let b = dd.querySelector('button');
    if (!b) {
      dd.textContent = '';
      b = dd.appendChild(document.createElement('button'));
      b.type = 'button';
      b.className = 'btn link';
    }
    if (b.textContent !== label) b.textContent = label;
    b.dataset.open = keyOf(r);
    b.setAttribute('aria-label', `Open the last order of ${id}: ${label}`);
  }
  function noteLast(r) {
    const cur = S.last.get(r.station_id);
    if (cur && (timeOf(r) || 0) < (timeOf(cur) || 0)) return;
    S.last.set(r.station_id, r);
    if (S.stations.has(r.station_id)) renderLast(r.station_id);
  }
  async function loadLastOrders() {
    await Promise.all([...S.stations.keys()].map(async (id) => {
      try {
        for (const r of arr((await getJSON(`/api/orders?limit=1&station=${enc(id)}`)).body)) if (r && r.station_id) { noteLast(r); noteSample(r); }
      } catch (e) { report(e, 'Loading the last orders'); }
    }));
  }
  function fillStationFilter() {
    const sel = $('f-station'), have = new Set([...sel.options].map((o) => o.value));
    for (const id of new Set([...S.stations.keys(), ...S.last.keys()])) if (!have.has(id)) sel.add(new Option(id, id));
  }

  // ---- feed ----------------------------------------------------------------------------
  const filters = () => ({ station: $('f-station').value, status: $('f-status').value, span: Number($('f-span').value) || 0 });
  function nextLink(res) {
    const m = /<([^>]+)>\s*;\s*rel="?next"?/.exec(res.headers.get('Link') || '');
    try { const u = new URL(m[1], location.href); return u.origin === location.origin ? u.pathname + u.search : null; } catch (e) { return null; }
  }
  function noteResult(r, t) {
    const k = keyOf(r), cur = S.orders.get(k);
    if (cur && (num(cur.r.revision) || 0) > (num(r.revision) || 0)) return false;
    S.orders.set(k, { r, t: timeOf(r) != null ? timeOf(r) : t != null ? t : cur ? cur.t : null });
    noteSample(r);
    if (S.orders.size > MAX_ROWS * 2) sorted([...S.orders.values()]).slice(MAX_ROWS).forEach((o) => S.orders.delete(keyOf(o.r)));
    return true;
  }
  /* Item names (for the form) and timings (for the latency chart) of every result seen. */
  function noteSample(r) {
    for (const i of [...arr(r.expected), ...arr(r.detected)]) if (i && i.name) S.names.add(i.name);
    const total = r.timings_ms && num(r.timings_ms.total);
    if (total > 0 && r.status !== 'awaiting-order') {
      S.latency.set(keyOf(r) + '#' + (r.revision || 0), total);
      if (S.latency.size > 3000) S.latency.delete(S.latency.keys().next().value);
    }
  }
  // Newest first, then by key: the API's order (listing.rs).
  const sorted = (l) => l.sort((a, b) => ((b.t == null ? -Infinity : b.t) - (a.t == null ? -Infinity : a.t)) || (keyOf(a.r) < keyOf(b.r) ? -1 : keyOf(a.r) > keyOf(b.r) ? 1 : 0));
  const add = (list) => { for (const r of arr(list)) if (r && r.station_id) noteResult(r); };
  async function loadFeed(reset) {
    if (S.busy.feed && !reset) return;
    const f = filters(), my = ++S.feedSeq;
    S.busy.feed = true;
    try {
      const got = await getJSON(`/api/orders?limit=${PAGE}` + (f.station ? '&station=' + enc(f.station) : '') + (f.status ? '&status=' + enc(f.status) : ''));
      if (my !== S.feedSeq) return;
      if (reset) { S.orders.clear(); S.next = nextLink(got.res); }
      add(got.body);
      for (const r of arr(got.body)) if (r && r.station_id) noteLast(r);
      // A time span: page on while the oldest loaded is inside it (10 pages at most).
      for (let p = 0; reset && f.span && S.next && p < 10 && oldest() >= Date.now() - f.span; p++) {
        const more = await getJSON(S.next);
        if (my !== S.feedSeq) return;
        add(more.body);
        S.next = nextLink(more.res);
      }
      renderFeed();
      markOnce('oa-feed');
      clearStatus('Loading the orders');
    } catch (e) { report(e, 'Loading the orders'); } finally { if (my === S.feedSeq) S.busy.feed = false; }
  }
  const oldest = () => Math.min(...[...S.orders.values()].map((o) => (o.t == null ? Infinity : o.t)));
  async function loadMore() {
    if (!S.next || S.busy.more) return;
    S.busy.more = $('more').disabled = true;
    try {
      const got = await getJSON(S.next);
      add(got.body);
      S.next = nextLink(got.res);
      renderFeed();
    } catch (e) { report(e, 'Loading older orders'); } finally { S.busy.more = $('more').disabled = false; }
  }
  function diffText(r) {
    const p = [], m = (label, text) => p.push(`<span class="m">${label}:</span> ${esc(text)}`);
    if (arr(r.missing).length) m('Missing', items(r.missing));
    if (arr(r.extra).length) m('Extra', items(r.extra));
    if (arr(r.quantity_mismatch).length) m('Quantity', r.quantity_mismatch.map((q) => `${q.name} ${q.detected}/${q.expected}`).join(', '));
    if (!p.length && r.error) p.push(esc(r.error));
    if (!p.length && r.status === 'validated') p.push(`All ${arr(r.expected).reduce((s, i) => s + (i.quantity || 0), 0)} items`);
    return p.join(' · ');
  }
  let feedQueued = false;
  function queueFeed() {
    if (feedQueued) return;
    feedQueued = true;
    setTimeout(() => { feedQueued = false; safe(renderFeed)(); }, 60);
  }
  function renderFeed() {
    const f = filters(), now = Date.now(), tbody = $('orders');
    const shown = sorted([...S.orders.values()].filter(({ r, t }) => (!f.station || r.station_id === f.station) &&
      (!f.status || r.status === f.status) && (!f.span || (t != null && t >= now - f.span)))).slice(0, MAX_ROWS);
    const hadFocus = tbody.contains(document.activeElement);
    // Keep the keyboard's place while a row has focus; else Tab enters at the newest.
    if (!(hadFocus || S.detail) || !shown.some((o) => keyOf(o.r) === S.focusKey)) S.focusKey = shown.length ? keyOf(shown[0].r) : null;
    let mism = 0;
    tbody.innerHTML = shown.map(({ r, t }) => {
      const k = keyOf(r), lat = r.timings_ms && num(r.timings_ms.total);
      if (r.status === 'mismatch') mism++;
      return `<tr data-order-key="${esc(k)}" data-station="${esc(r.station_id)}" data-order="${esc(r.order_id)}" data-status="${esc(r.status)}"` +
        ` tabindex="${k === S.focusKey ? 0 : -1}"${k === S.detail ? ' aria-selected="true"' : ''}${S.fresh.has(k) ? ' class="fresh"' : ''}>` +
        `<td class="time">${esc(when(t))}</td><td>${esc(r.station_id)}</td><td><strong>${esc(r.order_id)}</strong></td>` +
        `<td>${badge(STATUS[r.status] ? r.status : 'unknown', STATUS[r.status] || r.status)}</td><td class="diff">${diffText(r)}</td>` +
        `<td class="num">${esc(lat ? dur(lat) : '—')}</td></tr>`;
    }).join('');
    S.fresh.clear();
    if (hadFocus && S.focusKey) { const row = rowOf(S.focusKey); if (row) row.focus({ preventScroll: true }); }
    $('orders-empty').hidden = shown.length > 0;
    $('more').hidden = !S.next || (f.span && oldest() < now - f.span);
    $('feed-summary').textContent = plural(shown.length, 'order') + ' shown' + (mism ? ', ' + plural(mism, 'mismatch', 'mismatches') : '') +
      (S.next ? '; older ones on the server.' : '.');
    fillStationFilter();
    fillNames();
    renderLatency();
  }
  const rowOf = (k) => [...$('orders').rows].find((tr) => tr.dataset.orderKey === k) || null;
  function onRowKey(ev) {
    const tr = ev.target.closest('tr[data-order-key]');
    if (!tr) return;
    const rows = [...$('orders').rows], i = rows.indexOf(tr);
    if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); openRow(tr); return; }
    const to = { ArrowDown: rows[i + 1], ArrowUp: rows[i - 1], Home: rows[0], End: rows[rows.length - 1] }[ev.key];
    if (to) { ev.preventDefault(); focusRow(to); }
  }
  function focusRow(tr) {
    for (const r of $('orders').querySelectorAll('tr[tabindex="0"]')) r.tabIndex = -1;
    tr.tabIndex = 0;
    S.focusKey = tr.dataset.orderKey;
    tr.focus();
  }
  function openRow(tr) { focusRow(tr); openDetail(tr.dataset.station, tr.dataset.order, tr); }

  // ---- events: SSE read with fetch (EventSource cannot send the token) ---------------------
  function setLive(v) {
    S.stream.live = v;
    const t = { open: 'live', connecting: 'reconnecting', closed: 'off', off: 'polling' }[v];
    $('live').dataset.live = v;
    $('live').querySelector('.live-text').textContent = t;
    $('live').setAttribute('aria-label', 'Live updates: ' + t);
  }
  /* text/event-stream: data:/event:/id:/retry: fields, ':' comments, a blank line ends an
     event; lines end with CRLF, LF or CR (a CR at a chunk's end waits for a possible LF). */
  function SseParser(onEvent) {
    let buf = '', data = [], type = '', first = true;
    this.lastId = null;
    this.retry = null;
    const line = (l) => {
      if (l === '') {
        if (data.length) { const ev = { type: type || 'message', data: data.join('\n'), id: this.lastId }; data = []; type = ''; onEvent(ev); }
        type = '';
        return;
      }
      if (l[0] === ':') return;
      const c = l.indexOf(':'), field = c < 0 ? l : l.slice(0, c);
      let v = c < 0 ? '' : l.slice(c + 1);
      if (v[0] === ' ') v = v.slice(1);
      if (field === 'data') data.push(v);
      else if (field === 'event') type = v;
      else if (field === 'id' && !v.includes('\0')) this.lastId = v;
      else if (field === 'retry' && /^\d+$/.test(v)) this.retry = Number(v);
    };
    this.push = (text, end) => {
      buf += text;
      if (first && buf) { first = false; if (buf[0] === '\ufeff') buf = buf.slice(1); }
      const re = /\r\n|\r|\n/g;
      let start = 0, m;
      while ((m = re.exec(buf))) {
        if (m[0] === '\r' && m.index + 1 === buf.length && !end) break;
        line(buf.slice(start, m.index));
        start = re.lastIndex;
      }
      buf = end ? '' : buf.slice(start);
    };
  }
  async function streamLoop(gen) {
    let backoff = 1000, gap = false;
    while (gen === S.gen) {
      const ctrl = new AbortController();
      let opened = 0, why = '', dog = null;
      S.stream.ctrl = ctrl;
      setLive('connecting');
      try {
        const headers = authed({ Accept: 'text/event-stream' });
        if (S.stream.lastId) headers['Last-Event-ID'] = S.stream.lastId;
        const res = await fetch('/api/events', { headers, signal: ctrl.signal, cache: 'no-store', credentials: 'same-origin' });
        if (gen !== S.gen) return;
        if (res.status === 401 || res.status === 403) { authFailed(new ApiError(res.status, await errorText(res))); return; }
        if (res.status === 404) { // not published by this orchestrator: poll, and look again in a minute
          S.stream.off = true;
          setLive('off');
          setStatus('warn', `Live events: ${await errorText(res)}. The list refreshes every 10 s.`, 'events');
          await sleep(60000);
          continue;
        }
        if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await errorText(res)}`);
        S.stream.off = false;
        opened = Date.now();
        setLive('open');
        clearStatus('events');
        if (!S.src) setStatus('ok', liveText());
        if (gap) loadFeed(false); // catch up on what the gap may have missed
        const parser = new SseParser(safe(handleEvent)), reader = res.body.getReader(), dec = new TextDecoder();
        const watch = () => { clearTimeout(dog); dog = setTimeout(() => { why = 'no data for 45 s'; ctrl.abort(); }, 45000); };
        for (watch(); ;) {
          const { value, done } = await reader.read();
          if (gen !== S.gen) { ctrl.abort(); return; }
          if (done) { parser.push(dec.decode(), true); break; }
          watch();
          parser.push(dec.decode(value, { stream: true }), false);
          if (parser.lastId) S.stream.lastId = parser.lastId;
          if (parser.retry != null) backoff = Math.max(500, parser.retry);
        }
        why = 'the server ended the stream';
      } catch (e) {
        if (gen !== S.gen) return;
        why = why || e.message || String(e);
      } finally { clearTimeout(dog); }
      if (gen !== S.gen) return;
      gap = true;
      if (opened && Date.now() - opened > 30000) backoff = 1000;
      const wait = Math.round(backoff * (0.8 + Math.random() * 0.4));
      backoff = Math.min(backoff * 2, 30000);
      setLive('connecting');
      setStatus('warn', `Live updates interrupted (${why}); reconnecting in ${Math.round(wait / 1000)} s. The list still refreshes every 10 s.`, 'events');
      await sleep(wait);
    }
  }
  function handleEvent(ev) {
    let e;
    try { e = JSON.parse(ev.data); } catch (x) { return; }
    if (!e || typeof e !== 'object') return;
    const id = e.id || ev.id, type = e.type || ev.type;
    if (id) { // delivery is at least once: drop what was seen (docs/events.md)
      if (S.seen.has(id)) return;
      S.seen.add(id);
      if (S.seenQ.push(id) > 5000) S.seen.delete(S.seenQ.shift());
    }
    if (type === 'order.completed' || type === 'order.mismatch') onOrderEvent(e);
    else if (type === 'station.state') onStationEvent(e);
  }
  function onOrderEvent(e) {
    const r = e.data;
    if (!r || typeof r !== 'object' || !r.station_id || !r.order_id || !noteResult(r, num(e.time_unix_ms))) return;
    const k = keyOf(r);
    S.fresh.add(k);
    noteLast(r);
    queueFeed();
    queueHourRefresh();
    if (r.status === 'mismatch') {
      $('alert').innerHTML = `<span>Mismatch at ${esc(r.station_id)}, order ${esc(r.order_id)}` +
        (arr(r.missing).length ? ' — missing ' + esc(items(r.missing)) : '') + (arr(r.extra).length ? ' — extra ' + esc(items(r.extra)) : '') +
        `</span><button type="button" class="btn small" data-open="${esc(k)}">Open</button><button type="button" class="btn small ghost" data-dismiss="1">Dismiss</button>`;
      $('alert').hidden = false;
    }
    if (S.detail === k) renderDetail(r, true);
  }
  function onStationEvent(e) {
    const d = e.data || {}, st = S.stations.get(e.station_id);
    if (st) {
      if (d.state) st.state = d.state;
      if (num(d.restarts) != null) st.restarts = d.restarts;
      if (d.last_exit !== undefined) st.last_exit = d.last_exit;
      if (d.state !== 'running') st.uptime_s = 0;
      renderStation(st);
    }
    setTimeout(safe(pollStations), st ? 1500 : 0);
  }

  // ---- order detail ----------------------------------------------------------------------
  function setInert(on) { for (const el of [$('app'), $('status'), $('alert'), document.querySelector('.top')]) el.inert = on; }
  async function openDetail(station, order, from) {
    const k = station + '/' + order, d = $('detail'), cached = S.orders.get(k);
    S.detail = k;
    S.back = from && from.dataset && from.dataset.orderKey ? k : from || document.activeElement;
    d.hidden = false;
    d.dataset.orderKey = k;
    setInert(true);
    for (const tr of $('orders').rows) if (tr.dataset.orderKey === k) tr.setAttribute('aria-selected', 'true'); else tr.removeAttribute('aria-selected');
    if (cached) renderDetail(cached.r, false);
    else {
      d.dataset.state = 'loading';
      delete d.dataset.status;
      $('detail-title').textContent = `Order ${order} · ${station}`;
      $('detail-body').innerHTML = '<p class="muted">Loading…</p>';
    }
    $('detail-close').focus();
    try {
      const got = await getJSON(orderPath(station, order));
      if (S.detail !== k || !got.body || !got.body.station_id) return;
      noteResult(got.body);
      if (!cached || JSON.stringify(cached.r) !== JSON.stringify(got.body)) renderDetail(got.body, !!cached);
    } catch (e) {
      if (e.stale || S.detail !== k) return;
      report(e, 'Loading order ' + order);
      if (!cached) {
        d.dataset.state = 'error';
        $('detail-body').innerHTML = `<p class="error-box">Could not load this order: ${esc(e.message)}</p>`;
      }
    }
  }
  function revokeUrls() { S.urls.forEach((u) => URL.revokeObjectURL(u)); S.urls = []; }
  function closeDetail(quiet) {
    const d = $('detail');
    if (d.hidden) return;
    S.detail = null;
    d.hidden = true;
    d.dataset.state = 'closed';
    delete d.dataset.orderKey;
    delete d.dataset.status;
    $('detail-body').innerHTML = '';
    revokeUrls();
    setInert(false);
    for (const tr of $('orders').rows) tr.removeAttribute('aria-selected');
    const back = typeof S.back === 'string' ? rowOf(S.back) : S.back;
    if (!quiet && back && document.contains(back)) { if (back.dataset.orderKey) focusRow(back); else back.focus(); }
  }
  function renderDetail(r, refresh) {
    const d = $('detail'), body = $('detail-body'), t = r.timings_ms || {}, frames = arr(r.selected_frames), st = STATUS[r.status] ? r.status : 'unknown';
    const keep = refresh && d.dataset.frames === JSON.stringify(frames) ? body.querySelector('.frames') : null;
    if (!keep) revokeUrls();
    d.dataset.status = r.status;
    d.dataset.orderKey = keyOf(r);
    $('detail-title').textContent = `Order ${r.order_id} · ${r.station_id}`;
    const steps = ['discover', 'load', 'select', 'recognize', 'validate'], tmax = Math.max(1, ...steps.map((n) => num(t[n]) || 0));
    const base = r.order_id.split('.')[0], at = (ms) => (ms != null ? new Date(ms).toLocaleString() : null);
    const fact = (k, v) => (v == null || v === '' ? '' : `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`);
    const raw = body.querySelector('details.raw-json[open]');
    body.innerHTML = `<div class="summary">${badge(st, STATUS[r.status] || r.status)}` +
      `<span>Accuracy <strong>${num(r.accuracy) != null ? Math.round(r.accuracy * 100) + ' %' : '—'}</strong></span>` +
      `<span>Bag complete <strong>${esc(when(timeOf(r)))}</strong></span><span>Total <strong>${esc(dur(num(t.total)))}</strong></span></div>` +
      (r.error ? `<p class="error-box">${esc(r.error)}</p>` : '') +
      `<section aria-label="Selected frames"><h3>Frames (${frames.length})</h3>` +
      (frames.length ? '<div class="frames"></div>' : '<p class="muted">No frames were selected for this order.</p>') + '</section>' +
      `<section aria-label="Expected against detected"><h3>Expected against detected</h3>${itemsTable(r)}</section>` +
      '<section aria-label="Timings"><h3>Timings</h3><div class="timings">' +
      steps.map((n) => `<span>${n}</span><span><span class="bar" data-w="${Math.max(0.5, (num(t[n]) || 0) / tmax * 100).toFixed(1)}"></span></span><span class="num">${esc(dur(num(t[n]) || 0))}</span>`).join('') +
      `<span class="total">total</span><span class="muted small">marker discovered → result</span><span class="num total">${esc(dur(num(t.total)))}</span></div></section>` +
      '<section aria-label="Details"><h3>Details</h3><dl class="facts">' + fact('Recognizer', r.recognizer) + fact('Attempts', r.recognition_attempts || 1) +
      fact('Revision', r.revision) + fact('Occurrence', r.occurrence) + fact('Frames in manifest', r.manifest_frame_count) +
      fact('Marker written', at(r.marker_last_modified_ms)) + fact('Last frame', at(r.manifest_last_unix_ms)) + '</dl>' +
      `<p><button type="button" class="btn" data-edit="${esc(base)}">Enter or edit the expected items of order ${esc(base)}</button></p></section>` +
      `<details class="raw-json"><summary>Raw result (JSON)</summary><pre class="raw">${esc(JSON.stringify(r, null, 2))}</pre></details>`;
    if (raw) body.querySelector('details.raw-json').open = true;
    body.querySelectorAll('.bar[data-w]').forEach((b) => { b.style.width = b.dataset.w + '%'; });
    const slot = body.querySelector('.frames');
    if (slot && keep) slot.replaceWith(keep);
    else if (slot) loadFrames(r, slot);
    d.dataset.frames = JSON.stringify(frames);
    d.dataset.state = 'ready';
  }
  /* Every item expected or detected, marked from the result's missing, extra and
     quantity_mismatch (validate.rs); only validated and mismatch results were compared. */
  function itemsTable(r) {
    const names = [...new Set([r.expected, r.detected, r.missing, r.extra].flatMap(arr).map((i) => i && i.name).filter((n) => n != null))];
    if (!names.length) return '<p class="muted">No items expected or detected.</p>';
    const q = (l) => new Map(arr(l).filter(Boolean).map((i) => [i.name, i.quantity]));
    const exp = q(r.expected), det = q(r.detected), miss = q(r.missing), extra = q(r.extra);
    const qm = new Map(arr(r.quantity_mismatch).filter(Boolean).map((i) => [i.name, i]));
    const compared = r.status === 'validated' || r.status === 'mismatch';
    const rows = names.map((n) => {
      const [diff, mark] = qm.has(n) ? ['quantity', `≠ Wrong quantity (${qm.get(n).detected} of ${qm.get(n).expected})`]
        : miss.has(n) ? ['missing', '✗ Missing ' + miss.get(n)] : extra.has(n) ? ['extra', '+ Extra ' + extra.get(n)]
          : compared ? ['ok', '✓ OK'] : ['unchecked', 'Not compared'];
      return `<tr data-item="${esc(n)}" data-diff="${diff}"><td>${esc(n)}</td><td class="num">${esc(exp.has(n) ? exp.get(n) : '—')}</td>` +
        `<td class="num">${esc(det.has(n) ? det.get(n) : '—')}</td><td class="mk">${esc(mark)}</td></tr>`;
    }).join('');
    return '<div class="table-wrap"><table class="items"><thead><tr><th scope="col">Item</th><th scope="col" class="num">Expected</th>' +
      `<th scope="col" class="num">Detected</th><th scope="col">Result</th></tr></thead><tbody>${rows}</tbody></table></div>` +
      (compared ? '' : `<p class="muted small">This order was not compared (${esc(STATUS[r.status] || r.status)}).</p>`);
  }
  /* <img src> cannot send the token: each frame is fetched, then shown from a blob URL. */
  function loadFrames(r, box) {
    const k = keyOf(r), list = arr(r.selected_frames);
    list.forEach((key, i) => {
      const fig = box.appendChild(document.createElement('figure'));
      fig.className = 'frame';
      fig.dataset.frame = i;
      fig.dataset.loaded = 'loading';
      fig.innerHTML = `<button type="button" aria-label="Frame ${i + 1} of ${list.length}: open full size">Loading frame ${i + 1}…</button><figcaption></figcaption>`;
      fig.lastChild.textContent = String(key).split('/').pop();
      const btn = fig.firstChild;
      api(`${orderPath(r.station_id, r.order_id)}/frames/${i}`, { accept: 'image/jpeg', timeout: 30000 })
        .then((res) => res.blob())
        .then((blob) => {
          if (S.detail !== k || !document.contains(fig)) return;
          const url = URL.createObjectURL(blob), img = document.createElement('img');
          S.urls.push(url);
          img.alt = `Frame ${i + 1} of order ${r.order_id} at ${r.station_id}`;
          img.src = url;
          btn.textContent = '';
          btn.appendChild(img);
          btn.dataset.url = url;
          fig.dataset.loaded = 'yes';
        })
        .catch((e) => {
          if (e && e.stale) return;
          fig.dataset.loaded = 'error';
          btn.disabled = true;
          btn.textContent = `Frame ${i + 1} could not be loaded: ${e && e.message ? e.message : e}`;
        });
    });
  }
  function openZoom(btn) {
    const img = $('zoom-img');
    img.src = btn.dataset.url;
    img.alt = btn.querySelector('img').alt;
    img.classList.remove('fit');
    S.zoomFrom = btn;
    $('zoom').hidden = false;
    $('detail').inert = true;
    $('zoom-close').focus();
  }
  function closeZoom(quiet) {
    if ($('zoom').hidden) return;
    $('zoom').hidden = true;
    $('zoom-img').removeAttribute('src');
    $('detail').inert = false;
    if (!quiet && S.zoomFrom && document.contains(S.zoomFrom)) S.zoomFrom.focus();
  }

  // ---- charts (inline SVG) ---------------------------------------------------------------
  const hourBase = () => Math.floor(Date.now() / HOUR) * HOUR - 23 * HOUR;
  const counts = (c = {}) => ({ orders: num(c.orders) || 0, validated: num(c.validated) || 0, mismatch: num(c.mismatch) || 0 });
  const minus = (a, b) => ({ orders: Math.max(0, a.orders - b.orders), validated: Math.max(0, a.validated - b.validated), mismatch: Math.max(0, a.mismatch - b.mismatch) });
  async function statsSince(ms) {
    const b = (await getJSON('/api/stats?since=' + ms)).body || {};
    return { total: counts(b.total), per: new Map(arr(b.stations).filter((s) => s && s.station_id).map((s) => [s.station_id, counts(s)])) };
  }
  /* /api/stats counts results since a time: hour i is since(T_i) minus since(T_i+1). */
  async function loadCharts() {
    if (S.busy.charts) return;
    S.busy.charts = true;
    const base = hourBase();
    try {
      S.hours = await Promise.all(Array.from({ length: 24 }, (_, i) => statsSince(base + i * HOUR)));
      S.hourBase = base;
      renderCharts();
      markOnce('oa-charts');
      clearStatus('Loading the charts');
    } catch (e) { report(e, 'Loading the charts'); } finally { S.busy.charts = false; }
  }
  let hourTimer = null;
  function queueHourRefresh() { // a new result: the current hour again, at most every 4 s
    if (hourTimer || !S.hours) return;
    hourTimer = setTimeout(() => {
      hourTimer = null;
      const base = hourBase();
      if (base !== S.hourBase) { loadCharts(); return; }
      statsSince(base + 23 * HOUR).then((c) => { if (S.hours && base === S.hourBase) { S.hours[23] = c; renderCharts(); } }, (e) => report(e, 'Loading the charts'));
    }, 4000);
  }
  function niceCeil(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v))), m = v / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10) * p;
  }
  const text = (x, y, s, a = {}) => tag('text', { x: f1(x), y: f1(y), ...a }, esc(s));
  const rect = (cls, x, y, w, h, inner) => tag('rect', { class: cls, x: f1(x), y: f1(y), width: f1(w), height: f1(h) }, inner);
  const hline = (cls, x1, x2, y) => tag('line', { class: cls, x1, x2, y1: f1(y), y2: f1(y) });
  function renderCharts() {
    const hrs = S.hours.map((cur, i) => {
      const nxt = S.hours[i + 1], per = new Map();
      cur.per.forEach((c, id) => per.set(id, nxt ? minus(c, nxt.per.get(id) || counts()) : c));
      return { t: S.hourBase + i * HOUR, total: nxt ? minus(cur.total, nxt.total) : cur.total, per };
    });
    // Orders per hour, stacked: validated, mismatch, other.
    const W = 480, H = 180, L = 36, R = 8, T = 10, B = 24, pw = (W - L - R) / 24, ph = H - T - B;
    const max = niceCeil(Math.max(1, ...hrs.map((h) => h.total.orders))), y = (v) => T + ph - v / max * ph;
    let s = hline('grid', L, W - R, y(max)) + hline('grid', L, W - R, y(max / 2)) +
      [max, max / 2, 0].map((v) => text(L - 4, y(v) + 4, v, { 'text-anchor': 'end' })).join('');
    const sum = counts();
    hrs.forEach((h, i) => {
      const c = h.total, x = L + i * pw + 2, w = pw - 4, other = Math.max(0, c.orders - c.validated - c.mismatch);
      sum.orders += c.orders; sum.validated += c.validated; sum.mismatch += c.mismatch;
      let yy = y(0), bars = '';
      for (const [cls, v] of [['b-ok', c.validated], ['b-bad', c.mismatch], ['b-other', other]]) {
        const hv = v / max * ph;
        if (hv) { yy -= hv; bars += rect(cls, x, yy, w, hv); }
      }
      s += tag('g', { 'data-hour': h.t, 'data-orders': c.orders, 'data-mismatch': c.mismatch },
        tag('title', {}, esc(`${hh(h.t)}:00–${hh(h.t + HOUR)}:00: ${plural(c.orders, 'order')}, ${plural(c.mismatch, 'mismatch', 'mismatches')}, ${other} other`)) + bars);
      if (i % 3 === 0) s += text(x + w / 2, H - 8, hh(h.t) + 'h', { 'text-anchor': 'middle' });
    });
    $('chart-orders').innerHTML = s + hline('axis', L, W - R, y(0));
    const checked = sum.validated + sum.mismatch;
    $('chart-orders-desc').textContent = `${plural(sum.orders, 'order')} since ${hh(S.hourBase)}:00 yesterday; ${plural(sum.mismatch, 'mismatch', 'mismatches')}` +
      (checked ? ` (${pct(sum.mismatch / checked)} of checked bags)` : '') + '.';
    // Mismatch rate per station: each hour's (bars) and the 24 h rate (figure).
    const ids = [...new Set([...S.stations.keys(), ...hrs.flatMap((h) => [...h.per.keys()])])];
    const rate = (c) => (c.validated + c.mismatch ? c.mismatch / (c.validated + c.mismatch) : null);
    const per = ids.map((id) => {
      const hr = hrs.map((h) => ({ t: h.t, c: h.per.get(id) || counts() })), tot = counts();
      for (const { c } of hr) { tot.validated += c.validated; tot.mismatch += c.mismatch; }
      return { id, hr, tot, rate: rate(tot) };
    });
    const top = Math.max(0.1, niceCeil(Math.max(0, ...per.flatMap((p) => p.hr.map((h) => rate(h.c) || 0)))));
    const X = 120, SW = 250, RH = 34, bw = SW / 24;
    let m = text(X, 12, `hourly, 0–${pct(top)}`) + text(476, 12, '24 h', { 'text-anchor': 'end' });
    per.forEach((p, n) => {
      const y0 = 18 + n * RH;
      m += tag('g', { 'data-station': p.id, 'data-rate': p.rate == null ? '' : p.rate.toFixed(4), 'data-mismatch': p.tot.mismatch },
        tag('title', {}, esc(`${p.id}: ${p.tot.mismatch} mismatches among ${p.tot.validated + p.tot.mismatch} checked bags (${pct(p.rate)})`)) +
        text(0, y0 + 18, p.id.length > 16 ? p.id.slice(0, 15) + '…' : p.id) + rect('b-track', X, y0 + 2, SW, 24) +
        p.hr.map((h, i) => {
          const v = rate(h.c), bh = Math.min(1, (v || 0) / top) * 24;
          return v ? rect('b-bad', X + i * bw + 0.5, y0 + 26 - bh, bw - 1, bh, tag('title', {}, esc(`${hh(h.t)}:00: ${h.c.mismatch} of ${h.c.validated + h.c.mismatch} (${pct(v)})`))) : '';
        }).join('') + text(476, y0 + 19, pct(p.rate), { 'text-anchor': 'end', 'font-weight': 700, 'font-size': 14 }));
    });
    const mc = $('chart-mismatch');
    mc.setAttribute('viewBox', `0 0 480 ${Math.max(40, per.length * RH + 18)}`);
    mc.innerHTML = m + (per.length ? '' : text(8, 30, 'No stations yet.'));
    $('chart-mismatch-desc').textContent = per.map((p) => `${p.id} ${pct(p.rate)} (${p.tot.mismatch}/${p.tot.validated + p.tot.mismatch})`).join('; ') || 'No data.';
  }
  function renderLatency() {
    const el = $('chart-latency'), v = [...S.latency.values()].sort((a, b) => a - b);
    const q = (f) => v[Math.min(v.length - 1, Math.floor(f * v.length))];
    if (!v.length) { el.innerHTML = text(8, 30, 'No timings yet.'); $('chart-latency-desc').textContent = ''; return; }
    const step = niceCeil(Math.max(1, q(0.99)) / 12), N = Math.min(12, Math.max(4, Math.ceil(q(0.99) / step) + 1)), hi = step * N, bins = new Array(N).fill(0);
    for (const x of v) bins[Math.min(N - 1, Math.floor(x / step))]++;
    const W = 480, H = 180, L = 36, R = 8, T = 16, B = 28, pw = (W - L - R) / N, ph = H - T - B, max = niceCeil(Math.max(...bins));
    const y = (c) => T + ph - c / max * ph;
    let s = text(L - 4, y(max) + 4, max, { 'text-anchor': 'end' }) + text(L - 4, y(0) + 4, 0, { 'text-anchor': 'end' }) + hline('grid', L, W - R, y(max));
    bins.forEach((c, i) => {
      const x = L + i * pw + 1, lo = i * step;
      s += tag('g', { 'data-bin': i, 'data-from': lo, 'data-count': c }, tag('title', {}, esc(`${dur(lo)}${i === N - 1 ? ' and more' : '–' + dur(lo + step)}: ${c}`)) +
        rect('b-lat', x, y(c), pw - 2, c / max * ph));
      if (i % 3 === 0 && i < N - 2) s += text(x, H - 12, dur(lo));
    });
    s += text(W - R, H - 12, '≥ ' + dur(hi - step), { 'text-anchor': 'end' });
    [[q(0.5), 'p50'], [q(0.95), 'p95']].forEach(([ms, label], i) => {
      const x = L + Math.min(ms, hi) / hi * (W - L - R);
      s += tag('line', { class: 'mark', x1: f1(x), x2: f1(x), y1: T, y2: f1(y(0)) }) + text(x + 3, T + 4 + i * 12, `${label} ${dur(ms)}`);
    });
    el.innerHTML = s + hline('axis', L, W - R, y(0));
    $('chart-latency-desc').textContent = `Over the ${v.length} most recent results loaded: median ${dur(q(0.5))}, p95 ${dur(q(0.95))}, max ${dur(v[v.length - 1])}.`;
  }
  async function loadLatencySample() {
    try {
      for (const r of arr((await getJSON('/api/orders?limit=500')).body)) if (r && r.station_id) noteSample(r);
      renderLatency();
      markOnce('oa-latency');
    } catch (e) { report(e, 'Loading the latency sample'); }
  }

  // ---- expected orders -------------------------------------------------------------------
  async function loadExpected() {
    try {
      const list = arr((await getJSON('/api/expected-orders?limit=100')).body);
      $('expected-note').textContent = list.length ? `The newest ${list.length} orders entered through the API.` : 'No orders have been entered through the API yet.';
      $('expected').innerHTML = list.map((o) => {
        for (const i of arr(o.items)) if (i && i.name) S.names.add(i.name);
        return `<tr data-order-id="${esc(o.order_id)}"><td><strong>${esc(o.order_id)}</strong></td><td>${esc(items(o.items))}</td>` +
          `<td>${esc(o.updated_unix_ms ? when(o.updated_unix_ms) : '—')}</td><td><button type="button" class="btn small" data-edit="${esc(o.order_id)}"` +
          ` aria-label="Edit order ${esc(o.order_id)}">Edit</button></td></tr>`;
      }).join('');
      fillNames();
      clearStatus('Loading the expected orders');
    } catch (e) {
      if (e.stale) return;
      $('expected').innerHTML = '';
      $('expected-note').textContent = e.status === 404 ? e.message + '.' : 'Could not load the expected orders: ' + e.message;
      if (e.status !== 404) report(e, 'Loading the expected orders');
    }
  }
  function fillNames() {
    const dl = $('item-names');
    if (dl.options.length !== S.names.size) dl.innerHTML = [...S.names].sort().map((n) => `<option value="${esc(n)}">`).join('');
  }
  function itemRow(name, qty) {
    const n = $('x-items').children.length + 1, row = $('x-items').appendChild(document.createElement('div'));
    row.className = 'item-row';
    row.innerHTML = `<input class="name" list="item-names" autocomplete="off" aria-label="Item ${n} name" placeholder="Item name">` +
      `<input class="qty" type="number" min="1" max="99" step="1" inputmode="numeric" aria-label="Item ${n} quantity">` +
      `<button type="button" class="btn small" data-remove="1" aria-label="Remove item ${n}">✕</button>`;
    row.querySelector('.name').value = name || '';
    row.querySelector('.qty').value = qty || 1;
    return row;
  }
  function fillForm(id, list) {
    $('x-order').value = id || '';
    $('x-items').innerHTML = '';
    for (const i of list && list.length ? list : [{}]) itemRow(i.name, i.quantity);
  }
  function formMsg(level, t) { $('expected-msg').dataset.level = level; $('expected-msg').textContent = t; }
  function formOrder() {
    const el = $('x-order'), id = el.value.trim(), ok = ORDER_RE.test(id);
    el.setAttribute('aria-invalid', String(!ok));
    if (ok) return id;
    formMsg('error', 'Order ID: letters, digits, _ and -, starting with a letter or digit (at most 64).');
    el.focus();
    return null;
  }
  const failed = (e, what) => formMsg('error', `${what}: ${e.status ? 'HTTP ' + e.status + ': ' : ''}${e.message}${e.status === 403 ? ' (sign in with a write token)' : ''}`);
  async function editExpected(id, fallback) {
    fillForm(id, fallback);
    $('x-order').setAttribute('aria-invalid', 'false');
    $('expected-form').scrollIntoView({ block: 'start' });
    $('x-order').focus();
    if (!ORDER_RE.test(id)) return;
    formMsg('info', `Loading order ${id}…`);
    try {
      const o = (await getJSON('/api/expected-orders/' + enc(id))).body;
      if ($('x-order').value.trim() !== id) return;
      fillForm(id, arr(o.items));
      formMsg('info', o.source === 'orders_file' ? `Order ${id} comes from the orders file; saving stores it through the API, which takes precedence.` : `Loaded order ${id}.`);
    } catch (e) {
      if (e.stale) return;
      if (e.status === 404) formMsg('info', `${e.message}: enter the items and Save.`);
      else failed(e, 'Could not load');
    }
  }
  async function saveExpected(ev) {
    ev.preventDefault();
    const id = formOrder();
    if (!id) return;
    const list = [];
    let bad = null;
    for (const row of $('x-items').querySelectorAll('.item-row')) {
      const name = row.querySelector('.name').value.trim(), q = Number(row.querySelector('.qty').value || 1);
      if (!name) continue;
      if (!(Number.isInteger(q) && q >= 1 && q <= 99)) bad = bad || row.querySelector('.qty');
      list.push({ name, quantity: q });
    }
    if (bad) { formMsg('error', 'Quantities are whole numbers from 1 to 99.'); bad.focus(); return; }
    if (!list.length) { formMsg('error', 'Enter at least one item.'); return; }
    formMsg('info', 'Saving…');
    try {
      const res = await api('/api/expected-orders/' + enc(id), { method: 'PUT', body: { items: list } });
      formMsg('ok', `${res.status === 201 ? 'Stored' : 'Replaced'} order ${id}.`);
      loadExpected();
    } catch (e) { if (!e.stale) failed(e, 'Not saved'); }
  }
  async function deleteExpected() {
    const id = formOrder(), btn = $('x-delete');
    if (!id) return;
    if (S.armed !== id) { // a second press confirms
      S.armed = id;
      btn.textContent = 'Confirm delete';
      formMsg('info', `Press "Confirm delete" to delete order ${id}.`);
      setTimeout(() => { if (S.armed === id) { S.armed = null; btn.textContent = 'Delete'; } }, 6000);
      return;
    }
    S.armed = null;
    btn.textContent = 'Delete';
    try {
      await api('/api/expected-orders/' + enc(id), { method: 'DELETE' });
      formMsg('ok', `Deleted order ${id}.`);
      fillForm('', null);
      loadExpected();
    } catch (e) { if (!e.stale) failed(e, 'Not deleted'); }
  }

  // ---- wiring --------------------------------------------------------------------------
  function on(id, type, fn) { $(id).addEventListener(type, safe(fn)); }
  function wire() {
    on('signin-form', 'submit', onSignin);
    on('signout', 'click', onSignout);
    on('orders', 'click', (ev) => { const tr = ev.target.closest('tr[data-order-key]'); if (tr) openRow(tr); });
    on('orders', 'keydown', onRowKey);
    on('orders', 'focusin', (ev) => { const tr = ev.target.closest('tr[data-order-key]'); if (tr) S.focusKey = tr.dataset.orderKey; });
    for (const id of ['f-station', 'f-status', 'f-span']) on(id, 'change', () => { renderFeed(); loadFeed(true); });
    on('filters', 'submit', (ev) => ev.preventDefault());
    on('more', 'click', loadMore);
    on('detail-close', 'click', () => closeDetail());
    on('detail-body', 'click', (ev) => {
      const b = ev.target.closest('button');
      if (b && b.dataset.edit != null) {
        const cur = S.orders.get(S.detail);
        closeDetail(true);
        editExpected(b.dataset.edit, cur ? arr(cur.r.expected) : null);
      } else if (b && b.dataset.url) openZoom(b);
    });
    on('zoom-close', 'click', () => closeZoom());
    on('zoom-img', 'click', () => $('zoom-img').classList.toggle('fit'));
    document.addEventListener('click', safe((ev) => {
      const b = ev.target.closest('[data-open]');
      if (b && !$('detail').contains(b)) { const k = b.dataset.open, i = k.indexOf('/'); openDetail(k.slice(0, i), k.slice(i + 1), b); }
      if (ev.target.closest('#alert [data-dismiss]')) $('alert').hidden = true;
    }));
    on('expected', 'click', (ev) => { const b = ev.target.closest('[data-edit]'); if (b) editExpected(b.dataset.edit); });
    on('expected-reload', 'click', loadExpected);
    on('expected-form', 'submit', saveExpected);
    on('x-add', 'click', () => itemRow('', 1).querySelector('.name').focus());
    on('x-items', 'click', (ev) => {
      const b = ev.target.closest('[data-remove]');
      if (!b) return;
      const row = b.closest('.item-row');
      let next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      if (!next) next = itemRow('', 1);
      next.querySelector('.name').focus();
    });
    on('x-load', 'click', () => { const id = formOrder(); if (id) editExpected(id); });
    on('x-delete', 'click', deleteExpected);
    on('x-clear', 'click', () => { fillForm('', null); formMsg('info', ''); });
    document.addEventListener('keydown', safe((ev) => {
      if (ev.key !== 'Escape') return;
      if (!$('zoom').hidden) { ev.preventDefault(); closeZoom(); } else if (!$('detail').hidden) { ev.preventDefault(); closeDetail(); }
    }));
    window.addEventListener('error', (ev) => setStatus('error', 'Dashboard error: ' + (ev.message || 'unknown'), 'js'));
    window.addEventListener('unhandledrejection', (ev) => { ev.preventDefault(); report(ev.reason, 'Dashboard'); });
    window.addEventListener('hashchange', safe(() => { if (/token=/.test(location.hash)) { tokenFromHash(); S.token = loadToken(); boot(); } }));
    document.addEventListener('visibilitychange', safe(() => { if (!document.hidden && S.timer) { pollStations(); loadFeed(false); } }));
  }
  function start() {
    try {
      wire();
      fillForm('', null);
      tokenFromHash();
      S.token = loadToken();
      if (!TOKEN_RE.test(S.token)) { S.token = ''; forgetToken(); }
      boot();
    } catch (e) { report(e, 'Starting the dashboard'); }
  }
  if (typeof module === 'object' && module.exports) { module.exports = { SseParser, niceCeil, esc }; return; } // node tests
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();

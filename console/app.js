// The web console: a page of the service that runs on its HTTP/JSON API.
//
// Plain JavaScript, no framework and no build step: the service compiles
// this file into its binary and serves it at /console/app.js. Views are
// chosen by the URL's fragment (#/jobs, #/jobs/<id>, #/live, ...), so
// every view has an address that can be bookmarked and shared. Text from
// the service is always set as text, never parsed as HTML.
'use strict';

(() => {
  /** Where the token is kept: this tab's session storage only. */
  const TOKEN_KEY = 'scheduler-console-token';
  /** Events kept on the live feed. */
  const FEED_MAX = 200;
  /** A run in flight longer than this needs attention. */
  const STUCK_MS = 5 * 60 * 1000;
  const STATUSES = ['scheduled', 'running', 'succeeded', 'failed', 'pending'];
  const TYPES = ['email', 'sms'];
  const KINDS = ['create', 'update', 'run', 'result', 'dead_letter', 'delete'];
  const VIEWER_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

  const app = { session: null, cleanup: null };
  const main = document.getElementById('main');

  // ---- Building the page -------------------------------------------------

  /** An element with attributes (`on…` are listeners) and children. */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  /** An SVG element, as `h`. */
  function svg(tag, attrs, ...children) {
    const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
      else if (name === 'class') el.setAttribute('class', value);
      else el.setAttribute(name, value === true ? '' : String(value));
    }
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
  }

  /** Appends children, skipping null and false (Element.append would write "null"). */
  const add = (el, ...children) => append(el, children);

  /** Replaces an element's children. */
  const replace = (el, ...children) => { el.replaceChildren(); append(el, children); };

  const badge = (text, cls) => h('span', { class: `badge ${cls || ''}` }, text);
  const statusBadge = (status) => badge(status, `st-${status}`);

  // ---- Times and numbers -------------------------------------------------

  function formatTime(iso, zone) {
    if (!iso) return '—';
    const options = { dateStyle: 'medium', timeStyle: 'medium', timeZone: zone || VIEWER_ZONE };
    try {
      return new Intl.DateTimeFormat(undefined, options).format(new Date(iso));
    } catch (_) {
      return iso;
    }
  }

  /** A <time> showing `iso` in the viewer's zone, the exact instant on hover. */
  const timeEl = (iso, zone) =>
    iso ? h('time', { datetime: iso, title: iso }, formatTime(iso, zone)) : '—';

  function relative(iso) {
    if (!iso) return '';
    const seconds = Math.round((new Date(iso) - Date.now()) / 1000);
    const units = [['day', 86400], ['hour', 3600], ['minute', 60], ['second', 1]];
    const [unit, size] = units.find(([, size]) => Math.abs(seconds) >= size) || units[3];
    return new Intl.RelativeTimeFormat(undefined, { numeric: 'auto' }).format(Math.round(seconds / size), unit);
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return '—';
    if (ms < 1000) return `${ms} ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
    if (ms < 3600000) return `${(ms / 60000).toFixed(1)} min`;
    return `${(ms / 3600000).toFixed(1)} h`;
  }

  // ---- The API -----------------------------------------------------------

  /** A refusal of the API: its HTTP status and the service's error object. */
  class ApiError extends Error {
    constructor(status, body) {
      super((body && body.message) || `HTTP ${status}`);
      this.status = status;
      this.code = body && body.code;
      this.field = body && body.field;
    }
  }

  function headers(json) {
    const all = { Accept: 'application/json' };
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) all.Authorization = `Bearer ${token}`;
    if (json) all['Content-Type'] = 'application/json';
    return all;
  }

  async function errorOf(response) {
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    return new ApiError(response.status, body);
  }

  /** Calls the API; a refusal throws an ApiError, a 401 also asks to sign in. */
  async function call(method, path, body) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: headers(body !== undefined),
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new ApiError(0, { code: 'unavailable', message: `The service cannot be reached (${err.message}).` });
    }
    if (!response.ok) {
      const error = await errorOf(response);
      if (response.status === 401) askToSignIn(error.message);
      throw error;
    }
    return response.status === 204 ? null : response.json();
  }

  const query = (params) => {
    const kept = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== '');
    return kept.length ? `?${new URLSearchParams(kept)}` : '';
  };

  /**
   * Follows the event stream (Server-Sent Events read through fetch, so
   * that the token goes in a header), reconnecting with backoff. Returns
   * the function that stops it.
   */
  function follow(params, onEvent, onState) {
    const abort = new AbortController();
    let stopped = false;
    (async () => {
      let delay = 1000;
      while (!stopped) {
        try {
          onState('connecting');
          const response = await fetch(`/v1/events${query(params)}`, { headers: headers(false), signal: abort.signal });
          if (!response.ok) {
            const error = await errorOf(response);
            if (response.status === 401) { askToSignIn(error.message); return; }
            throw error;
          }
          onState('live');
          delay = 1000;
          await readEvents(response.body, onEvent);
          throw new Error('the stream ended');
        } catch (err) {
          if (stopped || err.name === 'AbortError') return;
          onState('down', `${err.message}; trying again in ${delay / 1000} s`);
          await new Promise((resolve) => setTimeout(resolve, delay));
          delay = Math.min(delay * 2, 30000);
        }
      }
    })();
    return () => { stopped = true; abort.abort(); };
  }

  /** Reads SSE blocks (`event:` and `data:` lines, a blank line after each). */
  async function readEvents(body, onEvent) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, '\n');
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        let name = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) name = line.slice(6).trim();
          else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        if (!data.length) continue;
        const parsed = JSON.parse(data.join('\n'));
        if (name === 'error') throw new ApiError(0, parsed);
        onEvent(name, parsed);
      }
    }
  }

  // ---- Session and sign-in -----------------------------------------------

  const mayChange = () => app.session && app.session.role === 'admin';

  function askToSignIn(message) {
    // (Without a token yet, there is nothing wrong to say.)
    const hadToken = Boolean(sessionStorage.getItem(TOKEN_KEY));
    sessionStorage.removeItem(TOKEN_KEY);
    app.session = null;
    const back = location.hash.startsWith('#/sign-in') ? '#/' : location.hash || '#/';
    app.signInReason = hadToken ? message : app.signInReason;
    app.signInBack = back;
    if (!location.hash.startsWith('#/sign-in')) location.hash = '#/sign-in';
  }

  async function loadSession() {
    try {
      app.session = await call('GET', '/v1/session');
    } catch (err) {
      if (err.status !== 401) flash(err.message, true);
      app.session = null;
    }
    showWho();
  }

  function showWho() {
    const who = document.getElementById('who');
    const session = app.session;
    document.querySelectorAll('[data-admin]').forEach((el) => { el.hidden = !mayChange(); });
    if (!session) {
      replace(who);
      return;
    }
    if (!session.auth_required) {
      replace(who, h('span', {}, 'Auth is off: every visitor is an admin'));
      return;
    }
    const signOut = h('button', {
      type: 'button',
      onclick: () => { sessionStorage.removeItem(TOKEN_KEY); app.session = null; showWho(); location.hash = '#/sign-in'; },
    }, 'Sign out');
    const name = session.subject ? `${session.subject} · ` : '';
    replace(who, h('span', {}, `${name}${session.role}`),
      session.role === 'admin' ? null : badge('read-only', 'paused'), signOut);
  }

  function viewSignIn() {
    const error = h('p', { class: 'error', role: 'alert', hidden: !app.signInReason }, app.signInReason || '');
    const token = h('textarea', { id: 'token', name: 'token', rows: 5, required: true, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'token-note' });
    const form = h('form', {
      onsubmit: async (event) => {
        event.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, token.value.trim());
        await loadSession();
        if (app.session) {
          app.signInReason = null;
          location.hash = app.signInBack || '#/';
        } else {
          error.hidden = false;
          error.textContent = app.signInReason || 'That token was not accepted.';
        }
      },
    },
    h('div', { class: 'form-row' }, h('label', { for: 'token' }, 'Access token (JWT)'), token,
      h('p', { class: 'note', id: 'token-note' }, 'The token is kept in this browser tab only and forgotten when the tab closes. An admin token may change jobs; a viewer token may only look.')),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'));
    return [h('h1', {}, 'Sign in'), error, form];
  }

  // ---- Messages and confirmations ----------------------------------------

  function flash(message, isError) {
    const box = document.getElementById('flash');
    box.textContent = message;
    box.className = isError ? 'flash error' : 'flash';
    box.setAttribute('role', isError ? 'alert' : 'status');
    box.hidden = false;
    clearTimeout(app.flashTimer);
    app.flashTimer = setTimeout(() => { box.hidden = true; }, isError ? 15000 : 6000);
  }

  /** Asks to confirm; resolves true on Confirm. */
  function confirmAction(title, text) {
    const dialog = document.getElementById('confirm');
    document.getElementById('confirm-title').textContent = title;
    document.getElementById('confirm-text').textContent = text;
    const ok = document.getElementById('confirm-ok');
    const cancel = document.getElementById('confirm-cancel');
    ok.textContent = title;
    return new Promise((resolve) => {
      const done = (answer) => {
        ok.onclick = null; cancel.onclick = null; dialog.oncancel = null;
        dialog.close();
        resolve(answer);
      };
      ok.onclick = () => done(true);
      cancel.onclick = () => done(false);
      dialog.oncancel = () => done(false);
      dialog.showModal();
      cancel.focus();
    });
  }

  /** Runs a confirmed action; shows the service's answer or its refusal. */
  async function act(title, text, run, done) {
    if (!(await confirmAction(title, text))) return;
    try {
      await run();
      flash(`${title}: done.`);
      if (done) done();
    } catch (err) {
      flash(`${title} refused: ${err.message}`, true);
    }
  }

  // ---- Jobs in words -----------------------------------------------------

  const isRecurring = (job) => Boolean(job.recurrence);

  function scheduleWords(job) {
    const rec = job.recurrence;
    if (!rec) return 'once';
    if (rec.cron_expression) return `cron ${rec.cron_expression} (${rec.time_zone || 'UTC'})`;
    if (rec.interval_seconds) return `every ${duration(rec.interval_seconds * 1000)}`;
    return 'recurring';
  }

  /** The job's next firing, if it has one. */
  function nextRun(job) {
    if (job.paused) return null;
    if (isRecurring(job)) return job.next_occurrence || job.schedule_time;
    return job.status === 'scheduled' ? job.schedule_time : null;
  }

  function lastOutcome(job) {
    if (isRecurring(job)) return job.last_outcome || null;
    return job.status === 'succeeded' || job.status === 'failed' ? job.status : null;
  }

  const jobLink = (job) => h('a', { href: `#/jobs/${job.id}` }, job.name || job.id);

  // ---- Overview ----------------------------------------------------------

  async function viewOverview(into) {
    add(into, h('h1', {}, 'Overview'));
    const cards = h('div', { class: 'cards', 'aria-label': 'Jobs by status and type' });
    const firing = h('section', { class: 'panel', 'aria-labelledby': 'firing-h' });
    const lateness = h('section', { class: 'panel', 'aria-labelledby': 'late-h' });
    const upcoming = h('section', { class: 'panel', 'aria-labelledby': 'next-h' });
    const attention = h('section', { class: 'panel', 'aria-labelledby': 'attention-h' });
    add(into, cards, h('div', { class: 'panels' }, firing, lateness, upcoming, attention));
    const refresh = async () => {
      try {
        await Promise.all([
          showCounts(cards), showFirings(firing, lateness), showUpcoming(upcoming), showAttention(attention),
        ]);
      } catch (err) {
        if (err.status !== 401) flash(err.message, true);
      }
    };
    await refresh();
    const timer = setInterval(refresh, 10000);
    return () => clearInterval(timer);
  }

  async function showCounts(cards) {
    const counts = await call('GET', '/v1/stats/jobs');
    const groups = [
      ['All jobs', {}, counts.total],
      ...STATUSES.slice(0, 4).map((status) => [status, { status }, counts.by_status[status]]),
      ...TYPES.map((job_type) => [job_type, { job_type }, counts.by_type[job_type]]),
      ['recurring', { schedule_kind: 'recurring' }, counts.recurring],
      ['paused', { paused: true }, counts.paused],
    ];
    replace(cards, ...groups.map(([what, filter, n]) =>
      h('a', { class: 'card', href: `#/jobs${query(filter)}` },
        h('span', { class: 'n' }, n.toLocaleString()), h('span', { class: 'what' }, what))));
  }

  async function showFirings(firing, lateness) {
    const { minutes } = await call('GET', '/v1/stats/firings');
    const fired = minutes.reduce((sum, m) => sum + m.fired, 0);
    const failed = minutes.reduce((sum, m) => sum + m.failed, 0);
    replace(firing, 
      h('h2', { id: 'firing-h' }, 'Firings per minute, last hour'),
      barChart(minutes, `${fired} jobs fired and ${failed} runs failed in the last hour on this replica`),
      h('div', { class: 'legend' }, legend('bar', 'fired'), legend('bar bad', 'failed runs')));
    const worst = Math.max(0, ...minutes.map((m) => m.lateness_p99_ms || 0));
    replace(lateness, 
      h('h2', { id: 'late-h' }, 'Lateness per minute, last hour'),
      lineChart(minutes, `Firing lateness by minute; the worst 99th percentile was ${duration(worst)}`),
      h('div', { class: 'legend' }, legend('p50', 'median'), legend('p99', '99th percentile')));
  }

  function legend(cls, text) {
    const colour = { bar: '#2f7ed8', 'bar bad': '#c0392b', p50: '#2f7ed8', p99: '#c0392b' }[cls];
    const swatch = h('span', { class: 'sw' });
    swatch.style.background = colour;
    return h('span', {}, swatch, text);
  }

  const CHART = { w: 600, h: 180, left: 40, bottom: 22, top: 8 };

  /** Axes and labels of a chart over the last hour. */
  function chartFrame(label, max, unit) {
    const { w, h: height, left, bottom, top } = CHART;
    const frame = svg('svg', { class: 'chart', viewBox: `0 0 ${w} ${height}`, role: 'img', 'aria-label': label });
    add(frame, svg('line', { class: 'axis', x1: left, y1: height - bottom, x2: w, y2: height - bottom }));
    add(frame, svg('text', { x: left - 4, y: top + 8, 'text-anchor': 'end' }, `${max}${unit}`));
    add(frame, svg('text', { x: left - 4, y: height - bottom, 'text-anchor': 'end' }, `0${unit}`));
    for (const [at, text] of [[0, '−60 min'], [0.5, '−30 min'], [1, 'now']]) {
      const anchor = at === 0 ? 'start' : at === 1 ? 'end' : 'middle';
      add(frame, svg('text', { x: left + at * (w - left), y: height - 6, 'text-anchor': anchor }, text));
    }
    return frame;
  }

  function barChart(minutes, label) {
    const max = Math.max(1, ...minutes.map((m) => m.fired + m.failed));
    const frame = chartFrame(label, max, '');
    const { w, h: height, left, bottom, top } = CHART;
    const slot = (w - left) / minutes.length;
    const scale = (height - bottom - top) / max;
    minutes.forEach((m, i) => {
      const x = left + i * slot + 1;
      const tip = `${formatTime(m.start)}: ${m.fired} fired, ${m.succeeded} succeeded, ${m.failed} failed`;
      const fired = m.fired * scale;
      const failed = m.failed * scale;
      add(frame, svg('rect', { class: 'bar', x, y: height - bottom - fired, width: slot - 2, height: fired }, svg('title', {}, tip)));
      add(frame, svg('rect', { class: 'bar bad', x, y: height - bottom - fired - failed, width: slot - 2, height: failed }, svg('title', {}, tip)));
    });
    return frame;
  }

  function lineChart(minutes, label) {
    const max = Math.max(10, ...minutes.map((m) => m.lateness_p99_ms || 0));
    const frame = chartFrame(label, max, ' ms');
    const { w, h: height, left, bottom, top } = CHART;
    const slot = (w - left) / minutes.length;
    const scale = (height - bottom - top) / max;
    for (const [key, cls] of [['lateness_p50_ms', 'p50'], ['lateness_p99_ms', 'p99']]) {
      const points = minutes
        .map((m, i) => (m[key] === undefined ? null : `${left + (i + 0.5) * slot},${height - bottom - m[key] * scale}`))
        .filter(Boolean);
      if (points.length) add(frame, svg('polyline', { class: cls, points: points.join(' ') }));
      minutes.forEach((m, i) => {
        if (m[key] === undefined) return;
        const dot = svg('circle', { class: 'dot', cx: left + (i + 0.5) * slot, cy: height - bottom - m[key] * scale, r: 2 },
          svg('title', {}, `${formatTime(m.start)}: median ${duration(m.lateness_p50_ms)}, p99 ${duration(m.lateness_p99_ms)}, max ${duration(m.lateness_max_ms)}`));
        add(frame, dot);
      });
    }
    return frame;
  }

  async function showUpcoming(panel) {
    const page = await call('GET', `/v1/jobs${query({ status: 'scheduled', paused: false, size: 100 })}`);
    const now = Date.now();
    const hour = now + 3600000;
    const soon = page.jobs
      .map((job) => ({ job, at: new Date(nextRun(job) || 0).getTime() }))
      .filter(({ at }) => at && at <= hour);
    const { w, left } = CHART;
    const line = svg('svg', { class: 'chart', viewBox: `0 0 ${w} 60`, role: 'img', 'aria-label': `${soon.length} firings due in the next hour` });
    add(line, svg('line', { class: 'axis', x1: left, y1: 30, x2: w, y2: 30 }));
    for (const [at, text] of [[0, 'now'], [0.5, '+30 min'], [1, '+60 min']]) {
      const anchor = at === 0 ? 'start' : at === 1 ? 'end' : 'middle';
      add(line, svg('text', { x: left + at * (w - left), y: 55, 'text-anchor': anchor }, text));
    }
    soon.forEach(({ job, at }, i) => {
      const x = left + Math.max(0, (at - now) / 3600000) * (w - left);
      add(line, svg('circle', { class: 'dot', cx: x, cy: 30 - ((i % 3) - 1) * 8, r: 4 }, svg('title', {}, `${job.name}: ${formatTime(new Date(at).toISOString())}`)));
    });
    const more = page.has_more && soon.length === page.jobs.length ? h('p', { class: 'note' }, `Showing the first ${soon.length}; more are due.`) : null;
    replace(panel, h('h2', { id: 'next-h' }, 'Due in the next hour'), line, more,
      soon.length ? jobTable(soon.slice(0, 10).map(({ job }) => job), ['name', 'next', 'schedule'], 'The next ten') : h('p', { class: 'note' }, 'Nothing is due in the next hour.'));
  }

  async function showAttention(panel) {
    const [failed, running] = await Promise.all([
      call('GET', `/v1/jobs${query({ status: 'failed', size: 10 })}`),
      call('GET', `/v1/jobs${query({ status: 'running', size: 100 })}`),
    ]);
    const stuck = running.jobs.filter((job) => Date.now() - new Date(job.updated_time || job.schedule_time) > STUCK_MS);
    replace(panel, 
      h('h2', { id: 'attention-h' }, 'Needs attention'),
      h('h3', {}, `Dead letters: ${failed.total_count} failed for good`),
      failed.jobs.length ? jobTable(failed.jobs, ['name', 'attempt', 'error', 'updated'], 'Failed jobs, by schedule time') : h('p', { class: 'note' }, 'None.'),
      h('h3', {}, `Stuck runs: ${stuck.length} running longer than ${STUCK_MS / 60000} minutes`),
      stuck.length ? jobTable(stuck.slice(0, 10), ['name', 'running', 'attempt'], 'Runs in flight too long') : h('p', { class: 'note' }, 'None.'));
  }

  // ---- Job tables --------------------------------------------------------

  const COLUMNS = {
    name: ['Name', (job) => jobLink(job)],
    status: ['Status', (job) => [statusBadge(job.status), job.paused ? [' ', badge('paused', 'paused')] : null]],
    type: ['Type', (job) => job.job_type],
    schedule: ['Schedule', (job) => scheduleWords(job)],
    next: ['Next run', (job) => { const at = nextRun(job); return at ? [timeEl(at), h('br'), h('span', { class: 'note' }, relative(at))] : '—'; }],
    last: ['Last outcome', (job) => { const o = lastOutcome(job); return o ? statusBadge(o) : '—'; }],
    attempt: ['Attempt', (job) => job.attempt || '—', 'num'],
    error: ['Last error', (job) => job.last_error || '—'],
    updated: ['Changed', (job) => timeEl(job.updated_time)],
    running: ['Running for', (job) => duration(Date.now() - new Date(job.updated_time || job.schedule_time)), 'num'],
  };

  function jobTable(jobs, columns, caption) {
    return h('div', { class: 'scroll' }, h('table', {},
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: COLUMNS[c][2] }, COLUMNS[c][0])))),
      h('tbody', {}, jobs.map((job) => h('tr', {}, columns.map((c) => h('td', { class: COLUMNS[c][2] }, COLUMNS[c][1](job))))))));
  }

  // ---- Jobs list ---------------------------------------------------------

  function select(id, label, options, value) {
    return h('div', {}, h('label', { for: id }, label),
      h('select', { id, name: id }, options.map(([v, text]) => h('option', { value: v, selected: v === (value || '') }, text))));
  }

  async function viewJobs(into, params) {
    const f = Object.fromEntries(params);
    const filters = h('form', { class: 'filters', role: 'search', onsubmit: (e) => e.preventDefault() },
      select('status', 'Status', [['', 'any'], ...STATUSES.map((s) => [s, s])], f.status),
      select('job_type', 'Type', [['', 'any'], ...TYPES.map((t) => [t, t])], f.job_type),
      select('schedule_kind', 'Schedule', [['', 'any'], ['once', 'once'], ['recurring', 'recurring']], f.schedule_kind),
      select('paused', 'Paused', [['', 'any'], ['true', 'paused'], ['false', 'not paused']], f.paused),
      h('div', {}, h('label', { for: 'name_contains' }, 'Name contains'),
        h('input', { id: 'name_contains', name: 'name_contains', type: 'search', value: f.name_contains || '', autocomplete: 'off' })),
      select('size', 'Per page', [['20', '20'], ['50', '50'], ['100', '100']], f.size || '20'));
    const results = h('div', { 'aria-live': 'polite' });
    add(into, h('h1', {}, 'Jobs'),
      mayChange() ? h('div', { class: 'actions' }, h('a', { class: 'button primary', href: '#/new' }, 'New job')) : null,
      filters, results);
    let page = Number(f.page) || 1;
    let typing;
    const load = async () => {
      const wanted = Object.fromEntries(new FormData(filters));
      history.replaceState(null, '', `#/jobs${query({ ...wanted, page: page > 1 ? page : '' })}`);
      try {
        const listed = await call('GET', `/v1/jobs${query({ ...wanted, page })}`);
        showJobsPage(results, listed, (next) => { page = next; load(); });
      } catch (err) {
        replace(results, h('p', { class: 'error', role: 'alert' }, err.message));
      }
    };
    filters.addEventListener('change', () => { page = 1; load(); });
    filters.addEventListener('input', (e) => {
      if (e.target.type !== 'search') return;
      clearTimeout(typing);
      typing = setTimeout(() => { page = 1; load(); }, 300);
    });
    await load();
    return () => clearTimeout(typing);
  }

  function showJobsPage(into, listed, goTo) {
    const pages = Math.max(1, listed.total_pages);
    const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' },
      h('button', { type: 'button', disabled: listed.page <= 1, onclick: () => goTo(listed.page - 1) }, '← Previous'),
      h('span', {}, `Page ${listed.page} of ${pages} · ${listed.total_count.toLocaleString()} jobs`),
      h('button', { type: 'button', disabled: !listed.has_more, onclick: () => goTo(listed.page + 1) }, 'Next →'));
    replace(into, 
      listed.jobs.length
        ? jobTable(listed.jobs, ['name', 'status', 'type', 'schedule', 'next', 'last', 'attempt'], 'Sorted by schedule time (a waiting job’s next run), soonest first')
        : h('p', {}, 'No job matches.'),
      pager);
  }

  // ---- A job -------------------------------------------------------------

  async function viewJob(into, id) {
    const header = h('div');
    const fields = h('section', { 'aria-labelledby': 'fields-h' });
    const schedule = h('section', { 'aria-labelledby': 'schedule-h' });
    const runs = h('section', { 'aria-labelledby': 'runs-h' });
    const events = h('ol', { class: 'feed', 'aria-live': 'polite' });
    add(into, header, fields, schedule, runs,
      h('section', { 'aria-labelledby': 'events-h' }, h('h2', { id: 'events-h' }, 'Events since you opened this page'), events));
    let runsPage = 1;
    /** Shows the job as it is now; returns it (null if it cannot be read). */
    const refresh = async () => {
      let job;
      try {
        job = await call('GET', `/v1/jobs/${id}`);
      } catch (err) {
        replace(header, h('h1', {}, 'Job'), h('p', { class: 'error', role: 'alert' }, err.message));
        return null;
      }
      showJobHeader(header, job, refresh);
      showJobFields(fields, job);
      await Promise.all([showSchedule(schedule, job), showRuns(runs, job, runsPage, (p) => { runsPage = p; refresh(); })]);
      return job;
    };
    const job = await refresh();
    // (The stream has no filter by job: its type narrows it, the id here.)
    const stop = follow({ job_types: job ? job.job_type : '' }, (kind, event) => {
      if (kind === 'lagged' || !event.job || event.job.id !== id) return;
      events.prepend(feedItem(kind, event));
      refresh();
    }, () => {});
    return stop;
  }

  function showJobHeader(into, job, refresh) {
    const actions = [];
    if (mayChange()) {
      const post = (what) => () => call('POST', `/v1/jobs/${job.id}/${what}`);
      actions.push(h('a', { class: 'button', href: `#/jobs/${job.id}/edit` }, 'Edit'));
      if (isRecurring(job)) {
        actions.push(job.paused
          ? h('button', { type: 'button', onclick: () => act('Resume', `Resume ${job.name}? Missed occurrences follow its catch-up policy.`, post('resume'), refresh) }, 'Resume')
          : h('button', { type: 'button', onclick: () => act('Pause', `Pause ${job.name}? It keeps its schedule but does not fire until resumed.`, post('pause'), refresh) }, 'Pause'));
      }
      actions.push(h('button', { type: 'button', onclick: () => act('Trigger now', `Fire ${job.name} now, outside its schedule?`, post('trigger'), refresh) }, 'Trigger now'));
      if (!isRecurring(job)) {
        actions.push(h('button', { type: 'button', onclick: () => act('Rerun', `Run ${job.name} again now, with fresh attempts?`, post('rerun'), refresh) }, 'Rerun'));
      }
      actions.push(h('button', {
        type: 'button', class: 'danger',
        onclick: () => act('Delete', `Delete ${job.name} and its run history? This cannot be undone.`, () => call('DELETE', `/v1/jobs/${job.id}`), () => { app.keepFlash = true; location.hash = '#/jobs'; }),
      }, 'Delete'));
    }
    replace(into, 
      h('h1', {}, job.name, ' ', statusBadge(job.status), job.paused ? [' ', badge('paused', 'paused')] : null),
      actions.length ? h('div', { class: 'actions', role: 'group', 'aria-label': 'Actions' }, actions) : null);
  }

  function showJobFields(into, job) {
    const rows = [
      ['Id', h('code', {}, job.id)],
      ['Type', job.job_type],
      ['Description', job.description || '—'],
      ['Schedule time', timeEl(job.schedule_time)],
      ['Next run', timeEl(nextRun(job))],
      ['Last outcome', lastOutcome(job) ? statusBadge(lastOutcome(job)) : '—'],
      ['Attempt', job.attempt || '—'],
      ['Last error', job.last_error || '—'],
      isRecurring(job) ? ['Runs / missed', `${job.runs} / ${job.missed}`] : null,
      isRecurring(job) ? ['Last occurrence', timeEl(job.last_occurrence)] : null,
      job.retry_policy ? ['Retry policy', h('code', {}, JSON.stringify(job.retry_policy))] : null,
      job.client_key ? ['Client key', h('code', {}, job.client_key)] : null,
      ['Created', timeEl(job.created_time)],
      ['Changed', timeEl(job.updated_time)],
      ['Job data', h('pre', {}, job.job_data)],
    ].filter(Boolean);
    replace(into, h('h2', { id: 'fields-h' }, 'Fields'),
      h('dl', { class: 'fields' }, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)])));
  }

  async function showSchedule(into, job) {
    const zone = (job.recurrence && job.recurrence.time_zone) || 'UTC';
    let preview;
    try {
      preview = await call('POST', '/v1/preview', { id: job.id, count: 10 });
    } catch (err) {
      replace(into, h('h2', { id: 'schedule-h' }, 'Schedule'), h('p', { class: 'error' }, err.message));
      return;
    }
    replace(into, h('h2', { id: 'schedule-h' }, 'Schedule'),
      h('p', { id: 'schedule-words' }, preview.description || scheduleWords(job)),
      occurrenceTable(preview.occurrences, zone, scheduleCaption(job)));
  }

  function scheduleCaption(job) {
    if (job.paused) return 'Paused: these fire only once it is resumed';
    if (!isRecurring(job) && !nextRun(job)) return 'Its schedule time: it is not due again (Rerun runs it now)';
    return 'Next occurrences';
  }

  function occurrenceTable(occurrences, zone, caption) {
    if (!occurrences.length) return h('p', { class: 'note' }, 'No occurrence is left.');
    return h('div', { class: 'scroll' }, h('table', { id: 'occurrences' },
      h('caption', {}, caption),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, `Your time (${VIEWER_ZONE})`), h('th', { scope: 'col' }, `Job's time (${zone})`), h('th', { scope: 'col' }, 'Kind'))),
      h('tbody', {}, occurrences.map((o) => h('tr', {}, h('td', {}, timeEl(o.time)), h('td', {}, timeEl(o.time, zone)), h('td', {}, o.kind))))));
  }

  async function showRuns(into, job, page, goTo) {
    let listed;
    try {
      listed = await call('GET', `/v1/jobs/${job.id}/runs${query({ page, size: 20 })}`);
    } catch (err) {
      replace(into, h('h2', { id: 'runs-h' }, 'Runs'), h('p', { class: 'error' }, err.message));
      return;
    }
    const table = listed.runs.length ? h('div', { class: 'scroll' }, h('table', { id: 'runs' },
      h('caption', {}, 'Newest first'),
      h('thead', {}, h('tr', {}, ['Fired', 'Attempt', 'Cause', 'Outcome', 'Lateness', 'Finished', 'Error', 'Executor'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, listed.runs.map((run) => h('tr', {},
        h('td', {}, timeEl(run.fired_time)), h('td', { class: 'num' }, run.attempt), h('td', {}, run.cause),
        h('td', {}, statusBadge(run.outcome)), h('td', { class: 'num' }, duration(run.lateness_ms)),
        h('td', {}, timeEl(run.finished_time)), h('td', {}, run.error || '—'), h('td', {}, run.executor || '—')))))) : h('p', { class: 'note' }, 'It has not run yet.');
    const pager = listed.total_pages > 1 ? h('nav', { class: 'pager', 'aria-label': 'Pages of runs' },
      h('button', { type: 'button', disabled: page <= 1, onclick: () => goTo(page - 1) }, '← Newer'),
      h('span', {}, `Page ${listed.page} of ${listed.total_pages}`),
      h('button', { type: 'button', disabled: !listed.has_more, onclick: () => goTo(page + 1) }, 'Older →')) : null;
    replace(into, h('h2', { id: 'runs-h' }, `Runs (${listed.total_count})`), table, pager);
  }

  // ---- Live feed ---------------------------------------------------------

  function feedItem(kind, event) {
    const job = event.job || {};
    const label = kind === 'dead_letter' ? 'dead letter' : kind;
    const cls = kind === 'result' ? (job.status === 'succeeded' ? 'k-result-ok' : 'k-result-bad') : `k-${kind}`;
    const failed = (kind === 'result' && job.status !== 'succeeded') || kind === 'dead_letter';
    return h('li', {},
      h('time', { datetime: new Date().toISOString() }, new Date().toLocaleTimeString()),
      badge(label, cls),
      job.id ? h('a', { href: `#/jobs/${job.id}` }, job.name || job.id) : null,
      job.status ? statusBadge(job.status) : null,
      event.scheduled_key ? h('span', { class: 'note mono' }, `key ${event.scheduled_key}`) : null,
      event.occurrence ? h('span', { class: 'note' }, `occurrence ${formatTime(event.occurrence)}`) : null,
      job.attempt > 1 ? h('span', { class: 'note' }, `attempt ${job.attempt}`) : null,
      failed && job.last_error ? h('span', {}, job.last_error) : null);
  }

  function viewLive(into, params) {
    const chosen = (name, all) => (params.get(name) ? params.get(name).split(',') : all);
    const kinds = chosen('kinds', KINDS);
    const types = chosen('job_types', TYPES);
    const box = (group, value, on) => {
      const id = `${group}-${value}`;
      return h('span', { class: 'check' }, h('input', { type: 'checkbox', id, name: group, value, checked: on }), ' ', h('label', { for: id }, value.replace('_', ' ')));
    };
    const filters = h('form', { class: 'filters', onsubmit: (e) => e.preventDefault() },
      h('fieldset', {}, h('legend', {}, 'Kinds'), KINDS.map((k) => box('kinds', k, kinds.includes(k)))),
      h('fieldset', {}, h('legend', {}, 'Types'), TYPES.map((t) => box('job_types', t, types.includes(t)))));
    const state = h('p', { class: 'live-state', role: 'status' }, 'Connecting…');
    const list = h('ol', { class: 'feed', id: 'feed' });
    let paused = false;
    const pause = h('button', { type: 'button', 'aria-pressed': 'false', onclick: () => { paused = !paused; pause.setAttribute('aria-pressed', String(paused)); pause.textContent = paused ? 'Resume feed' : 'Pause feed'; } }, 'Pause feed');
    const clear = h('button', { type: 'button', onclick: () => replace(list) }, 'Clear');
    add(into, h('h1', {}, 'Live events'), filters, h('div', { class: 'actions' }, pause, clear), state, list);
    let stop = () => {};
    const connect = () => {
      stop();
      const picked = (group) => [...filters.querySelectorAll(`input[name=${group}]:checked`)].map((i) => i.value);
      const wanted = { kinds: picked('kinds').join(','), job_types: picked('job_types').join(',') };
      history.replaceState(null, '', `#/live${query(wanted)}`);
      stop = follow(wanted, (kind, event) => {
        if (paused) return;
        if (kind === 'lagged') {
          list.prepend(h('li', {}, badge('missed', 'st-failed'), `${event.missed} events were missed (the feed fell behind)`));
          return;
        }
        list.prepend(feedItem(kind, event));
        while (list.children.length > FEED_MAX) list.lastChild.remove();
      }, (what, detail) => {
        state.className = `live-state ${what === 'live' ? 'live' : what === 'down' ? 'down' : ''}`;
        state.textContent = what === 'live' ? 'Live: new events appear at the top' : what === 'down' ? `Disconnected: ${detail}` : 'Connecting…';
      });
    };
    filters.addEventListener('change', connect);
    connect();
    return () => stop();
  }

  // ---- Create and edit ---------------------------------------------------

  const bytes = (text) => new TextEncoder().encode(text).length;

  function input(name, label, attrs, note) {
    const control = attrs.tag === 'textarea'
      ? h('textarea', { id: name, name, ...attrs, tag: null, 'aria-describedby': `${name}-error ${note ? `${name}-note` : ''}` })
      : h('input', { id: name, name, ...attrs, tag: null, 'aria-describedby': `${name}-error ${note ? `${name}-note` : ''}` });
    return h('div', { class: 'form-row', 'data-field': name },
      h('label', { for: name }, label), control,
      note ? h('p', { class: 'note', id: `${name}-note` }, note) : null,
      h('p', { class: 'field-error', id: `${name}-error`, 'aria-live': 'polite' }));
  }

  /** The local time a datetime-local input shows for an instant. */
  function localInput(iso) {
    const at = iso ? new Date(iso) : new Date(Date.now() + 60000);
    const shifted = new Date(at.getTime() - at.getTimezoneOffset() * 60000);
    return shifted.toISOString().slice(0, 16);
  }

  async function viewForm(into, id) {
    const job = id ? await call('GET', `/v1/jobs/${id}`) : null;
    const rec = (job && job.recurrence) || {};
    const kind = rec.cron_expression ? 'cron' : rec.interval_seconds ? 'interval' : 'once';
    const zones = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
    const kindRadio = (value, text) => h('span', { class: 'radio' },
      h('input', { type: 'radio', id: `kind-${value}`, name: 'kind', value, checked: kind === value }), ' ', h('label', { for: `kind-${value}` }, text));
    const general = h('p', { class: 'error', role: 'alert', hidden: true });
    const preview = h('div', { id: 'preview', 'aria-live': 'polite' });
    const form = h('form', { novalidate: true },
      general,
      input('name', 'Name', { required: true, value: job ? job.name : '', autocomplete: 'off' }),
      input('description', 'Description', { tag: 'textarea', rows: 2 }),
      h('div', { class: 'form-row' }, select('job_type', 'Type', TYPES.map((t) => [t, t]), job ? job.job_type : 'email')),
      input('job_data', 'Job data (what the executor receives)', { tag: 'textarea', rows: 4, required: true, spellcheck: 'false' }, 'For email: a JSON document such as {"SourceAddress": "…", "DestinationAddress": "…", "Subject": "…", "Message": "…"}.'),
      h('fieldset', {}, h('legend', {}, 'When'),
        h('div', { class: 'form-row', role: 'radiogroup', 'aria-label': 'Schedule kind' }, kindRadio('once', 'Once'), kindRadio('cron', 'Cron expression'), kindRadio('interval', 'Every N seconds')),
        h('div', { 'data-kind': 'once' }, input('schedule_time', `At (your time, ${VIEWER_ZONE})`, { type: 'datetime-local', step: 1, value: localInput(job && job.schedule_time) })),
        h('div', { 'data-kind': 'cron', class: 'form-grid' },
          input('cron_expression', 'Cron expression', { value: rec.cron_expression || '', autocomplete: 'off', spellcheck: 'false', placeholder: '0 9 * * MON-FRI' }, 'Five fields (minute hour day month weekday), six with seconds first, or @hourly, @daily…'),
          input('time_zone', 'Time zone', { value: rec.time_zone || 'UTC', list: 'zones', autocomplete: 'off' })),
        h('div', { 'data-kind': 'interval' }, input('interval_seconds', 'Every (seconds)', { type: 'number', min: 1, step: 1, value: rec.interval_seconds || 60 })),
        h('datalist', { id: 'zones' }, zones.map((z) => h('option', { value: z }))),
        preview),
      h('details', {}, h('summary', {}, 'Retries'),
        input('max_attempts', 'Attempts in all (empty: the service default)', { type: 'number', min: 1, step: 1, value: (job && job.retry_policy && job.retry_policy.max_attempts) || '' })),
      h('div', { class: 'actions' },
        h('button', { type: 'submit', class: 'primary' }, job ? 'Save' : 'Create'),
        h('a', { class: 'button', href: job ? `#/jobs/${job.id}` : '#/jobs' }, 'Cancel')));
    form.elements.description.value = job ? job.description : '';
    form.elements.job_data.value = job ? job.job_data : '';
    add(into, h('h1', {}, job ? `Edit ${job.name}` : 'New job'), form);

    let previewTimer;
    const update = () => {
      const chosen = form.elements.kind.value;
      form.querySelectorAll('[data-kind]').forEach((el) => { el.hidden = el.dataset.kind !== chosen; });
      validate(form);
      clearTimeout(previewTimer);
      previewTimer = setTimeout(() => showPreview(form, preview), 250);
    };
    form.addEventListener('input', update);
    form.addEventListener('change', update);
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      if (!validate(form, true)) return;
      const body = jobBody(form, job);
      try {
        const saved = job ? await call('PUT', `/v1/jobs/${job.id}`, body) : await call('POST', '/v1/jobs', body);
        flash(job ? 'Saved.' : 'Created.');
        app.keepFlash = true;
        location.hash = `#/jobs/${job ? job.id : saved.id}`;
      } catch (err) {
        showRefusal(form, general, err);
      }
    });
    update();
    return () => clearTimeout(previewTimer);
  }

  function setError(form, name, message) {
    const box = form.querySelector(`#${name}-error`);
    const control = form.elements[name];
    if (box) box.textContent = message || '';
    if (control && control.setAttribute) control.setAttribute('aria-invalid', message ? 'true' : 'false');
  }

  /** Checks what can be checked in the browser; the service checks again. */
  function validate(form, submitting) {
    const v = (name) => form.elements[name].value;
    const kind = v('kind');
    const errors = {
      name: !v('name').trim() ? 'A name is needed.' : bytes(v('name')) > 256 ? 'At most 256 bytes.' : '',
      job_data: !v('job_data').trim() ? 'Job data is needed.' : bytes(v('job_data')) > 65536 ? 'At most 64 KiB.' : '',
      description: bytes(v('description')) > 4096 ? 'At most 4 KiB.' : '',
      schedule_time: kind === 'once' && !v('schedule_time') ? 'A time is needed.' : '',
      cron_expression: kind === 'cron' && !v('cron_expression').trim() ? 'An expression is needed.' : '',
      interval_seconds: kind === 'interval' && !(Number(v('interval_seconds')) >= 1) ? 'A whole number of seconds, at least 1.' : '',
      max_attempts: v('max_attempts') && !(Number(v('max_attempts')) >= 1) ? 'At least 1.' : '',
    };
    for (const [name, message] of Object.entries(errors)) {
      // While typing, only fields already touched are marked.
      if (submitting || form.elements[name].value !== '' || message === '') setError(form, name, message);
    }
    const first = Object.entries(errors).find(([, m]) => m);
    if (submitting && first) form.elements[first[0]].focus();
    return !first;
  }

  function recurrenceOf(form, kept) {
    const v = (name) => form.elements[name].value.trim();
    const rec = { ...(kept || {}) };
    delete rec.cron_expression; delete rec.interval_seconds; delete rec.anchor_time;
    if (v('kind') === 'cron') {
      rec.cron_expression = v('cron_expression');
      rec.time_zone = v('time_zone') || 'UTC';
    } else {
      delete rec.time_zone; delete rec.dst_repeated; delete rec.dst_skipped;
      rec.interval_seconds = Number(v('interval_seconds'));
    }
    return rec;
  }

  function jobBody(form, job) {
    const v = (name) => form.elements[name].value;
    const body = { name: v('name'), description: v('description'), job_type: v('job_type'), job_data: v('job_data') };
    if (v('kind') === 'once') body.schedule_time = new Date(v('schedule_time')).toISOString();
    else body.recurrence = recurrenceOf(form, job && job.recurrence);
    const policy = { ...((job && job.retry_policy) || {}) };
    if (v('max_attempts')) policy.max_attempts = Number(v('max_attempts'));
    else delete policy.max_attempts;
    if (Object.keys(policy).length) body.retry_policy = policy;
    return body;
  }

  /** The service's refusal: beside its field when the form has it. */
  function showRefusal(form, general, err) {
    const field = err.field && err.field.split('.').pop();
    if (field && form.querySelector(`#${CSS.escape(field)}-error`)) {
      general.hidden = true;
      setError(form, field, err.message);
      form.elements[field].focus();
    } else {
      general.hidden = false;
      general.textContent = `Refused: ${err.message}`;
    }
  }

  async function showPreview(form, into) {
    const kind = form.elements.kind.value;
    if (kind === 'once') {
      const at = form.elements.schedule_time.value;
      replace(into, at ? h('p', { class: 'note' }, `Fires once, at ${formatTime(new Date(at).toISOString())} your time.`) : '');
      return;
    }
    const rec = recurrenceOf(form, {});
    if ((kind === 'cron' && !rec.cron_expression) || (kind === 'interval' && !(rec.interval_seconds >= 1))) {
      replace(into);
      return;
    }
    try {
      const preview = await call('POST', '/v1/preview', { recurrence: rec, count: 5 });
      if (kind === 'cron') setError(form, 'cron_expression', '');
      replace(into, h('p', { id: 'preview-words' }, preview.description),
        occurrenceTable(preview.occurrences, rec.time_zone || 'UTC', 'Its next occurrences, if saved now'));
    } catch (err) {
      const field = err.field && err.field.split('.').pop();
      if (field && form.querySelector(`#${CSS.escape(field)}-error`)) setError(form, field, err.message);
      replace(into, h('p', { class: 'error', id: 'preview-error' }, err.message));
    }
  }

  // ---- Routing -----------------------------------------------------------

  const ROUTES = [
    [/^\/?$/, 'overview', 'Overview', (into) => viewOverview(into)],
    [/^\/jobs$/, 'jobs', 'Jobs', (into, params) => viewJobs(into, params)],
    [/^\/new$/, 'new', 'New job', (into) => viewForm(into, null)],
    [/^\/jobs\/([0-9a-fA-F]{24})$/, 'jobs', 'Job', (into, params, id) => viewJob(into, id)],
    [/^\/jobs\/([0-9a-fA-F]{24})\/edit$/, 'jobs', 'Edit job', (into, params, id) => viewForm(into, id)],
    [/^\/live$/, 'live', 'Live events', (into, params) => viewLive(into, params)],
    [/^\/sign-in$/, null, 'Sign in', (into) => add(into, ...viewSignIn())],
  ];

  async function route() {
    if (app.cleanup) { app.cleanup(); app.cleanup = null; }
    // A message belongs to the page it was shown on, unless it led here.
    if (!app.keepFlash) document.getElementById('flash').hidden = true;
    app.keepFlash = false;
    const [path, search] = location.hash.replace(/^#/, '').split('?');
    const params = new URLSearchParams(search || '');
    const found = ROUTES.map(([pattern, ...rest]) => [path.match(pattern), ...rest]).find(([m]) => m);
    const view = document.createElement('div');
    replace(main, view);
    if (!found) {
      add(view, h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to the overview')));
      return;
    }
    const [match, nav, title, render] = found;
    if (!app.session && nav !== null) {
      await loadSession();
      if (!app.session) { askToSignIn(app.signInReason); return; }
    }
    document.title = `${title} · Scheduler console`;
    document.querySelectorAll('[data-nav]').forEach((a) => {
      if (a.dataset.nav === nav) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
    });
    try {
      const cleanup = await render(view, params, match[1]);
      if (main.firstChild === view) app.cleanup = cleanup || null;
      else if (cleanup) cleanup();
    } catch (err) {
      if (err.status !== 401) add(view, h('p', { class: 'error', role: 'alert' }, err.message));
    }
  }

  document.getElementById('skip').addEventListener('click', (e) => { e.preventDefault(); main.focus(); });
  window.addEventListener('hashchange', () => { route(); main.focus({ preventScroll: true }); });
  route();
})();

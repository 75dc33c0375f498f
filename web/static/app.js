// chatd browser UI: a small client of the wire protocol (see docs/protocol.md).
// Everything that comes from the server is untrusted and is rendered with
// textContent only, never as HTML.
(() => {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const el = {
    appName: $('app-name'), userName: $('user-name'), logout: $('logout'), notices: $('notices'),
    loading: $('loading'), loginView: $('login-view'), loginProviders: $('login-providers'),
    loginOr: $('login-or'), loginForm: $('login-form'),
    loginId: $('login-identifier'), loginPassword: $('login-password'), loginSubmit: $('login-submit'),
    chatView: $('chat-view'), profileField: $('profile-field'), profile: $('profile-select'),
    profileDescription: $('profile-description'), newChat: $('new-chat'), threadList: $('thread-list'),
    settingsForm: $('settings-form'), settingsFields: $('settings-fields'),
    chatTitle: $('chat-title'), status: $('status'), working: $('working'), stop: $('stop'),
    endChat: $('end-chat'), messages: $('messages'), starters: $('starters'),
    composer: $('composer'), input: $('message-input'),
  };

  const state = {
    config: { methods: ['password'], requires_login: true, providers: [] }, // GET /auth/config
    profiles: [],
    ws: null, // the current socket; frames and closes of any other socket are ignored
    welcomed: false,
    stage: 'new', // what the pending hello asks for: 'new', 'session' or 'thread'
    session: null, // {session_id, thread_id, epoch} of the current chat
    chatProfile: '',
    lastSeq: 0,
    nodes: new Map(), // message id -> element
    streams: new Map(), // streaming message id -> n of the last delta applied
    running: false,
    ask: null, // pending text ask, answered by the next message
    widgets: [], // [widget, input] of the settings panel
    outbox: [], // {frame, sent}: messages not yet echoed by the server
    attempts: 0, timer: 0, retried4408: false,
  };

  // ---- helpers ----

  // h creates an element; text goes through textContent, never HTML.
  function h(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') node.textContent = v;
      else if (k === 'class') node.className = v;
      else node.setAttribute(k, v === true ? '' : String(v));
    }
    node.append(...children);
    return node;
  }

  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID(); // secure contexts only
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const x = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
    return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
  }

  async function api(method, path, body) {
    const opts = { method, headers: { Accept: 'application/json' } };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(path, opts);
    let data = null;
    try { data = await res.json(); } catch { /* no JSON body */ }
    return { ok: res.ok, status: res.status, data, res };
  }

  function apiError(r) {
    const e = (r.data && r.data.error) || {};
    return [e.code || `http_${r.status}`, e.message || `request failed (${r.status})`];
  }

  function notice(code, message) {
    const dismiss = h('button', { type: 'button', class: 'dismiss', 'aria-label': 'Dismiss', text: '×' });
    const node = h('div', { class: 'notice', role: 'alert', 'data-testid': 'error', 'data-code': code },
      h('strong', { text: code }), h('span', { text: ` ${message}` }), dismiss);
    dismiss.addEventListener('click', () => node.remove());
    el.notices.append(node);
  }

  const setStatus = (text) => { el.status.textContent = text; };

  function setUser(user) {
    if (user) el.userName.textContent = user.display_name || user.identifier || '';
  }

  // ---- views ----

  // localNext is where an identity provider sends the browser back to: this
  // page's path and query, only when they make a local path (a single
  // leading '/': '//host' and '/\host' name another site).
  function localNext() {
    const next = location.pathname + location.search;
    return /^\/(?![/\\])/.test(next) ? next : '';
  }

  function providerLoginURL(name) {
    const url = `/auth/oauth/${encodeURIComponent(name)}/login`;
    const next = localNext();
    return next ? `${url}?${new URLSearchParams({ next })}` : url;
  }

  // renderLoginMethods shows one link per identity provider, which leaves
  // the page for the provider's sign-in (the server redirects back to next
  // with the session cookie set; init then finds the user signed in), and
  // the password form when the server takes passwords or offers nothing else.
  function renderLoginMethods() {
    const cfg = state.config;
    const providers = (Array.isArray(cfg.providers) ? cfg.providers : []).filter((p) => p && p.name);
    const password = (Array.isArray(cfg.methods) && cfg.methods.includes('password')) || providers.length === 0;
    el.loginProviders.replaceChildren(...providers.map((p) => h('a', {
      class: 'button provider', href: providerLoginURL(p.name),
      'data-testid': 'login-provider', 'data-provider': p.name,
      text: `Sign in with ${p.display_name || p.name}`,
    })));
    el.loginProviders.hidden = providers.length === 0;
    el.loginForm.hidden = !password;
    el.loginOr.hidden = !password || providers.length === 0;
  }

  function showLogin(message) {
    disconnect();
    state.session = null;
    state.outbox = [];
    clearMessages();
    el.loading.hidden = true;
    el.chatView.hidden = true;
    el.loginView.hidden = false;
    el.logout.hidden = true;
    el.userName.textContent = '';
    renderLoginMethods();
    if (message) notice('unauthorized', message);
    if (!el.loginForm.hidden) el.loginId.focus();
    else el.loginProviders.querySelector('a')?.focus();
  }

  async function showApp() {
    el.loading.hidden = true;
    el.loginView.hidden = true;
    el.chatView.hidden = false;
    el.logout.hidden = !state.config.requires_login;
    const r = await api('GET', '/app');
    if (r.ok) {
      if (r.data.name) el.appName.textContent = r.data.name;
      setProfiles(r.data.profiles);
    } else if (r.status === 401 && state.config.requires_login) {
      return showLogin();
    } else if (r.status !== 401) { // anonymous mode: the user exists after the first socket
      notice(...apiError(r));
    }
    setStatus('Start a new chat, or just type a message.');
    updateControls();
    loadThreads();
    el.input.focus();
  }

  // ---- history ----

  // loadThreads lists the user's persisted chats, most recent first; a
  // click resumes one.
  async function loadThreads() {
    const r = await api('GET', '/threads?limit=30');
    if (!r.ok) return;
    el.threadList.replaceChildren(...r.data.threads.map((t) => {
      const b = h('button', { type: 'button', class: 'thread', 'data-testid': 'thread', 'data-id': t.id,
        text: t.name || '(untitled)', title: new Date(t.updated_at).toLocaleString() });
      if (state.session && state.session.thread_id === t.id) b.classList.add('current');
      b.addEventListener('click', () => resumeThread(t.id));
      return h('li', {}, b);
    }));
  }

  function resumeThread(id) {
    state.session = { thread_id: id };
    state.attempts = 0;
    state.lastSeq = 0;
    clearMessages();
    connect('thread');
  }

  function setProfiles(profiles, selected) {
    state.profiles = profiles || [];
    const byDefault = state.profiles.find((p) => p.default) || state.profiles[0];
    const pick = selected || (byDefault && byDefault.name);
    el.profile.replaceChildren(...state.profiles.map((p) => h('option', { value: p.name, text: p.name })));
    if (pick) el.profile.value = pick;
    el.profileField.hidden = state.profiles.length === 0;
    showDescription();
  }

  function showDescription() {
    const p = state.profiles.find((x) => x.name === el.profile.value);
    el.profileDescription.textContent = (p && p.markdown_description) || '';
  }

  function updateControls() {
    el.endChat.disabled = !state.welcomed;
    el.working.hidden = !state.running;
    el.stop.hidden = !state.running;
    el.starters.hidden = !state.welcomed || el.starters.childElementCount === 0;
    el.settingsForm.hidden = !state.welcomed || state.widgets.length === 0;
  }

  function setRunning(running) {
    state.running = running;
    updateControls();
  }

  // ---- messages ----

  function clearMessages() {
    el.messages.replaceChildren();
    state.nodes.clear();
    state.streams.clear();
  }

  function messageNode(m) {
    const kind = { user_message: 'user', assistant_message: 'assistant' }[m.step_type] || 'system';
    const head = h('div', { class: 'author', text: m.author || kind });
    if (m.command) head.append(h('span', { class: 'command', text: ` /${m.command}` }));
    const node = h('article', { class: `msg msg-${kind}`, 'data-testid': 'message', 'data-id': m.id },
      head, h('div', { class: 'content', text: m.content || '' }));
    if (m.metadata && m.metadata.interrupted) node.append(h('p', { class: 'muted', text: '(interrupted)' }));
    return node;
  }

  function upsertMessage(m) {
    let node = state.nodes.get(m.id);
    if (node) {
      node.querySelector('.content').textContent = m.content || '';
    } else {
      node = messageNode(m);
      state.nodes.set(m.id, node);
      el.messages.append(node);
    }
    node.classList.toggle('streaming', !!m.streaming);
    el.messages.scrollTop = el.messages.scrollHeight;
    return node;
  }

  function renderHistory(thread) {
    clearMessages();
    for (const s of (thread && thread.steps) || []) upsertMessage({ ...s, step_type: s.type });
    if (state.session && thread && thread.id) state.session.thread_id = thread.id;
  }

  function renderStarters(profile) {
    const buttons = ((profile && profile.starters) || []).map((s) => {
      const b = h('button', { type: 'button', class: 'starter', text: s.label || s.message });
      b.addEventListener('click', () => sendMessage(s.message, s.command));
      return b;
    });
    el.starters.replaceChildren(...buttons);
  }

  // An ask shows its question; a text ask takes the next message as its answer.
  function renderAsk(f) {
    const node = upsertMessage({ id: `ask:${f.ask_id}`, step_type: 'assistant_message', author: 'question', content: f.content });
    const box = h('div', { class: 'ask-actions' });
    for (const a of (f.kind === 'action' && f.actions) || []) {
      const b = h('button', { type: 'button', text: a.label || a.name });
      b.addEventListener('click', () => send({ type: 'ask_response', ask_id: f.ask_id, action: a.name }));
      box.append(b);
    }
    if (f.kind === 'text') state.ask = f;
    if (f.kind === 'file') box.append(fileAsk(f));
    node.append(box);
  }

  // A file ask: pick files, upload them to POST /files, then answer with their ids.
  function fileAsk(f) {
    const input = h('input', { type: 'file', 'data-testid': 'ask-file', accept: (f.accept || []).join(',') });
    if ((f.max_files || 1) > 1) input.multiple = true;
    const status = h('span', { class: 'muted' });
    const b = h('button', { type: 'button', 'data-testid': 'ask-upload', text: 'Upload' });
    b.addEventListener('click', async () => {
      if (!input.files.length || !state.session) return;
      const form = new FormData();
      for (const file of input.files) form.append('file', file, file.name);
      const q = new URLSearchParams({ session_id: state.session.session_id, ask_id: f.ask_id });
      b.disabled = true;
      status.textContent = 'uploading…';
      try {
        const res = await fetch(`/files?${q}`, { method: 'POST', body: form, credentials: 'same-origin' });
        const body = await res.json().catch(() => ({}));
        if (!res.ok) {
          status.textContent = (body.error && body.error.message) || `upload failed (${res.status})`;
          b.disabled = false;
          return;
        }
        status.textContent = '';
        send({ type: 'ask_response', ask_id: f.ask_id, files: body.files.map((x) => x.id) });
      } catch (e) {
        status.textContent = 'upload failed';
        b.disabled = false;
      }
    });
    return h('span', {}, input, b, status);
  }

  // ---- settings ----

  function renderSettings(settings) {
    const schema = (settings && settings.schema) || [];
    const values = (settings && settings.values) || {};
    state.widgets = [];
    const fields = [];
    for (const w of schema) {
      const value = Object.hasOwn(values, w.id) ? values[w.id] : w.initial;
      const field = widgetField(w, value);
      if (field) fields.push(field);
    }
    el.settingsFields.replaceChildren(...fields);
    updateControls();
  }

  function widgetField(w, value) {
    const id = `setting-${state.widgets.length}`;
    const v = value == null ? '' : value;
    let input;
    const extra = [];
    if (w.type === 'select' || w.type === 'multiselect') {
      const chosen = [].concat(v);
      input = h('select', { id, multiple: w.type === 'multiselect' },
        ...(w.values || []).map((o) => h('option', { value: o, text: o, selected: chosen.includes(o) })));
    } else if (w.type === 'switch') {
      input = h('input', { id, type: 'checkbox', role: 'switch', checked: !!v });
    } else if (w.type === 'slider' || w.type === 'number') {
      const slider = w.type === 'slider';
      input = h('input', { id, type: slider ? 'range' : 'number', min: w.min, max: w.max, step: slider ? w.step : 'any', value: v });
      if (slider) {
        const out = h('output', { for: id, text: input.value });
        input.addEventListener('input', () => { out.textContent = input.value; });
        extra.push(out);
      }
    } else if (w.type === 'tags') {
      input = h('input', { id, type: 'text', placeholder: 'comma-separated', value: [].concat(v).join(', ') });
    } else if (w.type === 'text') {
      input = h(w.multiline ? 'textarea' : 'input', { id, maxlength: w.max_length });
      input.value = v;
    } else {
      return null; // a widget type this UI does not know
    }
    state.widgets.push([w, input]);
    const field = h('div', { class: `field field-${w.type}` }, h('label', { for: id, text: w.label || w.id }), input, ...extra);
    if (w.description) field.append(h('p', { class: 'muted', text: w.description }));
    return field;
  }

  function settingsValues() {
    const values = {};
    for (const [w, input] of state.widgets) {
      switch (w.type) {
        case 'multiselect': values[w.id] = Array.from(input.selectedOptions, (o) => o.value); break;
        case 'switch': values[w.id] = input.checked; break;
        case 'slider':
        case 'number': if (!Number.isNaN(input.valueAsNumber)) values[w.id] = input.valueAsNumber; break;
        case 'tags': values[w.id] = input.value.split(',').map((t) => t.trim()).filter(Boolean); break;
        default: values[w.id] = input.value;
      }
    }
    return values;
  }

  // ---- socket ----

  function send(frame) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return false;
    state.ws.send(JSON.stringify(frame));
    return true;
  }

  function connect(stage) {
    disconnect();
    state.stage = stage;
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const ws = new WebSocket(`${scheme}${location.host}/ws`, 'chat.v1');
    state.ws = ws;
    ws.addEventListener('open', () => { if (state.ws === ws) sendHello(); });
    ws.addEventListener('message', (ev) => { if (state.ws === ws) onFrame(ev.data); });
    ws.addEventListener('close', (ev) => { if (state.ws === ws) onClose(ev); });
    setStatus('Connecting…');
  }

  // disconnect closes the current socket on purpose: its close is not acted on.
  function disconnect() {
    clearTimeout(state.timer);
    state.timer = 0;
    const ws = state.ws;
    state.ws = null;
    state.welcomed = false;
    state.ask = null;
    if (ws) ws.close(1000);
    setRunning(false);
  }

  function openChat() {
    state.session = null;
    state.attempts = 0;
    state.chatProfile = el.profile.value;
    clearMessages();
    connect('new');
  }

  function sendHello() {
    const hello = { type: 'hello', protocol: 1, client_type: 'webapp' };
    const s = state.session;
    if (state.stage === 'session') {
      Object.assign(hello, { session_id: s.session_id, epoch: s.epoch, last_seq: state.lastSeq });
    } else if (state.stage === 'thread') {
      hello.thread_id = s.thread_id;
    } else if (state.chatProfile) {
      hello.chat_profile = state.chatProfile;
    }
    send(hello);
  }

  function onFrame(text) {
    let f;
    try { f = JSON.parse(text); } catch { return; }
    if (!f || typeof f.type !== 'string') return;
    if (typeof f.seq === 'number') {
      if (f.seq <= state.lastSeq) return; // already processed
      if (f.seq > state.lastSeq + 1) return retry('gap'); // reattach to get the missing frames
      state.lastSeq = f.seq;
    }
    const handle = handlers[f.type];
    if (handle) handle(f);
  }

  const handlers = {
    welcome(f) {
      const sameSession = f.resumed === 'session';
      state.welcomed = true;
      state.attempts = 0;
      state.retried4408 = false;
      state.session = { session_id: f.session_id, thread_id: f.thread_id, epoch: f.epoch };
      if (!sameSession || f.replay === 'reset') {
        state.lastSeq = f.last_seq || 0;
        state.running = false;
        clearMessages(); // a history frame follows when there is one
      }
      setUser(f.user);
      if (f.profiles && state.profiles.length === 0) setProfiles(f.profiles, f.chat_profile);
      state.chatProfile = f.chat_profile || '';
      el.chatTitle.textContent = state.chatProfile;
      const profiles = f.profiles || state.profiles;
      renderStarters(profiles.find((p) => p.name === f.chat_profile));
      renderSettings(f.settings);
      setStatus('');
      flushOutbox(sameSession);
      updateControls();
    },
    history(f) { renderHistory(f.thread); },
    message(f) {
      upsertMessage(f);
      if (f.streaming) state.streams.set(f.id, 0);
      else state.streams.delete(f.id);
      if (f.step_type === 'user_message') confirmSent(f);
    },
    stream(f) {
      const last = state.streams.get(f.id);
      const node = state.nodes.get(f.id);
      if (last === undefined || !node || f.n <= last) return;
      node.querySelector('.content').append(f.delta || '');
      state.streams.set(f.id, f.n);
      el.messages.scrollTop = el.messages.scrollHeight;
    },
    stream_state(f) {
      const node = state.nodes.get(f.id);
      if (node) node.querySelector('.content').textContent = f.content || '';
      else upsertMessage({ id: f.id, step_type: 'assistant_message', content: f.content, streaming: true });
      state.streams.set(f.id, f.n || 0);
    },
    message_update(f) {
      state.streams.delete(f.id);
      if (state.nodes.has(f.id)) upsertMessage({ id: f.id, content: f.content, streaming: false });
    },
    ask: renderAsk,
    ask_end(f) {
      const node = state.nodes.get(`ask:${f.ask_id}`);
      if (node) node.querySelector('.ask-actions').replaceChildren(h('p', { class: 'muted', text: `(${f.reason})` }));
      if (state.ask && state.ask.ask_id === f.ask_id) state.ask = null;
    },
    task_start() { setRunning(true); },
    task_end(f) {
      setRunning(false);
      loadThreads();
      if (f.interrupted) notice('interrupted', 'the reply was interrupted');
      else if (f.error) notice('handler_error', 'the reply failed');
    },
    settings(f) { renderSettings(f); },
    error(f) {
      if (!state.welcomed) return helloRefused(f);
      const i = f.ref ? state.outbox.findIndex((e) => e.frame.id === f.ref) : -1;
      if (i >= 0) { // the message was refused: give its text back
        const [entry] = state.outbox.splice(i, 1);
        if (!el.input.value) el.input.value = entry.frame.content;
      }
      notice(f.code, f.message || '');
    },
  };

  // helloRefused follows PROTOCOL §2.5: a lost session resumes its thread, a
  // lost thread becomes a new chat. The socket stays open for another hello.
  function helloRefused(f) {
    if (f.code === 'not_found' && state.stage === 'session' && state.session.thread_id) {
      state.stage = 'thread';
      return sendHello();
    }
    if (f.code === 'not_found' && state.stage !== 'new') {
      notice('not_found', 'the previous chat could not be restored; a new chat was opened');
      state.stage = 'new';
      return sendHello();
    }
    notice(f.code, f.message || '');
    if (f.code === 'rate_limited' || f.code === 'unavailable') {
      retry('retry');
    } else {
      disconnect();
      setStatus('Not connected.');
    }
  }

  // retry drops the current socket on purpose and reconnects after a backoff.
  function retry(reason) {
    const ws = state.ws;
    state.ws = null;
    state.welcomed = false;
    ws.close(4000, reason);
    scheduleReconnect();
  }

  const closeReasons = {
    1000: 'Chat ended.',
    1007: 'The server received text that is not valid UTF-8.',
    1008: 'Too many invalid frames.',
    1009: 'A frame was too large.',
    4408: 'The chat did not open in time.',
    4409: 'This chat was opened elsewhere.',
  };

  // onClose acts on the close codes of PROTOCOL §2.5.
  function onClose(ev) {
    const code = ev.code;
    state.ws = null;
    state.welcomed = false;
    state.ask = null;
    if (code === 4401) return showLogin('your login has ended; please log in again');
    if ([1001, 1006, 4429].includes(code) || (code === 4408 && !state.retried4408)) {
      state.retried4408 ||= code === 4408;
      updateControls(); // the working indicator stays until the reattach says otherwise
      return scheduleReconnect();
    }
    setRunning(false);
    if (code === 1000 || code === 4409) { // the session cannot be reattached
      state.session = null;
      setStatus(closeReasons[code]);
    } else {
      notice('closed', `${ev.reason || closeReasons[code] || 'The connection closed.'} (${code})`);
      setStatus('Disconnected.');
    }
  }

  // scheduleReconnect waits a random 0–2 s, doubling the bound up to 30 s.
  function scheduleReconnect() {
    const delay = Math.random() * Math.min(30000, 2000 * 2 ** state.attempts);
    state.attempts++;
    setStatus(`Connection lost; reconnecting in ${Math.ceil(delay / 1000)} s…`);
    clearTimeout(state.timer);
    state.timer = setTimeout(reconnect, delay);
  }

  async function reconnect() {
    state.timer = 0;
    if (state.config.requires_login) { // a refused upgrade looks like 1006: check the login first
      try {
        const me = await api('GET', '/auth/me');
        if (me.status === 401) return showLogin('your login has ended; please log in again');
      } catch {
        return scheduleReconnect();
      }
    }
    if (el.chatView.hidden || state.timer || state.ws) return; // logged out, or reconnected meanwhile
    connect(state.session ? 'session' : 'new');
  }

  // ---- sending ----

  function sendMessage(content, command) {
    if (!content || !content.trim()) return;
    if (state.ask && state.welcomed) {
      send({ type: 'ask_response', ask_id: state.ask.ask_id, content });
      state.ask = null;
      return;
    }
    const id = uuid();
    const frame = { type: 'message', id, ref: id, content };
    if (command) frame.command = command;
    const entry = { frame, sent: false };
    state.outbox.push(entry);
    if (state.welcomed) entry.sent = send(frame);
    else if (!state.ws && !state.timer) {
      if (state.session) connect('session'); else openChat();
    }
  }

  // flushOutbox sends what waited for a socket. A message sent but not echoed
  // is sent again only to the same session, where its id makes it idempotent.
  function flushOutbox(sameSession) {
    for (const entry of [...state.outbox]) {
      if (entry.sent && !sameSession) {
        state.outbox.splice(state.outbox.indexOf(entry), 1);
        if (!el.input.value) el.input.value = entry.frame.content;
        notice('unsent', 'a message may not have been delivered; its text is back in the input box');
        continue;
      }
      entry.sent = send(entry.frame);
    }
  }

  function confirmSent(echo) {
    const i = state.outbox.findIndex((e) => e.sent && (e.frame.id === echo.id || e.frame.content === echo.content));
    if (i >= 0) state.outbox.splice(i, 1);
  }

  // ---- events ----

  el.loginForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    el.notices.replaceChildren();
    el.loginSubmit.disabled = true;
    try {
      const r = await api('POST', '/auth/login', { identifier: el.loginId.value, password: el.loginPassword.value });
      if (r.ok) {
        el.loginPassword.value = '';
        setUser(r.data.user);
        await showApp();
        return;
      }
      const [code, message] = apiError(r);
      const after = r.res.headers.get('Retry-After');
      notice(code, after ? `${message} (try again in ${after} s)` : message);
    } catch {
      notice('network', 'the server cannot be reached');
    } finally {
      el.loginSubmit.disabled = false;
    }
  });

  el.logout.addEventListener('click', async () => {
    disconnect();
    try { await api('POST', '/auth/logout'); } catch { /* the cookie may remain; show the form anyway */ }
    showLogin();
  });

  el.profile.addEventListener('change', showDescription);
  el.newChat.addEventListener('click', openChat);
  el.stop.addEventListener('click', () => send({ type: 'stop' }));
  el.endChat.addEventListener('click', () => send({ type: 'end' }));

  el.settingsForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    send({ type: 'settings_update', values: settingsValues() });
  });

  el.composer.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (!el.input.value.trim()) return;
    const text = el.input.value;
    el.input.value = '';
    sendMessage(text);
  });

  el.input.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      el.composer.requestSubmit();
    }
  });

  // ---- start ----

  // init decides between the login screen and the chat: a session cookie,
  // set by a password login or by the server at the end of a provider's
  // sign-in, makes GET /auth/me succeed and skips the login screen.
  async function init() {
    try {
      const cfg = await api('GET', '/auth/config');
      if (cfg.ok && cfg.data) state.config = cfg.data;
      const me = await api('GET', '/auth/me');
      if (me.ok) setUser(me.data);
      else if (state.config.requires_login) return showLogin();
      await showApp();
    } catch {
      el.loading.hidden = true;
      notice('network', 'the server cannot be reached; reload to try again');
    }
  }

  init();
})();

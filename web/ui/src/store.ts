// The UI's state and the client side of the wire protocol (docs/protocol.md):
// one socket at a time, reattach on loss, resume of threads, an outbox of
// messages typed while offline. Components read `store.state` and re-render
// on every change (store.subscribe).
import { api, NetworkError } from './api';
import { closeAction, closeText, errorText } from './errors';
import type { Action, AppInfo, AuthConfig, ChatProfile, FileRef, Frame, Settings, Step, Thread, ThreadSummary, User } from './types';

export interface AskView {
  askId: string;
  kind: 'text' | 'file' | 'action';
  actions: Action[];
  accept: string[];
  maxSizeMb: number;
  maxFiles: number;
  expiresAt: string | null;
  ended: string | null; // the ask_end reason once it ended
  uploaded: FileRef[];
  error: string;
}

export interface ChatMessage {
  key: string;
  id: string;
  kind: 'user' | 'assistant' | 'system';
  author: string;
  content: string;
  createdAt: string | null;
  command: string | null;
  parentId: string | null;
  streaming: boolean;
  mark: '' | 'stopped' | 'interrupted' | 'failed';
  pending: boolean;
  clientId: string;
  files: FileRef[];
  ask: AskView | null;
  answerLabel: string; // what the user chose, for the answer to an action ask
}

export interface Notice { id: number; code: string; text: string }

export type ConnState = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ClosedState { code: number; text: string; canResume: boolean }

export interface ThreadList {
  items: ThreadSummary[];
  cursor: string | null;
  query: string;
  loading: boolean;
  done: boolean;
  error: string;
}

interface OutboxEntry { clientId: string; frame: Record<string, unknown>; sent: boolean }

const ENV_STORAGE = 'chatd.env';

export function uuid(): string {
  if (crypto.randomUUID) return crypto.randomUUID(); // secure contexts only
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const x = Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

// threadIdFromPath is the thread of a per-chat URL (/c/<id>), or ''.
export function threadIdFromPath(path: string): string {
  const m = /^\/c\/([A-Za-z0-9_-]{1,128})\/?$/.exec(path);
  return m ? m[1] : '';
}

function newState() {
  return {
    screen: 'loading' as 'loading' | 'login' | 'chat',
    config: { methods: ['password'], requires_login: true, providers: [] } as AuthConfig,
    user: null as User | null,
    app: null as AppInfo | null,
    profiles: [] as ChatProfile[],
    profile: '', // the profile of the open chat, or the one picked for the next
    conn: 'idle' as ConnState,
    reconnectAt: 0, // when the next attempt starts (ms since the epoch)
    closed: null as ClosedState | null,
    session: null as { session_id: string; thread_id: string; epoch: string } | null,
    threadId: '', // the thread on screen
    persisted: false, // whether threadId is stored (it has a user message)
    messages: [] as ChatMessage[],
    olderCursor: null as string | null,
    running: false,
    settings: null as Settings | null,
    settingsError: null as { field: string; text: string } | null,
    settingsSaved: 0,
    textAsk: '', // the pending text ask, answered by the next message
    draft: '',
    notices: [] as Notice[],
    loginError: '',
    loginBusy: false,
    threads: { items: [], cursor: null, query: '', loading: false, done: false, error: '' } as ThreadList,
    env: {} as Record<string, string>,
    confirmProfile: '', // a profile change waiting for the user's yes
    settingsOpen: false,
  };
}

export type State = ReturnType<typeof newState>;

export class Store {
  state: State = newState();
  private listeners = new Set<() => void>();
  private ws: WebSocket | null = null;
  private welcomed = false;
  private stage: 'new' | 'session' | 'thread' = 'new';
  private userOpened = false; // the pending thread hello was the user's click
  private lastSeq = 0;
  private streams = new Map<string, number>();
  private outbox: OutboxEntry[] = [];
  private attempts = 0;
  private timer = 0;
  private retried4408 = false;
  private turnLast = ''; // the last assistant message of the running turn
  private answered: AskView | null = null; // the ask whose answer comes next
  private noticeId = 0;
  private threadsReq = 0;

  constructor() {
    try { this.state.env = JSON.parse(localStorage.getItem(ENV_STORAGE) || '{}') || {}; } catch { this.state.env = {}; }
  }

  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(): void {
    for (const fn of this.listeners) fn();
  }

  set(patch: Partial<State>): void {
    Object.assign(this.state, patch);
    this.emit();
  }

  // ---- notices ----

  notice(code: string, text: string): void {
    const id = ++this.noticeId;
    this.state.notices = [...this.state.notices.filter((n) => n.text !== text), { id, code, text }];
    this.emit();
  }

  dismiss(id: number): void {
    this.set({ notices: this.state.notices.filter((n) => n.id !== id) });
  }

  // ---- start, sign-in ----

  async init(): Promise<void> {
    try {
      const cfg = await api<AuthConfig>('GET', '/auth/config');
      if (cfg.ok && cfg.data) this.state.config = cfg.data;
      const me = await api<User>('GET', '/auth/me');
      if (me.ok) this.state.user = me.data;
      else if (this.state.config.requires_login) return this.showLogin('');
      await this.showApp();
    } catch {
      this.set({ screen: 'login' });
      this.notice('network', errorText('network'));
    }
  }

  showLogin(message: string): void {
    this.disconnect();
    this.outbox = [];
    this.set({ screen: 'login', user: null, messages: [], session: null, loginError: message, conn: 'idle', closed: null });
  }

  async login(identifier: string, password: string): Promise<boolean> {
    this.set({ loginBusy: true, loginError: '' });
    try {
      const r = await api<{ user: User }>('POST', '/auth/login', { identifier, password });
      if (r.ok && r.data) {
        this.state.user = r.data.user;
        this.state.loginBusy = false;
        await this.showApp();
        return true;
      }
      let text = errorText(r.code, r.message);
      if (r.code === 'rate_limited' && r.retryAfter) text = `Too many attempts. Please wait ${r.retryAfter} seconds and try again.`;
      this.set({ loginError: text, loginBusy: false });
    } catch {
      this.set({ loginError: errorText('network'), loginBusy: false });
    }
    return false;
  }

  async logout(): Promise<void> {
    this.disconnect();
    try { await api('POST', '/auth/logout'); } catch { /* the cookie may remain; show the form anyway */ }
    history.replaceState(null, '', '/');
    this.showLogin('');
  }

  async showApp(): Promise<void> {
    this.set({ screen: 'chat', loginError: '' });
    try {
      const r = await api<AppInfo>('GET', '/app');
      if (r.ok && r.data) {
        const def = r.data.profiles.find((p) => p.default) || r.data.profiles[0];
        this.set({ app: r.data, profiles: r.data.profiles || [], profile: this.state.profile || (def ? def.name : '') });
        if (r.data.name) document.title = r.data.name;
      } else if (r.status === 401 && this.state.config.requires_login) {
        return this.showLogin('');
      }
    } catch {
      this.notice('network', errorText('network'));
    }
    this.loadThreads(true);
    const id = threadIdFromPath(location.pathname);
    if (id) this.openThread(id, false);
    else this.openNew(this.state.profile);
  }

  // ---- chats ----

  private clearChat(): void {
    this.streams.clear();
    this.turnLast = '';
    this.answered = null;
    this.state.messages = this.state.messages.filter((m) => m.pending);
    this.state.olderCursor = null;
    this.state.running = false;
    this.state.textAsk = '';
  }

  // openNew starts a new chat in profile.
  openNew(profile: string): void {
    this.disconnect();
    this.outbox = this.outbox.filter((e) => !e.sent);
    this.clearChat();
    this.state.session = null;
    this.state.threadId = '';
    this.state.persisted = false;
    this.state.settings = null;
    this.state.settingsError = null;
    this.state.closed = null;
    this.state.confirmProfile = '';
    if (profile) this.state.profile = profile;
    if (location.pathname !== '/') history.pushState(null, '', '/');
    this.attempts = 0;
    this.connect('new');
  }

  // openThread shows a stored chat: its session when it still lives,
  // else a new session on it (docs/protocol.md §2.1).
  openThread(id: string, push = true): void {
    this.disconnect();
    this.outbox = [];
    this.state.messages = [];
    this.clearChat();
    this.state.session = null;
    this.state.threadId = id;
    this.state.persisted = true;
    this.state.closed = null;
    this.state.settingsError = null;
    const path = `/c/${id}`;
    if (push && location.pathname !== path) history.pushState(null, '', path);
    this.userOpened = true;
    this.attempts = 0;
    this.connect('thread');
  }

  // changeProfile starts a new chat in name; a chat that holds a message
  // of the user asks first (confirmProfile).
  changeProfile(name: string): void {
    if (name === this.state.profile && this.state.conn !== 'closed') return;
    const started = this.state.messages.some((m) => m.kind === 'user');
    if (started) this.set({ confirmProfile: name });
    else this.openNew(name);
  }

  async loadOlder(): Promise<void> {
    const cursor = this.state.olderCursor;
    if (!cursor || !this.state.threadId) return;
    const r = await api<Thread>('GET', `/threads/${encodeURIComponent(this.state.threadId)}?${new URLSearchParams({ cursor })}`).catch(() => null);
    if (!r || !r.ok || !r.data) {
      this.notice(r ? r.code : 'network', errorText(r ? r.code : 'network'));
      return;
    }
    const have = new Set(this.state.messages.map((m) => m.id));
    const older = this.stepsToMessages(r.data.steps).filter((m) => !have.has(m.id));
    this.set({ messages: [...older, ...this.state.messages], olderCursor: r.data.next_cursor || null });
  }

  // ---- the socket ----

  private connect(stage: 'new' | 'session' | 'thread'): void {
    this.disconnect();
    this.stage = stage;
    const scheme = location.protocol === 'https:' ? 'wss://' : 'ws://';
    const ws = new WebSocket(`${scheme}${location.host}/ws`, 'chat.v1');
    this.ws = ws;
    ws.addEventListener('open', () => { if (this.ws === ws) this.sendHello(); });
    ws.addEventListener('message', (ev) => { if (this.ws === ws) this.onFrame(ev.data); });
    ws.addEventListener('close', (ev) => { if (this.ws === ws) this.onClose(ev); });
    this.set({ conn: this.state.conn === 'reconnecting' ? 'reconnecting' : 'connecting', reconnectAt: 0 });
  }

  // disconnect closes the current socket on purpose: its close is not acted on.
  private disconnect(): void {
    clearTimeout(this.timer);
    this.timer = 0;
    const ws = this.ws;
    this.ws = null;
    this.welcomed = false;
    if (ws) ws.close(1000);
  }

  get online(): boolean {
    return this.welcomed && this.state.conn === 'open';
  }

  private send(frame: Record<string, unknown>): boolean {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  private sendHello(): void {
    const hello: Record<string, unknown> = { type: 'hello', protocol: 1, client_type: 'webapp' };
    const env = this.envForHello();
    if (env) hello.env = env;
    const s = this.state.session;
    if (this.stage === 'session' && s) {
      Object.assign(hello, { session_id: s.session_id, epoch: s.epoch, last_seq: this.lastSeq, thread_id: s.thread_id });
    } else if (this.stage === 'thread') {
      hello.thread_id = this.state.threadId;
    } else if (this.state.profile) {
      hello.chat_profile = this.state.profile;
    }
    this.send(hello);
  }

  private envForHello(): Record<string, string> | null {
    const keys = (this.state.app && this.state.app.env_keys) || [];
    const out: Record<string, string> = {};
    for (const k of keys) if (this.state.env[k.key]) out[k.key] = this.state.env[k.key];
    return Object.keys(out).length ? out : null;
  }

  // saveEnv keeps the env values in this browser; a chat that could not
  // start without them starts now.
  saveEnv(values: Record<string, string>): void {
    localStorage.setItem(ENV_STORAGE, JSON.stringify(values));
    this.set({ env: values });
    if (this.state.conn === 'closed' && !this.state.persisted) {
      this.openNew(this.state.profile);
    }
  }

  private onFrame(text: string): void {
    let f: Frame;
    try { f = JSON.parse(text); } catch { return; }
    if (!f || typeof f.type !== 'string') return;
    if (typeof f.seq === 'number') {
      if (f.seq <= this.lastSeq) return; // already processed
      if (f.seq > this.lastSeq + 1) return this.retry(); // reattach to get the missing frames
      this.lastSeq = f.seq;
    }
    const handle = (this.handlers as Record<string, (f: Frame) => void>)[f.type];
    if (handle) {
      handle.call(this, f);
      this.emit();
    }
  }

  private handlers = {
    welcome(this: Store, f: Frame) {
      const sameSession = f.resumed === 'session';
      const st = this.state;
      this.welcomed = true;
      this.attempts = 0;
      this.retried4408 = false;
      st.session = { session_id: f.session_id, thread_id: f.thread_id, epoch: f.epoch };
      if (!sameSession || f.replay === 'reset' || this.stage !== 'session') {
        this.lastSeq = f.last_seq || 0;
        this.clearChat(); // a history frame follows when there is one
      }
      if (f.user) st.user = f.user;
      if (Array.isArray(f.profiles) && f.profiles.length) st.profiles = f.profiles;
      st.profile = f.chat_profile || '';
      st.threadId = f.thread_id;
      if (f.resumed !== 'none') {
        st.persisted = true;
        const path = `/c/${f.thread_id}`;
        if (location.pathname !== path) history.replaceState(null, '', path);
      }
      st.settings = f.settings || null;
      st.conn = 'open';
      st.closed = null;
      st.reconnectAt = 0;
      this.userOpened = false;
      this.flushOutbox(sameSession);
    },
    history(this: Store, f: Frame) {
      const t: Thread = f.thread;
      const pending = this.state.messages.filter((m) => m.pending);
      this.state.messages = [...this.stepsToMessages((t && t.steps) || []), ...pending];
      this.state.olderCursor = f.next_cursor || (t && t.next_cursor) || null;
      this.state.textAsk = '';
      const open = this.state.messages.find((m) => m.ask && !m.ask.ended && m.ask.kind === 'text');
      if (open && open.ask) this.state.textAsk = open.ask.askId;
    },
    message(this: Store, f: Frame) {
      const kind = f.step_type === 'user_message' ? 'user' : f.step_type === 'assistant_message' ? 'assistant' : 'system';
      if (kind === 'user') this.confirmSent(f);
      const m = this.upsert({
        id: f.id, kind, author: f.author, content: f.content || '', createdAt: f.created_at || null,
        command: f.command || null, parentId: f.parent_id || null, streaming: !!f.streaming,
      });
      if (kind === 'user' && m.parentId && this.answered) {
        this.labelAnswer(m, this.answered);
        this.answered = null;
      }
      if (kind === 'assistant') this.turnLast = m.id;
      if (f.streaming) this.streams.set(f.id, 0);
      else this.streams.delete(f.id);
      if (kind === 'user' && !this.state.persisted) {
        this.state.persisted = true;
        const path = `/c/${this.state.threadId}`;
        if (this.state.threadId && location.pathname !== path) history.pushState(null, '', path);
        this.loadThreads(true);
      }
    },
    stream(this: Store, f: Frame) {
      const last = this.streams.get(f.id);
      const m = this.find(f.id);
      if (last === undefined || !m || f.n <= last) return;
      this.replace(m, { content: m.content + (f.delta || '') });
      this.streams.set(f.id, f.n);
    },
    stream_state(this: Store, f: Frame) {
      const m = this.find(f.id);
      if (m) this.replace(m, { content: f.content || '', streaming: true });
      else this.upsert({ id: f.id, kind: 'assistant', content: f.content || '', streaming: true });
      this.streams.set(f.id, f.n || 0);
    },
    message_update(this: Store, f: Frame) {
      this.streams.delete(f.id);
      const m = this.find(f.id);
      if (m) this.replace(m, { content: f.content || '', streaming: false });
    },
    ask(this: Store, f: Frame) {
      const ask: AskView = {
        askId: f.ask_id, kind: f.kind, actions: f.actions || [], accept: f.accept || [],
        maxSizeMb: f.max_size_mb || 0, maxFiles: f.max_files || 1, expiresAt: f.expires_at || null,
        ended: null, uploaded: [], error: '',
      };
      const m = this.upsert({ id: `ask:${f.ask_id}`, kind: 'assistant', author: this.appName(), content: f.content || '', ask });
      this.turnLast = m.id;
      if (f.kind === 'text') this.state.textAsk = f.ask_id;
    },
    ask_end(this: Store, f: Frame) {
      const m = this.state.messages.find((x) => x.ask && x.ask.askId === f.ask_id);
      if (m && m.ask) {
        const ask = { ...m.ask, ended: f.reason || 'ended' };
        this.replace(m, { ask });
        if (f.reason === 'answered') this.answered = ask;
      }
      if (this.state.textAsk === f.ask_id) this.state.textAsk = '';
    },
    task_start(this: Store) {
      this.state.running = true;
      this.turnLast = '';
    },
    task_end(this: Store, f: Frame) {
      this.state.running = false;
      const mark = f.stopped ? 'stopped' : f.interrupted ? 'interrupted' : f.error ? 'failed' : '';
      if (mark) {
        const m = this.turnLast ? this.find(this.turnLast) : undefined;
        if (m) this.replace(m, { mark, streaming: false });
        else {
          const text = { stopped: 'Reply stopped.', interrupted: 'The reply was interrupted.', failed: 'The reply failed.' }[mark];
          this.upsert({ id: `note:${uuid()}`, kind: 'system', author: '', content: text, mark });
        }
        if (f.error) this.notice('handler_error', errorText('handler_error'));
      }
      this.turnLast = '';
      this.loadThreads(true);
    },
    settings(this: Store, f: Frame) {
      this.state.settings = { schema: f.schema || [], values: f.values || {} };
      this.state.settingsError = null;
      this.state.settingsSaved++;
    },
    error(this: Store, f: Frame) {
      if (!this.welcomed) return this.helloRefused(f);
      const ref: string = f.ref || '';
      const i = ref ? this.outbox.findIndex((e) => e.clientId === ref) : -1;
      if (i >= 0) { // the message was refused: give its text back
        const [entry] = this.outbox.splice(i, 1);
        this.state.messages = this.state.messages.filter((m) => m.clientId !== entry.clientId || !m.pending);
        if (!this.state.draft) this.state.draft = String(entry.frame.content || '');
        this.notice(f.code, `${errorText(f.code, f.message)} Your message was not sent; its text is back in the message box.`);
        return;
      }
      if (ref.startsWith('settings:')) {
        const msg: string = f.message || '';
        const cut = msg.indexOf(': ');
        const field = cut > 0 ? msg.slice(0, cut) : '';
        const detail = cut > 0 ? msg.slice(cut + 2) : msg;
        const known = this.state.settings && this.state.settings.schema.some((w) => w.id === field);
        this.state.settingsError = { field: known ? field : '', text: detail ? `Not saved: this value ${detail}.` : errorText(f.code) };
        return;
      }
      if (ref.startsWith('ask:')) {
        const m = this.state.messages.find((x) => x.ask && x.ask.askId === ref.slice(4));
        if (m && m.ask) {
          const text = f.code === 'not_found' ? 'This question is no longer open.' : errorText(f.code, f.message);
          this.replace(m, { ask: { ...m.ask, error: text, ended: f.code === 'not_found' ? 'closed' : m.ask.ended } });
          return;
        }
      }
      this.notice(f.code, errorText(f.code, f.message));
    },
  };

  private appName(): string {
    return (this.state.app && this.state.app.name) || 'Assistant';
  }

  // helloRefused follows docs/protocol.md §2.5: a lost session resumes its
  // thread, a lost thread becomes a new chat. The socket stays open.
  private helloRefused(f: Frame): void {
    if (f.code === 'not_found' && this.stage === 'session' && this.state.threadId) {
      this.stage = 'thread';
      return this.sendHello();
    }
    if (f.code === 'not_found' && this.stage === 'thread') {
      const id = this.state.threadId;
      this.state.threads = { ...this.state.threads, items: this.state.threads.items.filter((t) => t.id !== id) };
      this.notice('not_found', this.userOpened
        ? 'That chat no longer exists: it may have been deleted. A new chat was started instead.'
        : 'The previous chat could not be restored; a new chat was started.');
      this.userOpened = false;
      this.outbox = this.outbox.filter((e) => !e.sent);
      this.clearChat();
      this.state.threadId = '';
      this.state.persisted = false;
      this.state.session = null;
      history.replaceState(null, '', '/');
      this.stage = 'new';
      this.loadThreads(true);
      return this.sendHello();
    }
    const missing = f.code === 'invalid_field' ? /^env\.(.+) is required$/.exec(f.message || '') : null;
    if (missing) {
      const key = ((this.state.app && this.state.app.env_keys) || []).find((k) => k.key === missing[1]);
      const text = `This app needs your “${key ? key.label || key.key : missing[1]}” to start a chat. Enter it in Settings, under “Keys for this app”.`;
      this.disconnect();
      this.set({ conn: 'closed', closed: { code: 0, text, canResume: false }, settingsOpen: true });
      return;
    }
    this.notice(f.code, errorText(f.code, f.message));
    if (f.code === 'rate_limited' || f.code === 'unavailable' || f.code === 'too_many_sessions') {
      this.retry();
    } else {
      this.disconnect();
      this.set({ conn: 'closed', closed: { code: 0, text: errorText(f.code, f.message), canResume: !!this.state.threadId } });
    }
  }

  // retry drops the current socket on purpose and reconnects after a backoff.
  private retry(): void {
    const ws = this.ws;
    this.ws = null;
    this.welcomed = false;
    if (ws) ws.close(4000, 'retry');
    this.scheduleReconnect();
  }

  private onClose(ev: CloseEvent): void {
    const code = ev.code;
    this.ws = null;
    this.welcomed = false;
    const action = closeAction(code);
    if (action === 'login') return this.showLogin(closeText(code));
    if (action === 'reconnect' || (action === 'reconnect-once' && !this.retried4408)) {
      this.retried4408 ||= code === 4408;
      return this.scheduleReconnect();
    }
    if (action === 'resume-thread' && this.state.threadId) {
      this.notice('closed', closeText(code));
      this.attempts = 0;
      this.state.session = null;
      return this.connect('thread');
    }
    if (action === 'resume-thread') return this.openNew(this.state.profile);
    this.state.running = false;
    this.state.textAsk = '';
    const canResume = !!this.state.threadId && this.state.persisted;
    this.set({ conn: 'closed', reconnectAt: 0, closed: { code, text: closeText(code), canResume } });
  }

  // scheduleReconnect waits a random 0–2 s, doubling the bound up to 30 s.
  private scheduleReconnect(): void {
    const delay = Math.random() * Math.min(30000, 2000 * 2 ** this.attempts);
    this.attempts++;
    clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.reconnect(), delay);
    this.set({ conn: 'reconnecting', reconnectAt: Date.now() + delay });
  }

  // retryNow skips the wait of a reconnect.
  retryNow(): void {
    if (this.state.conn !== 'reconnecting' || this.ws) return;
    clearTimeout(this.timer);
    this.timer = 0;
    this.reconnect();
  }

  private async reconnect(): Promise<void> {
    this.timer = 0;
    if (this.state.config.requires_login) { // a refused upgrade looks like 1006: check the login first
      try {
        const me = await api('GET', '/auth/me');
        if (me.status === 401) return this.showLogin(closeText(4401));
        if (!me.ok) return this.scheduleReconnect();
      } catch (e) {
        if (e instanceof NetworkError) return this.scheduleReconnect();
        throw e;
      }
    }
    if (this.state.screen !== 'chat' || this.timer || this.ws) return; // signed out, or reconnected meanwhile
    if (this.state.session) this.connect('session');
    else if (this.state.threadId && this.state.persisted) this.connect('thread');
    else this.connect('new');
  }

  // reopen connects again after a close that does not reconnect by itself:
  // the same thread when there is one (taking it back from another tab).
  reopen(): void {
    if (this.state.threadId && this.state.persisted) this.openThread(this.state.threadId, false);
    else this.openNew(this.state.profile);
  }

  // ---- sending ----

  sendMessage(content: string, command?: string | null): void {
    if (!content.trim()) return;
    if (this.state.textAsk && this.online) {
      this.answerAsk(this.state.textAsk, { content });
      this.state.textAsk = '';
      this.emit();
      return;
    }
    if (this.state.conn === 'closed') return;
    const clientId = uuid();
    const frame: Record<string, unknown> = { type: 'message', id: clientId, ref: clientId, content };
    if (command) frame.command = command;
    const entry: OutboxEntry = { clientId, frame, sent: false };
    this.outbox.push(entry);
    this.state.messages = [...this.state.messages, this.makeMessage({
      key: `pending:${clientId}`, id: `pending:${clientId}`, kind: 'user', author: this.state.user ? this.state.user.identifier : '',
      content, command: command || null, pending: true, clientId, createdAt: new Date().toISOString(),
    })];
    if (this.online) entry.sent = this.send(frame);
    this.emit();
  }

  // flushOutbox sends what waited for a socket. A message sent but not
  // echoed is sent again only to the same session, where its id makes it
  // idempotent; to another session it could be doubled, so it is given
  // back instead.
  private flushOutbox(sameSession: boolean): void {
    for (const entry of [...this.outbox]) {
      if (entry.sent && !sameSession) {
        this.outbox.splice(this.outbox.indexOf(entry), 1);
        this.state.messages = this.state.messages.filter((m) => m.clientId !== entry.clientId || !m.pending);
        if (!this.state.draft) this.state.draft = String(entry.frame.content || '');
        this.notice('unsent', 'A message may not have been delivered; its text is back in the message box.');
        continue;
      }
      entry.sent = this.send(entry.frame);
    }
  }

  // confirmSent takes the echo of a message of ours off the outbox and its
  // pending bubble off the list (the echo carries the server's id, so the
  // oldest sent entry with the same content is the one echoed).
  private confirmSent(echo: Frame): void {
    if (echo.parent_id) return; // the answer to an ask
    const i = this.outbox.findIndex((e) => e.sent && e.frame.content === echo.content);
    if (i < 0) return;
    const [entry] = this.outbox.splice(i, 1);
    this.state.messages = this.state.messages.filter((m) => m.clientId !== entry.clientId || !m.pending);
  }

  get pendingCount(): number {
    return this.outbox.length;
  }

  stop(): void {
    this.send({ type: 'stop' });
  }

  end(): void {
    this.send({ type: 'end' });
  }

  answerAsk(askId: string, answer: { content?: string; action?: string; files?: string[] }): boolean {
    const m = this.state.messages.find((x) => x.ask && x.ask.askId === askId);
    if (m && m.ask) this.replace(m, { ask: { ...m.ask, error: '' } });
    const ok = this.send({ type: 'ask_response', ask_id: askId, ref: `ask:${askId}`, ...answer });
    this.emit();
    return ok;
  }

  setUploaded(askId: string, files: FileRef[]): void {
    const m = this.state.messages.find((x) => x.ask && x.ask.askId === askId);
    if (m && m.ask) this.replace(m, { ask: { ...m.ask, uploaded: files, error: '' } });
    this.emit();
  }

  updateSettings(values: Record<string, unknown>): boolean {
    this.state.settingsError = null;
    const ok = this.send({ type: 'settings_update', values, ref: `settings:${uuid().slice(0, 8)}` });
    this.emit();
    return ok;
  }

  // ---- history ----

  async loadThreads(reset: boolean): Promise<void> {
    const t = this.state.threads;
    if (!reset && (t.loading || t.done)) return;
    const req = ++this.threadsReq;
    const q = new URLSearchParams({ limit: '20' });
    if (t.query) q.set('q', t.query);
    if (!reset && t.cursor) q.set('cursor', t.cursor);
    this.state.threads = { ...t, loading: true };
    this.emit();
    let r;
    try {
      r = await api<{ threads: ThreadSummary[]; next_cursor: string | null }>('GET', `/threads?${q}`);
    } catch {
      r = null;
    }
    if (req !== this.threadsReq) return; // a newer list was asked for
    const cur = this.state.threads;
    if (!r || !r.ok || !r.data) {
      this.set({ threads: { ...cur, loading: false, error: r && r.status !== 401 ? errorText(r.code) : r ? '' : errorText('network') } });
      return;
    }
    const items = reset ? r.data.threads : [...cur.items, ...r.data.threads.filter((x) => !cur.items.some((y) => y.id === x.id))];
    this.set({ threads: { ...cur, items, cursor: r.data.next_cursor, done: !r.data.next_cursor, loading: false, error: '' } });
  }

  searchThreads(query: string): void {
    this.state.threads = { ...this.state.threads, query, cursor: null, done: false };
    this.loadThreads(true);
  }

  async renameThread(id: string, name: string): Promise<boolean> {
    const r = await api<ThreadSummary>('PATCH', `/threads/${encodeURIComponent(id)}`, { name }).catch(() => null);
    if (!r || !r.ok || !r.data) {
      const code = r ? r.code : 'network';
      this.notice(code, code === 'not_found' ? 'That chat no longer exists.' : code === 'bad_request' ? 'That name is not allowed: use 1 to 200 characters, without control characters.' : errorText(code));
      if (code === 'not_found') this.dropThread(id);
      return false;
    }
    const data = r.data;
    this.set({ threads: { ...this.state.threads, items: this.state.threads.items.map((t) => (t.id === id ? { ...t, name: data.name } : t)) } });
    return true;
  }

  async deleteThread(id: string): Promise<void> {
    const r = await api('DELETE', `/threads/${encodeURIComponent(id)}`).catch(() => null);
    if (r && !r.ok && r.code !== 'not_found') {
      this.notice(r.code, errorText(r.code));
      return;
    }
    if (!r) {
      this.notice('network', errorText('network'));
      return;
    }
    this.dropThread(id);
    if (this.state.threadId === id) this.openNew(this.state.profile);
  }

  private dropThread(id: string): void {
    this.set({ threads: { ...this.state.threads, items: this.state.threads.items.filter((t) => t.id !== id) } });
  }

  // ---- messages ----

  private makeMessage(p: Partial<ChatMessage> & { id: string }): ChatMessage {
    return {
      key: p.id, kind: 'assistant', author: '', content: '', createdAt: null, command: null, parentId: null,
      streaming: false, mark: '', pending: false, clientId: '', files: [], ask: null, answerLabel: '', ...p,
    };
  }

  private find(id: string): ChatMessage | undefined {
    return this.state.messages.find((m) => m.id === id);
  }

  private replace(m: ChatMessage, patch: Partial<ChatMessage>): ChatMessage {
    const next = { ...m, ...patch };
    this.state.messages = this.state.messages.map((x) => (x === m ? next : x));
    return next;
  }

  private upsert(p: Partial<ChatMessage> & { id: string }): ChatMessage {
    const m = this.find(p.id);
    if (m) return this.replace(m, p);
    const next = this.makeMessage(p);
    // Pending messages of ours stay last, after what the server sent.
    const i = this.state.messages.findIndex((x) => x.pending);
    const list = [...this.state.messages];
    if (i < 0) list.push(next);
    else list.splice(i, 0, next);
    this.state.messages = list;
    return next;
  }

  private labelAnswer(m: ChatMessage, ask: AskView): void {
    if (ask.kind === 'action') {
      const a = ask.actions.find((x) => x.name === m.content);
      if (a) this.replace(m, { answerLabel: a.label || a.name });
    } else if (ask.kind === 'file') {
      this.replace(m, { files: ask.uploaded });
    }
  }

  stepsToMessages(steps: Step[]): ChatMessage[] {
    const asks = new Map<string, AskView>();
    const answeredSteps = new Set(steps.filter((s) => s.parent_id).map((s) => s.parent_id));
    const out: ChatMessage[] = [];
    for (const s of steps) {
      const md = s.metadata || {};
      const kind = s.type === 'user_message' ? 'user' : s.type === 'assistant_message' ? 'assistant' : 'system';
      let ask: AskView | null = null;
      if (md.ask && typeof md.ask === 'object') {
        const a = md.ask;
        const expired = a.expires_at && Date.parse(a.expires_at) < Date.now();
        ask = {
          askId: a.ask_id, kind: a.kind, actions: a.actions || [], accept: a.accept || [], maxSizeMb: a.max_size_mb || 0,
          maxFiles: a.max_files || 1, expiresAt: a.expires_at || null,
          ended: answeredSteps.has(s.id) ? 'answered' : expired ? 'timeout' : null, uploaded: [], error: '',
        };
        asks.set(s.id, ask);
      }
      const m = this.makeMessage({
        id: ask ? `ask:${ask.askId}` : s.id, kind, author: s.author, content: s.content, createdAt: s.created_at,
        command: s.command, parentId: s.parent_id, mark: md.stopped ? 'stopped' : md.interrupted ? 'interrupted' : '', ask,
        files: Array.isArray(md.files) ? md.files : [],
      });
      if (s.parent_id && md.action) {
        const parent = asks.get(s.parent_id);
        const a = parent && parent.actions.find((x) => x.name === md.action);
        m.answerLabel = a ? a.label || a.name : '';
      }
      out.push(m);
    }
    return out;
  }
}

export const store = new Store();

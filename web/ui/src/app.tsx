// The components of the UI. They render store.state and call the store's
// methods; nothing from the server is ever used as HTML except through
// renderMarkdown (sanitized).
import type { ComponentChildren } from 'preact';
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import { upload, NetworkError } from './api';
import { errorText } from './errors';
import { Icon } from './icons';
import { copyCodeOnClick, renderInline, renderMarkdown } from './markdown';
import { store, type AskView, type ChatMessage, type State } from './store';
import { setThemePref, themePref, type ThemePref } from './theme';
import type { ChatProfile, FileRef, ThreadSummary, Widget } from './types';

function useStore(): State {
  const [, setTick] = useState(0);
  useEffect(() => store.subscribe(() => setTick((n) => n + 1)), []);
  return store.state;
}

const phoneQuery = window.matchMedia('(max-width: 768px)');

function usePhone(): boolean {
  const [phone, setPhone] = useState(phoneQuery.matches);
  useEffect(() => {
    const on = () => setPhone(phoneQuery.matches);
    phoneQuery.addEventListener('change', on);
    return () => phoneQuery.removeEventListener('change', on);
  }, []);
  return phone;
}

function displayName(s: State): string {
  const u = s.user;
  if (!u) return '';
  return u.display_name || u.identifier;
}

function initials(name: string): string {
  const parts = name.replace(/@.*/, '').split(/[\s._-]+/).filter(Boolean);
  const letters = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || '?').slice(0, 2);
  return letters.toUpperCase();
}

export function formatSize(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

function Markdown({ src, inline, class: cls, testid }: { src: string; inline?: boolean; class?: string; testid?: string }) {
  const html = useMemo(() => (inline ? renderInline(src) : renderMarkdown(src)), [src, inline]);
  return <div class={`markdown ${cls || ''}`} data-testid={testid} dangerouslySetInnerHTML={{ __html: html }} />;
}

// ---- the whole page ----

export function App() {
  const s = useStore();
  const phone = usePhone();
  const [sidebar, setSidebar] = useState(!phoneQuery.matches);
  const settingsOpen = s.settingsOpen;
  const setSettingsOpen = (open: boolean) => store.set({ settingsOpen: open });
  useEffect(() => setSidebar(!phone), [phone]);
  useEffect(() => {
    const onKey = (ev: KeyboardEvent) => {
      if (ev.key !== 'Escape') return;
      if (store.state.confirmProfile) store.set({ confirmProfile: '' });
      else if (settingsOpen) setSettingsOpen(false);
      else if (phone && sidebar) setSidebar(false);
    };
    const onPop = () => {
      if (store.state.screen !== 'chat') return;
      const m = /^\/c\/([^/]+)$/.exec(location.pathname);
      if (m && m[1] !== store.state.threadId) store.openThread(m[1], false);
      else if (!m && store.state.threadId) store.openNew(store.state.profile);
    };
    const onFocus = () => { if (store.state.screen === 'chat') store.loadThreads(true); };
    const onOnline = () => store.retryNow();
    document.addEventListener('keydown', onKey);
    window.addEventListener('popstate', onPop);
    window.addEventListener('focus', onFocus);
    window.addEventListener('online', onOnline);
    return () => {
      document.removeEventListener('keydown', onKey);
      window.removeEventListener('popstate', onPop);
      window.removeEventListener('focus', onFocus);
      window.removeEventListener('online', onOnline);
    };
  }, [settingsOpen, phone, sidebar]);

  const closeOnPhone = () => { if (phone) setSidebar(false); };
  return (
    <div class={`app ${s.screen === 'chat' ? 'app-chat' : ''} ${sidebar ? 'sidebar-open' : 'sidebar-closed'} ${phone ? 'phone' : ''}`}>
      <TopBar s={s} sidebar={sidebar} toggleSidebar={() => setSidebar(!sidebar)} openSettings={() => setSettingsOpen(true)} />
      <Notices s={s} />
      {s.screen === 'loading' && <main class="main"><p class="muted center">Loading…</p></main>}
      {s.screen === 'login' && <LoginView s={s} />}
      {s.screen === 'chat' && (
        <main class="main chat-layout" id="chat-view">
          {phone && sidebar && <div class="backdrop" onClick={() => setSidebar(false)} aria-hidden="true" />}
          <Sidebar s={s} open={sidebar} onPicked={closeOnPhone} />
          <ChatPane s={s} />
          {settingsOpen && <SettingsDrawer s={s} close={() => setSettingsOpen(false)} />}
          {s.confirmProfile && <ConfirmProfile s={s} />}
        </main>
      )}
    </div>
  );
}

function TopBar({ s, sidebar, toggleSidebar, openSettings }: { s: State; sidebar: boolean; toggleSidebar: () => void; openSettings: () => void }) {
  const [pref, setPref] = useState<ThemePref>(themePref());
  const next: Record<ThemePref, ThemePref> = { system: 'light', light: 'dark', dark: 'system' };
  const label = { system: 'Theme: system', light: 'Theme: light', dark: 'Theme: dark' }[pref];
  const name = displayName(s);
  return (
    <header class="topbar">
      {s.screen === 'chat' && (
        <button type="button" class="icon-button" data-testid="sidebar-toggle" aria-expanded={sidebar ? 'true' : 'false'}
          aria-controls="sidebar" aria-label={sidebar ? 'Hide chat history' : 'Show chat history'} onClick={toggleSidebar}>
          <Icon name="menu" />
        </button>
      )}
      <span class="app-name" id="app-name">{(s.app && s.app.name) || 'chatd'}</span>
      <span class="spacer" />
      <button type="button" class="icon-button" data-testid="theme-toggle" aria-label={`${label} (change)`} title={label}
        onClick={() => { const p = next[pref]; setThemePref(p); setPref(p); }}>
        <Icon name={pref === 'system' ? 'monitor' : pref === 'light' ? 'sun' : 'moon'} />
      </button>
      {s.screen === 'chat' && (
        <button type="button" class="icon-button" data-testid="settings-open" aria-label="Settings" title="Settings" onClick={openSettings}>
          <Icon name="sliders" />
        </button>
      )}
      {s.screen === 'chat' && name && (
        <span class="me">
          <span class="avatar avatar-small" aria-hidden="true">{initials(name)}</span>
          <span class="user-name" data-testid="user-name">{name}</span>
        </span>
      )}
      {s.screen === 'chat' && s.config.requires_login && (
        <button type="button" class="button-quiet" data-testid="logout" onClick={() => store.logout()}>Log out</button>
      )}
    </header>
  );
}

function Notices({ s }: { s: State }) {
  return (
    <div class="notices" aria-live="polite">
      {s.notices.map((n) => (
        <div key={n.id} class="notice" role="alert" data-testid="error" data-code={n.code}>
          <span>{n.text}</span>
          <button type="button" class="icon-button" aria-label="Dismiss" onClick={() => store.dismiss(n.id)}><Icon name="x" /></button>
        </div>
      ))}
    </div>
  );
}

// ---- sign-in ----

function localNext(): string {
  const next = location.pathname + location.search;
  return /^\/(?![/\\])/.test(next) ? next : '';
}

function providerLoginURL(name: string): string {
  const url = `/auth/oauth/${encodeURIComponent(name)}/login`;
  const next = localNext();
  return next ? `${url}?${new URLSearchParams({ next })}` : url;
}

function LoginView({ s }: { s: State }) {
  const cfg = s.config;
  const providers = (Array.isArray(cfg.providers) ? cfg.providers : []).filter((p) => p && p.name);
  const password = (Array.isArray(cfg.methods) && cfg.methods.includes('password')) || providers.length === 0;
  const idRef = useRef<HTMLInputElement>(null);
  const pwRef = useRef<HTMLInputElement>(null);
  useEffect(() => { if (idRef.current) idRef.current.focus(); }, []);
  const submit = async (ev: Event) => {
    ev.preventDefault();
    const ok = await store.login(idRef.current!.value, pwRef.current!.value);
    if (ok && pwRef.current) pwRef.current.value = '';
  };
  return (
    <main class="main login" id="login-view">
      <div class="card login-card">
        <h1>Sign in</h1>
        {providers.length > 0 && (
          <div class="providers" data-testid="login-providers">
            {providers.map((p) => (
              <a key={p.name} class="button provider" href={providerLoginURL(p.name)} data-testid="login-provider" data-provider={p.name}>
                {`Sign in with ${p.display_name || p.name}`}
              </a>
            ))}
          </div>
        )}
        {password && providers.length > 0 && <p id="login-or" class="login-or muted">or</p>}
        {password && (
          <form class="login-form" data-testid="login-form" onSubmit={submit}>
            <label for="login-identifier">Email or username</label>
            <input id="login-identifier" ref={idRef} name="identifier" autocomplete="username" required data-testid="login-identifier" />
            <label for="login-password">Password</label>
            <input id="login-password" ref={pwRef} name="password" type="password" autocomplete="current-password" required data-testid="login-password" />
            {s.loginError && <p class="form-error" role="alert" data-testid="login-error">{s.loginError}</p>}
            <button type="submit" class="button-primary" data-testid="login-submit" disabled={s.loginBusy}>{s.loginBusy ? 'Signing in…' : 'Log in'}</button>
          </form>
        )}
      </div>
    </main>
  );
}

// ---- history ----

type Group = { title: string; items: ThreadSummary[] };

function groupThreads(items: ThreadSummary[], now = new Date()): Group[] {
  const day = (d: Date) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
  const today = day(now);
  const dayMs = 86400000;
  const groups: Group[] = [
    { title: 'Today', items: [] }, { title: 'Yesterday', items: [] },
    { title: 'Previous 7 days', items: [] }, { title: 'Older', items: [] },
  ];
  for (const t of items) {
    const d = day(new Date(t.updated_at));
    const i = d >= today ? 0 : d >= today - dayMs ? 1 : d >= today - 7 * dayMs ? 2 : 3;
    groups[i].items.push(t);
  }
  return groups.filter((g) => g.items.length > 0);
}

function Sidebar({ s, open, onPicked }: { s: State; open: boolean; onPicked: () => void }) {
  const [query, setQuery] = useState(s.threads.query);
  const sentinel = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const t = setTimeout(() => { if (query !== store.state.threads.query) store.searchThreads(query); }, 250);
    return () => clearTimeout(t);
  }, [query]);
  useEffect(() => {
    const el = sentinel.current;
    if (!el) return;
    const io = new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) store.loadThreads(false);
    });
    io.observe(el);
    return () => io.disconnect();
  }, [open]);
  const t = s.threads;
  const groups = groupThreads(t.items);
  return (
    <aside id="sidebar" class={`sidebar ${open ? 'open' : ''}`} data-testid="sidebar" aria-label="Chats" hidden={!open}>
      <button type="button" class="button-primary new-chat" data-testid="new-chat" onClick={() => { store.openNew(store.state.profile); onPicked(); }}>
        <Icon name="plus" /> New chat
      </button>
      <div class="search">
        <Icon name="search" />
        <input type="search" data-testid="thread-search" aria-label="Search chats" placeholder="Search chats"
          value={query} onInput={(e) => setQuery((e.target as HTMLInputElement).value)} />
      </div>
      <nav class="history" aria-label="Chat history" data-testid="threads">
        {groups.map((g) => (
          <section key={g.title} class="thread-group" data-testid="thread-group">
            <h2>{g.title}</h2>
            <ul>
              {g.items.map((th) => <ThreadItem key={th.id} t={th} current={th.id === s.threadId} onPicked={onPicked} />)}
            </ul>
          </section>
        ))}
        {!t.loading && t.items.length === 0 && <p class="muted empty-history">{t.query ? 'No chat matches your search.' : 'Your chats will be listed here.'}</p>}
        {t.error && <p class="form-error">{t.error}</p>}
        <div ref={sentinel} class="sentinel" aria-hidden="true" />
        {t.loading && <p class="muted">Loading…</p>}
      </nav>
    </aside>
  );
}

function ThreadItem({ t, current, onPicked }: { t: ThreadSummary; current: boolean; onPicked: () => void }) {
  const [mode, setMode] = useState<'' | 'rename' | 'delete'>('');
  const [name, setName] = useState(t.name);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => { if (mode === 'rename' && input.current) { input.current.focus(); input.current.select(); } }, [mode]);
  const save = async () => {
    const v = name.trim();
    if (!v || v === t.name) { setMode(''); return; }
    if (await store.renameThread(t.id, v)) setMode('');
  };
  if (mode === 'rename') {
    return (
      <li class="thread-item editing">
        <form onSubmit={(e) => { e.preventDefault(); save(); }} class="rename-form">
          <input ref={input} value={name} aria-label="New name of the chat" data-testid="thread-name-input" maxLength={200}
            onInput={(e) => setName((e.target as HTMLInputElement).value)}
            onKeyDown={(e) => { if (e.key === 'Escape') { e.stopPropagation(); setName(t.name); setMode(''); } }} />
          <button type="submit" class="button-small" data-testid="thread-rename-save">Save</button>
          <button type="button" class="button-small button-quiet" onClick={() => { setName(t.name); setMode(''); }}>Cancel</button>
        </form>
      </li>
    );
  }
  if (mode === 'delete') {
    return (
      <li class="thread-item confirming">
        <span class="confirm-text">Delete “{t.name || 'Untitled'}”?</span>
        <button type="button" class="button-small button-danger" data-testid="thread-delete-confirm" onClick={() => { setMode(''); store.deleteThread(t.id); }}>Delete</button>
        <button type="button" class="button-small button-quiet" onClick={() => setMode('')}>Cancel</button>
      </li>
    );
  }
  return (
    <li class={`thread-item ${current ? 'current' : ''}`}>
      <a href={`/c/${t.id}`} class="thread" data-testid="thread" data-id={t.id} aria-current={current ? 'page' : undefined}
        title={new Date(t.updated_at).toLocaleString()}
        onClick={(e) => { e.preventDefault(); store.openThread(t.id); onPicked(); }}>
        {t.name || 'Untitled'}
      </a>
      <button type="button" class="icon-button" data-testid="thread-rename" aria-label={`Rename “${t.name}”`} onClick={() => { setName(t.name); setMode('rename'); }}>
        <Icon name="pencil" />
      </button>
      <button type="button" class="icon-button" data-testid="thread-delete" aria-label={`Delete “${t.name}”`} onClick={() => setMode('delete')}>
        <Icon name="trash" />
      </button>
    </li>
  );
}

// ---- the chat ----

function ChatPane({ s }: { s: State }) {
  const online = store.online;
  const started = s.messages.some((m) => m.kind === 'user');
  const profile = s.profiles.find((p) => p.name === s.profile);
  return (
    <section class="chat" aria-label="Chat">
      <div class="chat-bar">
        {profile && profile.icon && <Icon name={profile.icon} />}
        <span class="chat-title" data-testid="chat-profile">{s.profile}</span>
        <span class="status" role="status" data-testid="status">{s.conn === 'connecting' ? 'Connecting…' : ''}</span>
        <span class="spacer" />
        {s.running && <span class="working" data-testid="working"><span class="dots" aria-hidden="true" />Working…</span>}
        {s.running && (
          <button type="button" class="button-small" data-testid="stop" onClick={() => store.stop()} disabled={!online}
            title={online ? 'Stop the reply' : 'Stop works once the connection is back'}>
            <Icon name="stop" /> Stop
          </button>
        )}
        <button type="button" class="button-small button-quiet" data-testid="end-chat" disabled={!online} onClick={() => store.end()}>End chat</button>
      </div>
      <ConnectionBanner s={s} />
      <Messages s={s} started={started} />
      <Composer s={s} />
    </section>
  );
}

function ConnectionBanner({ s }: { s: State }) {
  const [, setNow] = useState(0);
  useEffect(() => {
    if (s.conn !== 'reconnecting') return;
    const t = setInterval(() => setNow(Date.now()), 250);
    return () => clearInterval(t);
  }, [s.conn]);
  const waiting = store.pendingCount;
  if (s.conn === 'reconnecting' || (s.conn === 'connecting' && s.reconnectAt === 0 && s.session && !store.online && waiting > 0)) {
    const left = Math.max(0, Math.ceil((s.reconnectAt - Date.now()) / 1000));
    return (
      <div class="banner banner-warn" role="status" data-testid="reconnecting">
        <span>
          {s.reconnectAt && left > 0 ? `Connection lost. Reconnecting in ${left} s…` : 'Connection lost. Reconnecting…'}
          {waiting > 0 && ` ${waiting} ${waiting === 1 ? 'message is' : 'messages are'} waiting to be sent.`}
        </span>
        <button type="button" class="button-small" data-testid="retry-now" onClick={() => store.retryNow()} disabled={!s.reconnectAt}>Retry now</button>
      </div>
    );
  }
  if (s.conn === 'closed' && s.closed) {
    const c = s.closed;
    return (
      <div class="banner" role="status" data-testid="closed" data-code={c.code}>
        <span>{c.text}</span>
        {c.canResume && (
          <button type="button" class="button-small" data-testid="reopen" onClick={() => store.reopen()}>
            {c.code === 4409 ? 'Continue here' : 'Reopen this chat'}
          </button>
        )}
        <button type="button" class="button-small" onClick={() => store.openNew(store.state.profile)}>New chat</button>
      </div>
    );
  }
  return null;
}

function Messages({ s, started }: { s: State; started: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  useLayoutEffect(() => {
    const el = box.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  });
  const onScroll = () => {
    const el = box.current;
    if (el) stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
  };
  const me = displayName(s);
  return (
    <div class="messages" ref={box} onScroll={onScroll} role="log" aria-live="polite" aria-label="Messages"
      data-testid="messages" onClick={(e) => copyCodeOnClick(e as unknown as MouseEvent)} tabIndex={0}>
      {s.olderCursor && (
        <button type="button" class="button-small older" data-testid="load-older" onClick={() => store.loadOlder()}>Show earlier messages</button>
      )}
      {s.messages.map((m) => <MessageItem key={m.key} m={m} s={s} me={me} />)}
      {!started && s.conn !== 'closed' && <EmptyChat s={s} />}
    </div>
  );
}

function MessageItem({ m, s, me }: { m: ChatMessage; s: State; me: string }) {
  const own = m.kind === 'user' && (m.pending || !s.user || m.author === s.user.identifier);
  const author = m.kind === 'user' ? (own ? me || m.author : m.author) : m.kind === 'assistant' ? m.author || (s.app && s.app.name) || 'Assistant' : '';
  const time = m.createdAt ? new Date(m.createdAt) : null;
  const marks = { stopped: 'Stopped', interrupted: 'Interrupted', failed: 'Failed' } as const;
  return (
    <article class={`msg msg-${m.kind} ${m.streaming ? 'streaming' : ''} ${m.pending ? 'pending' : ''}`} data-testid="message"
      data-id={m.id} data-client-id={m.clientId || undefined} data-pending={m.pending ? 'true' : undefined}>
      {m.kind !== 'system' && (
        <span class={`avatar avatar-${m.kind}`} aria-hidden="true">{m.kind === 'user' ? initials(author) : <Icon name="bot" />}</span>
      )}
      <div class="bubble">
        {m.kind !== 'system' && (
          <div class="msg-head">
            <span class="author">{author}</span>
            {m.command && <span class="command">/{m.command}</span>}
            {time && <time dateTime={m.createdAt!} title={time.toLocaleString()}>{time.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}</time>}
            {m.pending && <span class="badge badge-pending" data-testid="pending">Waiting to send</span>}
            {m.mark && <span class={`badge badge-${m.mark}`} data-testid="mark" data-mark={m.mark}>{marks[m.mark]}</span>}
          </div>
        )}
        {m.answerLabel
          ? <div class="content answer-label"><p>{m.answerLabel}</p></div>
          : <Markdown class="content" src={m.content} />}
        {m.streaming && <span class="cursor" data-testid="cursor" aria-hidden="true" />}
        {m.files.length > 0 && <FileChips files={m.files} />}
        {m.kind === 'system' && m.mark && <span class="sr-only" data-testid="mark" data-mark={m.mark}>{marks[m.mark]}</span>}
        {m.ask && <AskBox ask={m.ask} online={store.online} />}
      </div>
    </article>
  );
}

function FileChips({ files }: { files: FileRef[] }) {
  return (
    <ul class="file-chips" aria-label="Files">
      {files.map((f) => (
        <li key={f.id} class="file-chip" data-testid="file-chip">
          <Icon name="file" />
          <span class="file-name">{f.name}</span>
          <span class="muted">{formatSize(f.size)} · {f.mime}</span>
        </li>
      ))}
    </ul>
  );
}

function EmptyChat({ s }: { s: State }) {
  const profile = s.profiles.find((p) => p.name === s.profile);
  return (
    <div class="empty-chat" data-testid="empty-chat">
      {s.profiles.length > 1 && (
        <div class="profiles" role="group" aria-label="Chat profile">
          {s.profiles.map((p) => <ProfileCard key={p.name} p={p} selected={p.name === s.profile} />)}
        </div>
      )}
      {profile && profile.starters.length > 0 && (
        <div class="starters" data-testid="starters">
          {profile.starters.map((st) => (
            <button key={st.label} type="button" class="starter card" data-testid="starter" disabled={s.conn === 'closed'}
              onClick={() => store.sendMessage(st.message, st.command)}>
              {st.icon && <Icon name={st.icon} />}
              <span class="starter-label">{st.label || st.message}</span>
              <span class="starter-message muted">{st.message}</span>
            </button>
          ))}
        </div>
      )}
    </div>
  );
}

function ProfileCard({ p, selected }: { p: ChatProfile; selected: boolean }) {
  return (
    <button type="button" class={`profile-card card ${selected ? 'selected' : ''}`} data-testid="profile-card" data-profile={p.name}
      aria-pressed={selected ? 'true' : 'false'} onClick={() => store.changeProfile(p.name)}>
      <span class="profile-head">{p.icon && <Icon name={p.icon} />}<span class="profile-name">{p.name}</span></span>
      <Markdown class="profile-description muted" src={p.markdown_description} />
    </button>
  );
}

function ConfirmProfile({ s }: { s: State }) {
  const yes = useRef<HTMLButtonElement>(null);
  useEffect(() => { if (yes.current) yes.current.focus(); }, []);
  return (
    <div class="modal-backdrop">
      <div class="modal card" role="alertdialog" aria-modal="true" aria-labelledby="confirm-title" data-testid="confirm-profile">
        <h2 id="confirm-title">Start a new chat as “{s.confirmProfile}”?</h2>
        <p>A chat keeps the profile it was started with. This chat stays in your history.</p>
        <div class="modal-actions">
          <button type="button" class="button-primary" ref={yes} data-testid="confirm-yes" onClick={() => store.openNew(s.confirmProfile)}>Start new chat</button>
          <button type="button" class="button-quiet" data-testid="confirm-no" onClick={() => store.set({ confirmProfile: '' })}>Keep this chat</button>
        </div>
      </div>
    </div>
  );
}

// ---- asks ----

function AskBox({ ask, online }: { ask: AskView; online: boolean }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!ask.ended && box.current) box.current.scrollIntoView({ block: 'nearest', behavior: 'smooth' });
  }, [ask.askId, ask.ended]);
  const endedText: Record<string, string> = {
    answered: 'Answered', timeout: 'No answer was given in time', cancelled: 'Cancelled',
    interrupted: 'Interrupted', closed: 'No longer open',
  };
  return (
    <div class="ask" ref={box} data-testid="ask" data-kind={ask.kind}>
      {!ask.ended && ask.kind === 'action' && (
        <div class="ask-actions" role="group" aria-label="Choices">
          {ask.actions.map((a) => (
            <button key={a.name} type="button" class="button-small" data-testid="ask-action" data-action={a.name} disabled={!online}
              onClick={() => store.answerAsk(ask.askId, { action: a.name })}>{a.label || a.name}</button>
          ))}
        </div>
      )}
      {!ask.ended && ask.kind === 'file' && <FileAsk ask={ask} online={online} />}
      {!ask.ended && ask.kind === 'text' && <p class="muted hint">Type your answer in the message box below.</p>}
      {ask.ended && <p class="muted hint" data-testid="ask-ended">{endedText[ask.ended] || ask.ended}</p>}
      {ask.error && <p class="form-error" role="alert" data-testid="ask-error">{ask.error}</p>}
    </div>
  );
}

// Extensions the server maps to types (docs/protocol.md §4).
const extTypes: Record<string, string> = {
  '.csv': 'text/csv', '.tsv': 'text/tab-separated-values', '.txt': 'text/plain', '.md': 'text/markdown',
  '.json': 'application/json', '.xml': 'application/xml', '.pdf': 'application/pdf', '.png': 'image/png',
  '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif', '.webp': 'image/webp',
  '.zip': 'application/zip', '.gz': 'application/gzip',
};
const typeNames: Record<string, string> = {
  'text/csv': 'CSV', 'application/json': 'JSON', 'text/plain': 'text', 'text/markdown': 'Markdown',
  'application/pdf': 'PDF', 'image/png': 'PNG', 'image/jpeg': 'JPEG', 'application/zip': 'ZIP',
};

function acceptsFile(accept: string[], f: File): boolean {
  if (accept.length === 0) return true;
  const dot = f.name.lastIndexOf('.');
  const ext = dot >= 0 ? f.name.slice(dot).toLowerCase() : '';
  const type = extTypes[ext] || '';
  return accept.some((a) => {
    a = a.toLowerCase();
    if (a.startsWith('.')) return a === ext;
    if (a.endsWith('/*')) return type.startsWith(a.slice(0, -1));
    return a === type;
  });
}

function acceptHint(accept: string[]): string {
  if (accept.length === 0) return 'Any file';
  return accept.map((a) => typeNames[a] || a).join(', ');
}

function FileAsk({ ask, online }: { ask: AskView; online: boolean }) {
  const [files, setFiles] = useState<File[]>([]);
  const [error, setError] = useState('');
  const [progress, setProgress] = useState(-1);
  const [over, setOver] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  const inputId = `ask-file-${ask.askId}`;
  const maxBytes = ask.maxSizeMb * 1024 * 1024;
  const pick = (list: FileList | null) => {
    const chosen = Array.from(list || []);
    setError('');
    if (chosen.length === 0) return;
    if (chosen.length > ask.maxFiles) {
      setError(`Choose at most ${ask.maxFiles} ${ask.maxFiles === 1 ? 'file' : 'files'}.`);
      return;
    }
    for (const f of chosen) {
      if (!acceptsFile(ask.accept, f)) {
        setError(`“${f.name}” is not a file of an accepted type (${acceptHint(ask.accept)}).`);
        return;
      }
      if (maxBytes && f.size > maxBytes) {
        setError(`“${f.name}” is ${formatSize(f.size)}; files of at most ${ask.maxSizeMb} MB are accepted.`);
        return;
      }
    }
    setFiles(chosen);
  };
  const send = async () => {
    const s = store.state.session;
    if (!files.length || !s) return;
    const form = new FormData();
    for (const f of files) form.append('file', f, f.name);
    const q = new URLSearchParams({ session_id: s.session_id, ask_id: ask.askId });
    setProgress(0);
    setError('');
    try {
      const r = await upload(`/files?${q}`, form, setProgress);
      if (!r.ok || !r.data) {
        setError(r.code === 'not_found' ? 'This question is no longer open.' : errorText(r.code, r.message));
        setProgress(-1);
        return;
      }
      store.setUploaded(ask.askId, r.data.files);
      store.answerAsk(ask.askId, { files: r.data.files.map((x: FileRef) => x.id) });
    } catch (e) {
      setError(errorText(e instanceof NetworkError ? 'network' : 'upload_failed'));
      setProgress(-1);
    }
  };
  return (
    <div class={`file-ask ${over ? 'drag-over' : ''}`} data-testid="file-drop"
      onDragOver={(e) => { e.preventDefault(); setOver(true); }} onDragLeave={() => setOver(false)}
      onDrop={(e) => { e.preventDefault(); setOver(false); pick(e.dataTransfer ? e.dataTransfer.files : null); }}>
      <Icon name="upload" />
      <label for={inputId}>Drop {ask.maxFiles > 1 ? 'files' : 'a file'} here or choose</label>
      <input id={inputId} ref={input} type="file" data-testid="ask-file" accept={ask.accept.join(',')} multiple={ask.maxFiles > 1}
        onChange={(e) => pick((e.target as HTMLInputElement).files)} disabled={!online || progress >= 0} />
      <p class="muted hint" data-testid="file-hint">
        {acceptHint(ask.accept)}{ask.maxSizeMb ? ` · up to ${ask.maxSizeMb} MB` : ''}{ask.maxFiles > 1 ? ` · up to ${ask.maxFiles} files` : ''}
      </p>
      {files.length > 0 && (
        <ul class="file-chips">
          {files.map((f) => (
            <li key={f.name} class="file-chip" data-testid="file-chip"><Icon name="file" /><span class="file-name">{f.name}</span><span class="muted">{formatSize(f.size)} · {f.type || 'unknown type'}</span></li>
          ))}
        </ul>
      )}
      {progress >= 0 && <progress max={1} value={progress} aria-label="Upload progress" data-testid="upload-progress" />}
      {error && <p class="form-error" role="alert" data-testid="file-error">{error}</p>}
      <button type="button" class="button-small button-primary" data-testid="ask-upload" disabled={!online || !files.length || progress >= 0} onClick={send}>Upload</button>
    </div>
  );
}

// ---- composer ----

function Composer({ s }: { s: State }) {
  const ref = useRef<HTMLTextAreaElement>(null);
  const closed = s.conn === 'closed';
  useEffect(() => { if (ref.current && window.matchMedia('(pointer: fine)').matches) ref.current.focus(); }, [s.threadId]);
  const submit = (ev?: Event) => {
    if (ev) ev.preventDefault();
    const text = store.state.draft;
    if (!text.trim() || closed) return;
    store.set({ draft: '' });
    store.sendMessage(text);
  };
  return (
    <form class="composer" onSubmit={submit}>
      <label for="message-input" class="sr-only">Message</label>
      <textarea id="message-input" ref={ref} rows={2} data-testid="message-input" value={s.draft} disabled={closed}
        placeholder={s.textAsk ? 'Type your answer…' : 'Message (Enter sends, Shift+Enter for a new line)'}
        onInput={(e) => store.set({ draft: (e.target as HTMLTextAreaElement).value })}
        onKeyDown={(e) => {
          if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); submit(); }
        }} />
      <button type="submit" class="button-primary send" data-testid="send" aria-label="Send" disabled={closed || !s.draft.trim()}>
        <Icon name="send" /><span class="send-label">Send</span>
      </button>
    </form>
  );
}

// ---- settings drawer ----

function SettingsDrawer({ s, close }: { s: State; close: () => void }) {
  const panel = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const first = panel.current && panel.current.querySelector<HTMLElement>('button, select, input, textarea');
    if (first) first.focus();
  }, []);
  const profile = s.profiles.find((p) => p.name === s.profile);
  const envKeys = (s.app && s.app.env_keys) || [];
  return (
    <>
      <div class="backdrop" onClick={close} aria-hidden="true" />
      <div class="drawer" role="dialog" aria-modal="true" aria-labelledby="settings-title" ref={panel} data-testid="settings-drawer">
        <div class="drawer-head">
          <h2 id="settings-title">Settings</h2>
          <button type="button" class="icon-button" aria-label="Close settings" data-testid="settings-close" onClick={close}><Icon name="x" /></button>
        </div>
        {s.profiles.length > 0 && (
          <div class="field">
            <label for="profile-select">Chat profile</label>
            <select id="profile-select" data-testid="profile-select" value={s.profile}
              onChange={(e) => { const v = (e.target as HTMLSelectElement).value; store.changeProfile(v); if (!store.state.confirmProfile) close(); }}>
              {s.profiles.map((p) => <option key={p.name} value={p.name}>{p.name}</option>)}
            </select>
            {profile && <Markdown class="muted profile-description" src={profile.markdown_description} />}
          </div>
        )}
        {s.settings && s.settings.schema.length > 0 && <SettingsForm s={s} />}
        {envKeys.length > 0 && <EnvForm s={s} />}
      </div>
    </>
  );
}

type Values = Record<string, unknown>;

function SettingsForm({ s }: { s: State }) {
  const schema = s.settings!.schema;
  const initial = () => {
    const v: Values = {};
    for (const w of schema) v[w.id] = Object.hasOwn(s.settings!.values, w.id) ? s.settings!.values[w.id] : w.initial;
    return v;
  };
  const [values, setValues] = useState<Values>(initial);
  const [saved, setSaved] = useState(false);
  const [sent, setSent] = useState(s.settingsSaved);
  useEffect(() => {
    if (s.settingsSaved !== sent) { setValues(initial()); setSaved(true); setSent(s.settingsSaved); }
  }, [s.settingsSaved]);
  const set = (id: string, v: unknown) => { setSaved(false); setValues({ ...values, [id]: v }); };
  const err = s.settingsError;
  const online = store.online;
  return (
    <form class="settings" data-testid="settings" noValidate
      onSubmit={(e) => { e.preventDefault(); setSaved(false); store.updateSettings(values); }}>
      <h3>Chat settings</h3>
      {schema.map((w) => (
        <WidgetField key={w.id} w={w} value={values[w.id]} set={(v) => set(w.id, v)} error={err && err.field === w.id ? err.text : ''} />
      ))}
      {err && !err.field && <p class="form-error" role="alert">{err.text}</p>}
      <div class="form-actions">
        <button type="submit" class="button-primary" data-testid="settings-apply" disabled={!online}>Apply</button>
        {saved && !err && <span class="saved" role="status" data-testid="settings-saved">Saved</span>}
        {!online && <span class="muted">Settings can be changed once connected.</span>}
      </div>
    </form>
  );
}

function WidgetField({ w, value, set, error }: { w: Widget; value: unknown; set: (v: unknown) => void; error: string }) {
  const id = `setting-${w.id}`;
  const errId = `${id}-error`;
  const described = error ? errId : undefined;
  let control: ComponentChildren = null;
  switch (w.type) {
    case 'select':
      control = (
        <select id={id} value={String(value ?? '')} aria-describedby={described} onChange={(e) => set((e.target as HTMLSelectElement).value)}>
          {w.values.map((o) => <option key={o} value={o}>{o}</option>)}
        </select>
      );
      break;
    case 'multiselect': {
      const chosen = Array.isArray(value) ? (value as string[]) : [];
      control = (
        <select id={id} multiple aria-describedby={described}
          onChange={(e) => set(Array.from((e.target as HTMLSelectElement).selectedOptions, (o) => o.value))}>
          {w.values.map((o) => <option key={o} value={o} selected={chosen.includes(o)}>{o}</option>)}
        </select>
      );
      break;
    }
    case 'switch':
      control = <input id={id} type="checkbox" role="switch" checked={!!value} aria-describedby={described} onChange={(e) => set((e.target as HTMLInputElement).checked)} />;
      break;
    case 'slider':
      control = (
        <span class="slider">
          <input id={id} type="range" min={w.min} max={w.max} step={w.step} value={Number(value)} aria-describedby={described}
            onInput={(e) => set((e.target as HTMLInputElement).valueAsNumber)} />
          <input type="number" class="slider-number" aria-label={`${w.label} (number)`} data-testid={`setting-${w.id}-number`} step={w.step}
            value={Number(value)} aria-describedby={described}
            onInput={(e) => { const n = (e.target as HTMLInputElement).valueAsNumber; if (!Number.isNaN(n)) set(n); }} />
        </span>
      );
      break;
    case 'number':
      control = <input id={id} type="number" value={Number(value)} aria-describedby={described}
        onInput={(e) => { const n = (e.target as HTMLInputElement).valueAsNumber; if (!Number.isNaN(n)) set(n); }} />;
      break;
    case 'tags':
      control = <input id={id} type="text" placeholder="comma-separated" value={(Array.isArray(value) ? value : []).join(', ')} aria-describedby={described}
        onInput={(e) => set((e.target as HTMLInputElement).value.split(',').map((t) => t.trim()).filter(Boolean))} />;
      break;
    case 'text':
      control = w.multiline
        ? <textarea id={id} value={String(value ?? '')} aria-describedby={described} onInput={(e) => set((e.target as HTMLTextAreaElement).value)} />
        : <input id={id} type="text" value={String(value ?? '')} aria-describedby={described} onInput={(e) => set((e.target as HTMLInputElement).value)} />;
      break;
    default:
      return null; // a widget type this UI does not know
  }
  return (
    <div class={`field field-${w.type} ${error ? 'invalid' : ''}`} data-testid="setting-field" data-id={w.id}>
      <label for={id}>{w.label || w.id}</label>
      {control}
      {w.description && <Markdown inline class="muted" src={w.description} />}
      {error && <p id={errId} class="form-error" role="alert" data-testid="setting-error">{error}</p>}
    </div>
  );
}

function EnvForm({ s }: { s: State }) {
  const keys = s.app!.env_keys;
  const [values, setValues] = useState<Record<string, string>>({ ...s.env });
  const [saved, setSaved] = useState(false);
  return (
    <form class="settings env-form" data-testid="env-form"
      onSubmit={(e) => { e.preventDefault(); store.saveEnv(values); setSaved(true); }}>
      <h3>Keys for this app</h3>
      <p class="muted">Kept in this browser only and sent to the server when a chat starts.</p>
      {keys.map((k) => (
        <div class="field" key={k.key}>
          <label for={`env-${k.key}`}>{k.label || k.key}{k.required ? ' (required)' : ''}</label>
          <input id={`env-${k.key}`} type="password" autocomplete="off" value={values[k.key] || ''} data-testid="env-input" data-key={k.key}
            onInput={(e) => { setSaved(false); setValues({ ...values, [k.key]: (e.target as HTMLInputElement).value }); }} />
        </div>
      ))}
      <div class="form-actions">
        <button type="submit" class="button-primary" data-testid="env-save">Save keys</button>
        {saved && <span class="saved" role="status">Saved; used by the next new chat.</span>}
      </div>
    </form>
  );
}

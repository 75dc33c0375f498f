// reconnect.mjs: a chat through a server restart, on Redis
// (cmd/chatd/browser_test.go, TestBrowserReconnect, which stops and starts
// the server when this script asks, on the same address):
//   - while the server is down the page says it is reconnecting, with a
//     countdown that ticks and a "Retry now" button; the controls that
//     cannot work offline are disabled;
//   - a message typed meanwhile stays on screen as pending (with its
//     client id) and is sent once the socket is back: delivered once,
//     answered once, nothing missing or doubled, also after a reload.
//
// Environment: CHATD_URL, E2E_IDENTIFIER, E2E_PASSWORD, E2E_DISPLAY_NAME.

import { ALLOW_SIGNED_OUT, control, env, expectHidden, expectVisible, run, shot, signIn, TIMEOUT, ui, waitSignedIn } from './lib.mjs';

function assert(cond, what) {
  if (!cond) throw new Error(what);
}

const before = 'said before the restart';
const during = 'typed while the server is down';

// count is how many messages of kind ('user' or 'assistant') have exactly
// text as their content.
async function count(page, kind, text) {
  return page.getByTestId('messages').locator(`.msg-${kind}:not(.pending) .content`).getByText(text, { exact: true }).count();
}

async function expectOnce(page, what) {
  for (const [kind, text] of [['user', before], ['assistant', `[assistant] Processing: ${before}`],
    ['user', during], ['assistant', `[assistant] Processing: ${during}`]]) {
    const n = await count(page, kind, text);
    assert(n === 1, `${what}: the ${kind} message ${JSON.stringify(text)} is shown ${n} times, want once`);
  }
}

await run('reconnect', async (t) => {
  const { page, step } = t;
  step('sign in and chat');
  await page.goto('/');
  await signIn.password(t);
  await waitSignedIn(page, env('E2E_DISPLAY_NAME'));
  await ui.input(page).fill(before);
  await ui.input(page).press('Enter');
  await expectVisible(page.getByTestId('messages').locator('.msg-assistant .content').getByText(`[assistant] Processing: ${before}`, { exact: true }), 'the first reply');
  await page.waitForFunction(() => /^\/c\//.test(location.pathname), undefined, { timeout: TIMEOUT });
  const chatURL = new URL(page.url()).pathname;

  step('stop the server: the page says it is reconnecting');
  await control('stop');
  const banner = page.getByTestId('reconnecting');
  await expectVisible(banner, 'the reconnecting banner');
  assert(await page.getByTestId('end-chat').isDisabled(), 'End chat stays enabled offline');

  step('type a message while the server is down: it is pending');
  await ui.input(page).fill(during);
  await ui.input(page).press('Enter');
  const pending = page.getByTestId('messages').locator('.msg-user.pending');
  await expectVisible(pending, 'the pending message');
  assert(await pending.locator('.content').innerText() === during, 'the pending message shows its text');
  assert(/^[0-9a-f-]{36}$/.test(await pending.getAttribute('data-client-id') || ''), 'the pending message has its client id');
  await expectVisible(banner.getByText(/1 message is waiting/), 'the count of waiting messages');

  step('the countdown ticks');
  const seconds = async () => {
    const m = /Reconnecting in (\d+) s/.exec(await banner.innerText());
    return m ? Number(m[1]) : -1;
  };
  // Wait for a countdown of at least 2 s, then for it to go down by one.
  await page.waitForFunction(() => /Reconnecting in ([2-9]|\d\d+) s/.test(document.querySelector('[data-testid="reconnecting"]')?.textContent || ''), undefined, { timeout: TIMEOUT });
  const first = await seconds();
  await page.waitForFunction((n) => {
    const m = /Reconnecting in (\d+) s/.exec(document.querySelector('[data-testid="reconnecting"]')?.textContent || '');
    return m && Number(m[1]) < n;
  }, first, { timeout: TIMEOUT });
  await shot(page, 'reconnecting');

  step('start the server again and retry now: the message is delivered once');
  await control('start');
  await banner.getByTestId('retry-now').click();
  await expectHidden(banner, 'the reconnecting banner once connected');
  await expectHidden(pending, 'the pending message once echoed');
  await expectVisible(page.getByTestId('messages').locator('.msg-assistant .content').getByText(`[assistant] Processing: ${during}`, { exact: true }), 'the reply to the pending message');
  await expectOnce(page, 'after the reconnect');
  assert(new URL(page.url()).pathname === chatURL, `the chat moved to ${page.url()}`);

  step('reload: the stored chat has everything once');
  await page.reload();
  await waitSignedIn(page, env('E2E_DISPLAY_NAME'));
  await expectVisible(page.getByTestId('messages').locator('.msg-assistant .content').getByText(`[assistant] Processing: ${during}`, { exact: true }), 'the reply after the reload');
  await expectOnce(page, 'after the reload');
}, {
  allowConsole: [
    ALLOW_SIGNED_OUT,
    // The server is down on purpose: the socket and GET /auth/me fail.
    /WebSocket connection to '.*\/ws' failed/,
    /Failed to load resource: net::ERR_CONNECTION_REFUSED/,
  ],
});

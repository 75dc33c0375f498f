// ui.mjs: the chat UI as a person uses it, against the demo on the
// in-memory store (cmd/chatd/browser_test.go, TestBrowser/UI):
//   - sign-in: a wrong password gets a sentence, not a code; then alice;
//   - profile cards and starter cards on an empty chat; a starter's reply
//     rendered as markdown with a highlighted code block and a copy button;
//     own messages under the display name, with an avatar and a time;
//   - the per-chat URL: a reload shows the same chat;
//   - markdown that tries <img onerror> and a javascript: link is inert;
//   - settings: a refused value explained next to its field; streaming on,
//     a streamed reply with its cursor, stop, and the "Stopped" mark;
//   - changing the profile of a started chat asks first; the analyst's file
//     ask: a wrong type refused with a message (by the page, and by the
//     server for an image named .csv), a CSV dropped on it,
//     uploaded (file chip) and summarized; an action ask answered by its label;
//   - history: date groups, search, rename, resume with the earlier
//     messages, delete, and a thread deleted elsewhere handled clearly;
//   - at 390×844 the input is on the first screen, the history a drawer;
//     the tab whose chat the phone took over says so;
//   - the history loads the next page (cursor) when scrolled;
//   - a sign-out elsewhere (close 4401) brings the login screen back;
//   - the dark theme is dark; axe-core finds no serious or critical
//     violation on the login, chat and history screens; keyboard: Tab
//     reaches every control, with a focus ring, Enter sends, Shift+Enter
//     is a new line, Escape closes the drawers;
//   - screenshots of the main screens in web/e2e/screenshots.
//
// Environment: CHATD_URL, E2E_IDENTIFIER, E2E_PASSWORD, E2E_DISPLAY_NAME.

import {
  ALLOW_SIGNED_OUT, checkA11y, contents, env, expectHidden, expectText, expectVisible, run, shot, TIMEOUT, ui, waitSignedIn,
} from './lib.mjs';

const displayName = env('E2E_DISPLAY_NAME');

function assert(cond, what) {
  if (!cond) throw new Error(what);
}

// waitFor polls fn in the page until it returns true (TIMEOUT is the
// safety net).
async function waitFor(page, fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: TIMEOUT });
  } catch (e) {
    throw new Error(`${what}: not within ${TIMEOUT} ms`, { cause: e });
  }
}

const msgs = (page) => ui.messages(page);
const assistantText = (page, text) => msgs(page).locator('.msg-assistant .content').getByText(text, { exact: true });
const userMsg = (page, text) => msgs(page).locator('.msg-user:not(.pending)').filter({ has: page.locator('.content').getByText(text, { exact: true }) });

async function send(page, text) {
  await ui.input(page).fill(text);
  await ui.input(page).press('Enter');
}

await run('ui', async ({ page, context, step }) => {
  step('open the page: the login screen');
  await page.goto('/');
  await expectVisible(ui.loginForm(page), 'the login form');
  await checkA11y(page, 'the login screen');
  await shot(page, 'login');

  step('a wrong password is explained in words');
  await page.getByTestId('login-identifier').fill(env('E2E_IDENTIFIER'));
  await page.getByTestId('login-password').fill('not-the-password');
  await page.getByTestId('login-submit').click();
  const loginError = page.getByTestId('login-error');
  await expectVisible(loginError, 'the login error');
  const said = await loginError.innerText();
  assert(/password/i.test(said) && !/invalid_credentials/.test(said), `login error says ${JSON.stringify(said)}`);

  step('sign in');
  await page.getByTestId('login-password').fill(env('E2E_PASSWORD'));
  await page.getByTestId('login-submit').click();
  await waitSignedIn(page, displayName);
  await expectText(msgs(page).locator('.msg .content'), `Welcome back, ${displayName}!`, 'the greeting');

  step('profile cards and starters on the empty chat; pick analyst, then assistant');
  const card = (name) => page.locator(`[data-testid="profile-card"][data-profile="${name}"]`);
  await expectVisible(card('analyst'), 'the analyst profile card');
  assert(await card('analyst').locator('.profile-description').innerText() === 'Data analysis and visualization expert', 'the analyst card shows its description');
  assert(await card('analyst').locator('svg.icon').count() === 1, 'the analyst card shows its icon');
  await card('analyst').click();
  await expectText(page.getByTestId('chat-profile'), 'analyst', 'the analyst profile');
  await expectVisible(page.getByTestId('starter').filter({ hasText: 'Analyze data' }), 'the analyst starters');
  await card('assistant').click();
  await expectText(page.getByTestId('chat-profile'), 'assistant', 'the assistant profile');
  await checkA11y(page, 'the empty chat');
  await shot(page, 'empty-chat');

  step('click the starter "Get help with coding": markdown with highlighted code');
  await page.getByTestId('starter').filter({ hasText: 'Get help with coding' }).click();
  const echo = userMsg(page, 'I need help with coding');
  await expectVisible(echo, 'the echo of the starter message');
  assert(await echo.locator('.author').innerText() === displayName, 'own message under the display name');
  assert(await echo.locator('.avatar').count() === 1 && await echo.locator('time').count() === 1, 'own message with avatar and time');
  await expectHidden(page.getByTestId('starters'), 'the starters once the chat started');
  const code = msgs(page).locator('.msg-assistant .code-block');
  await expectVisible(code, 'the code block of the reply');
  assert(await code.locator('code.hljs.language-go .hljs-keyword').count() > 0, 'the Go code is highlighted');
  assert(await msgs(page).locator('.msg-assistant .content strong').getByText('Go', { exact: true }).count() === 1, 'bold markdown');
  await expectVisible(code.locator('button.copy-code'), 'the copy button');
  await context.grantPermissions(['clipboard-read', 'clipboard-write']);
  await code.locator('button.copy-code').click();
  await expectText(code.locator('button.copy-code'), 'Copied', 'the copy button saying Copied');
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert(copied.includes('func greet(name string) string'), `clipboard holds ${JSON.stringify(copied)}`);
  await expectVisible(assistantText(page, '[assistant] Processing: I need help with coding'), 'the reply');
  await waitFor(page, () => /^\/c\/[\w-]+$/.test(location.pathname), undefined, 'the per-chat URL');
  const chatURL = new URL(page.url()).pathname;
  await checkA11y(page, 'the chat');
  await shot(page, 'chat-markdown');

  step('reload mid-chat: the same chat is on screen');
  await page.reload();
  await waitSignedIn(page, displayName);
  await expectVisible(userMsg(page, 'I need help with coding'), 'the earlier message after the reload');
  await expectVisible(msgs(page).locator('.msg-assistant .code-block code.hljs'), 'the code block after the reload');
  assert(new URL(page.url()).pathname === chatURL, `URL after reload ${page.url()}, want ${chatURL}`);

  step('markdown that tries to run code is inert');
  await page.evaluate(() => { window.__xss = 0; });
  const hostile = 'look <img src=x onerror="window.__xss=1"> and [click me](javascript:window.__xss=2)';
  await send(page, hostile);
  await expectVisible(msgs(page).locator('.msg-assistant .content').filter({ hasText: '[assistant] Processing: look' }), 'the reply to the hostile message');
  assert(await msgs(page).locator('img').count() === 0, 'an <img> with a relative src was rendered');
  assert(await msgs(page).locator('[onerror], [onclick]').count() === 0, 'an event handler attribute was rendered');
  const links = msgs(page).locator('a').filter({ hasText: 'click me' });
  assert(await links.count() >= 1, 'the link text is shown');
  for (const href of await links.evaluateAll((as) => as.map((a) => a.getAttribute('href')))) {
    assert(!href || !/^\s*javascript:/i.test(href), `a link kept href ${href}`);
  }
  await links.first().click();
  assert(await page.evaluate(() => window.__xss) === 0, 'the hostile markdown ran code');

  step('keyboard: Shift+Enter is a new line, Enter sends');
  await ui.input(page).fill('');
  await ui.input(page).type('first line');
  await ui.input(page).press('Shift+Enter');
  await ui.input(page).type('second line');
  assert(await ui.input(page).inputValue() === 'first line\nsecond line', 'Shift+Enter made a new line');
  await ui.input(page).press('Enter');
  await expectVisible(msgs(page).locator('.msg-assistant .content').filter({ hasText: 'Processing: first line' }).filter({ hasText: 'second line' }), 'the reply to two lines');

  step('keyboard: Tab reaches every control, each with a visible focus ring');
  await page.locator('body').focus();
  const reached = new Set();
  for (let i = 0; i < 60; i++) {
    await page.keyboard.press('Tab');
    const f = await page.evaluate(() => {
      const el = document.activeElement;
      if (!el || el === document.body) return null;
      const st = getComputedStyle(el);
      return { id: el.getAttribute('data-testid') || el.tagName.toLowerCase(), ring: st.outlineStyle !== 'none' && parseFloat(st.outlineWidth) > 0 };
    });
    if (!f) continue;
    assert(f.ring, `${f.id} has no visible focus ring`);
    reached.add(f.id);
  }
  for (const id of ['sidebar-toggle', 'theme-toggle', 'settings-open', 'logout', 'new-chat', 'thread-search', 'thread', 'thread-rename', 'thread-delete', 'end-chat', 'messages', 'message-input']) {
    assert(reached.has(id), `Tab never reached ${id} (reached ${[...reached].join(', ')})`);
  }

  step('settings: a refused value is explained next to its field');
  await page.getByTestId('settings-open').click();
  const drawer = page.getByTestId('settings-drawer');
  await expectVisible(drawer, 'the settings drawer');
  await drawer.getByTestId('setting-temperature-number').fill('5');
  await drawer.getByTestId('settings-apply').click();
  const tempField = drawer.locator('[data-testid="setting-field"][data-id="temperature"]');
  await expectVisible(tempField.getByTestId('setting-error'), 'the error next to the temperature field');
  const refused = await tempField.getByTestId('setting-error').innerText();
  assert(/within/.test(refused), `temperature error says ${JSON.stringify(refused)}`);
  await shot(page, 'settings-refused');
  await checkA11y(page, 'the settings drawer');
  await drawer.getByTestId('setting-temperature-number').fill('0.5');
  await drawer.getByRole('switch', { name: 'Stream replies' }).check();
  await drawer.getByTestId('settings-apply').click();
  await expectVisible(drawer.getByTestId('settings-saved'), 'the settings saved');
  await expectVisible(assistantText(page, 'Settings updated successfully!'), "the demo's answer to the settings");
  await page.keyboard.press('Escape');
  await expectHidden(drawer, 'the settings drawer after Escape');

  step('a streamed reply');
  await send(page, 'stream this one');
  await expectVisible(assistantText(page, '[assistant] Processing: stream this one'), 'the streamed reply, complete');

  step('stop a streaming reply: it is marked stopped');
  const long = `please write ${Array.from({ length: 60 }, (_, i) => `word${i}`).join(' ')}`;
  await send(page, long);
  await expectVisible(msgs(page).locator('.msg-assistant.streaming [data-testid="cursor"]'), 'the cursor of the streaming reply');
  await shot(page, 'streaming');
  await page.getByTestId('stop').click();
  const stopped = msgs(page).locator('.msg-assistant').filter({ has: page.locator('[data-testid="mark"][data-mark="stopped"]') });
  await expectVisible(stopped, 'the Stopped mark');
  const stoppedText = await stopped.locator('.content').innerText();
  assert(stoppedText.startsWith('[assistant] Processing:') && !stoppedText.includes('word59'), `the stopped reply says ${JSON.stringify(stoppedText)}`);
  await expectHidden(page.getByTestId('stop'), 'the stop button after the stop');

  step('changing the profile of a started chat asks first');
  await page.getByTestId('settings-open').click();
  await drawer.getByTestId('profile-select').selectOption('analyst');
  await expectVisible(page.getByTestId('confirm-profile'), 'the question before a new chat');
  await page.getByTestId('confirm-yes').click();
  await expectText(page.getByTestId('chat-profile'), 'analyst', 'the analyst profile');
  if (await drawer.isVisible()) await page.keyboard.press('Escape');
  await expectHidden(drawer, 'the settings drawer');

  step('the file ask: a wrong type is refused, a CSV is summarized');
  await expectVisible(page.getByTestId('starter').filter({ hasText: 'Analyze data' }), 'the analyst starters');
  await page.getByTestId('starter').filter({ hasText: 'Analyze data' }).click();
  const fileAsk = msgs(page).getByTestId('file-drop');
  await expectVisible(fileAsk, 'the file ask');
  assert(/CSV/.test(await fileAsk.getByTestId('file-hint').innerText()), 'the file ask names the accepted types');
  await fileAsk.getByTestId('ask-file').setInputFiles({ name: 'page.html', mimeType: 'text/html', buffer: Buffer.from('<p>hi</p>') });
  await expectVisible(fileAsk.getByTestId('file-error'), 'the refusal of an HTML file');
  assert(/not a file of an accepted type/.test(await fileAsk.getByTestId('file-error').innerText()), 'the refusal says why');
  // A file named .csv that is an image: the server looks at its bytes and
  // refuses it; the page says so in words.
  const png = Buffer.from('89504e470d0a1a0a0000000d4948445200000001000000010806000000', 'hex');
  await fileAsk.getByTestId('ask-file').setInputFiles({ name: 'photo.csv', mimeType: 'text/csv', buffer: png });
  await fileAsk.getByTestId('ask-upload').click();
  await expectText(fileAsk.getByTestId('file-error'), 'That kind of file is not accepted here.', 'the server refusing an image named .csv');
  // The CSV is dropped on the ask, as from a file manager.
  const dropped = await page.evaluateHandle(() => {
    const dt = new DataTransfer();
    dt.items.add(new File(['region,month,amount\nnorth,jan,10\nsouth,jan,12\n'], 'sales.csv', { type: 'text/csv' }));
    return dt;
  });
  await fileAsk.dispatchEvent('dragover', { dataTransfer: dropped });
  await fileAsk.dispatchEvent('drop', { dataTransfer: dropped });
  await expectVisible(fileAsk.getByTestId('file-chip').filter({ hasText: 'sales.csv' }), 'the dropped file, before its upload');
  await shot(page, 'file-ask');
  await fileAsk.getByTestId('ask-upload').click();
  await expectVisible(assistantText(page, 'sales.csv: CSV with 2 rows and 3 columns (region, month, amount)'), 'the summary of the CSV');
  const chip = msgs(page).locator('.msg-user [data-testid="file-chip"]');
  await expectVisible(chip, 'the file chip of the answer');
  const chipText = await chip.innerText();
  assert(/sales\.csv/.test(chipText) && /B/.test(chipText) && /text\/csv/.test(chipText), `file chip says ${JSON.stringify(chipText)}`);

  step('an action ask is answered by its label');
  await send(page, '/choose');
  const yes = msgs(page).getByTestId('ask-action').filter({ hasText: 'Yes' });
  await expectVisible(yes, 'the Yes button');
  assert(await yes.evaluate((b) => { const r = b.getBoundingClientRect(); return r.bottom <= window.innerHeight && r.top >= 0; }), 'the action buttons are in view');
  await yes.click();
  await expectVisible(msgs(page).locator('.msg-user .answer-label').getByText('Yes', { exact: true }), 'the answer labelled Yes');
  await expectVisible(assistantText(page, 'You chose yes'), 'the reply to the choice');

  step('history: grouped by date, search, rename');
  const threads = page.getByTestId('threads');
  await expectVisible(threads.getByTestId('thread-group').locator('h2').getByText('Today', { exact: true }), 'the Today group');
  await expectVisible(threads.getByTestId('thread').filter({ hasText: 'I need help with coding' }), 'the coding chat in the history');
  await page.getByTestId('thread-search').fill('help with cod');
  await waitFor(page, () => {
    const names = [...document.querySelectorAll('[data-testid="thread"]')].map((a) => a.textContent);
    return names.length === 1 && names[0].includes('I need help with coding');
  }, undefined, 'the search to list only the coding chat');
  const item = threads.locator('li').filter({ has: page.getByTestId('thread').filter({ hasText: 'I need help with coding' }) });
  await item.getByTestId('thread-rename').click();
  await threads.getByTestId('thread-name-input').fill('Go greeting');
  await threads.getByTestId('thread-name-input').press('Enter');
  await expectVisible(threads.getByTestId('thread').filter({ hasText: 'Go greeting' }), 'the renamed chat');
  await page.getByTestId('thread-search').fill('');
  await expectVisible(threads.getByTestId('thread').filter({ hasText: 'Help me analyze my dataset' }), 'the analyst chat once the search is cleared');
  await checkA11y(page, 'the history');
  await shot(page, 'history');

  step('resume the renamed chat: its earlier messages are there');
  await threads.getByTestId('thread').filter({ hasText: 'Go greeting' }).click();
  await expectVisible(userMsg(page, 'I need help with coding'), 'the first message of the resumed chat');
  await expectVisible(msgs(page).locator('.msg-assistant .code-block code.hljs'), 'the code block of the resumed chat');
  await expectVisible(msgs(page).locator('.msg-user').filter({ hasText: 'please write word0' }), 'the message whose reply was stopped, in the resumed chat');
  await expectVisible(msgs(page).locator('.msg-assistant [data-testid="mark"][data-mark="stopped"]'), 'the stopped reply, still marked, in the resumed chat');
  assert(new URL(page.url()).pathname === chatURL, `URL of the resumed chat ${page.url()}, want ${chatURL}`);

  step('delete the analyst chat: it vanishes');
  const analyst = threads.locator('li').filter({ has: page.getByTestId('thread').filter({ hasText: 'Help me analyze my dataset' }) });
  await analyst.getByTestId('thread-delete').click();
  await threads.getByTestId('thread-delete-confirm').click();
  await expectHidden(threads.getByTestId('thread').filter({ hasText: 'Help me analyze my dataset' }), 'the deleted chat in the history');

  step('a chat deleted elsewhere: a clear message, and it leaves the list');
  await page.getByTestId('new-chat').click();
  await send(page, 'soon deleted elsewhere');
  await expectVisible(assistantText(page, '[assistant] Processing: soon deleted elsewhere'), 'the reply in the chat to delete');
  const goneId = new URL(page.url()).pathname.split('/').pop();
  await threads.getByTestId('thread').filter({ hasText: 'Go greeting' }).click();
  await expectVisible(userMsg(page, 'I need help with coding'), 'the coding chat again');
  const del = await context.request.delete(`/threads/${goneId}`);
  assert(del.status() === 204, `DELETE /threads/${goneId}: ${del.status()}`);
  await threads.locator(`[data-testid="thread"][data-id="${goneId}"]`).click();
  await expectText(page.getByTestId('error'), 'no longer exists', 'the message about the deleted chat');
  await expectHidden(threads.locator(`[data-testid="thread"][data-id="${goneId}"]`), 'the deleted chat in the history');

  step('the dark theme is dark');
  const bg = async () => page.evaluate(() => {
    const [r, g, b] = getComputedStyle(document.body).backgroundColor.match(/\d+/g).map(Number);
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
  });
  for (let i = 0; i < 3 && (await page.evaluate(() => document.documentElement.dataset.theme)) !== 'dark'; i++) {
    await page.getByTestId('theme-toggle').click();
  }
  assert(await bg() < 0.2, `the dark theme's background has luminance ${await bg()}`);
  await threads.getByTestId('thread').filter({ hasText: 'Go greeting' }).click();
  await expectVisible(msgs(page).locator('.msg-assistant .code-block code.hljs'), 'the code block in the dark theme');
  await checkA11y(page, 'the chat in the dark theme');
  await shot(page, 'chat-dark');
  await page.getByTestId('theme-toggle').click(); // dark -> system

  step('a phone: the chat and its input fill the first screen, the history is a drawer');
  const phone = await context.newPage();
  await phone.setViewportSize({ width: 390, height: 844 });
  await phone.goto(chatURL);
  await waitSignedIn(phone, '');
  await expectVisible(userMsg(phone, 'I need help with coding'), 'the chat on the phone');
  const box = await ui.input(phone).boundingBox();
  assert(box && box.y >= 0 && box.y + box.height <= 844, `the input at y=${box && box.y}..${box && box.y + box.height}, want within 0..844`);
  assert(await phone.evaluate(() => document.scrollingElement.scrollHeight <= window.innerHeight), 'the page scrolls on a phone');
  await expectHidden(phone.getByTestId('sidebar'), 'the history drawer, closed at first');
  await shot(phone, 'phone-chat');
  await checkA11y(phone, 'the chat on a phone');
  await phone.getByTestId('sidebar-toggle').click();
  await expectVisible(phone.getByTestId('sidebar'), 'the history drawer');
  await shot(phone, 'phone-history');
  await phone.keyboard.press('Escape');
  await expectHidden(phone.getByTestId('sidebar'), 'the history drawer after Escape');

  step('the chat taken over by the phone: the first tab says so and sends nothing');
  const closed = page.getByTestId('closed');
  await expectVisible(closed, 'the notice of the chat opened elsewhere');
  assert(await closed.getAttribute('data-code') === '4409', `closed with ${await closed.getAttribute('data-code')}, want 4409`);
  assert(/another tab/.test(await closed.innerText()), 'the notice says the chat was opened elsewhere');
  assert(await ui.input(page).isDisabled(), 'the message box stays enabled in a chat taken over');
  await closed.getByTestId('reopen').click();
  await expectHidden(closed, 'the notice once the chat is taken back');
  await expectVisible(userMsg(page, 'I need help with coding'), 'the chat taken back');
  await phone.close();

  step('the history loads more chats as it is scrolled');
  await page.evaluate(async (n) => {
    // More chats than a page of the list (20), opened as any client does.
    for (let i = 0; i < n; i++) {
      await new Promise((resolve, reject) => {
        const ws = new WebSocket(`ws://${location.host}/ws`, 'chat.v1');
        ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', protocol: 1 }));
        ws.onmessage = (ev) => {
          const f = JSON.parse(ev.data);
          if (f.type === 'welcome') ws.send(JSON.stringify({ type: 'message', content: `filler chat ${i}` }));
          if (f.type === 'message' && f.step_type === 'user_message') { ws.close(1000); resolve(); }
          if (f.type === 'error') reject(new Error(f.message));
        };
      });
    }
  }, 22);
  await page.reload();
  await waitSignedIn(page, displayName);
  const items = threads.getByTestId('thread');
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="thread"]').length === 20, undefined, { timeout: TIMEOUT });
  await threads.evaluate((el) => { el.scrollTop = el.scrollHeight; });
  await page.waitForFunction(() => document.querySelectorAll('[data-testid="thread"]').length > 20, undefined, { timeout: TIMEOUT });
  assert(await items.filter({ hasText: 'Go greeting' }).count() === 1, 'the older chat, once, after scrolling');

  step('signed out elsewhere (4401): back to the login screen, with the reason');
  const out = await context.request.post('/auth/logout');
  assert(out.status() === 204, `POST /auth/logout: ${out.status()}`);
  await expectVisible(ui.loginForm(page), 'the login form after the sign-out');
  await expectText(page.getByTestId('login-error'), 'Your sign-in has ended', 'the reason on the login screen');
}, {
  allowConsole: [
    ALLOW_SIGNED_OUT,
    /Failed to load resource: the server responded with a status of 401 .*\/auth\/login\)$/, // the wrong password
    /Failed to load resource: the server responded with a status of 415 .*\/files\?/, // the image named .csv
  ],
});

// chat.mjs: sign in, start a chat, send a message and wait for the reply;
// then load the page again and check that the session cookie alone keeps
// the user signed in (as after a provider's sign-in, which leaves only the
// cookie).
//
// Environment: CHATD_URL; E2E_SIGN_IN, a key of signIn in lib.mjs
// (password, the default, with E2E_IDENTIFIER and E2E_PASSWORD; provider
// with E2E_PROVIDER); E2E_DISPLAY_NAME, the name the top bar must show
// (optional); E2E_GREETING, a message the new chat must show (optional);
// E2E_MESSAGE and E2E_REPLY, what to send and the reply to wait for.

import { ALLOW_SIGNED_OUT, env, expectText, run, say, signIn, ui, waitSignedIn } from './lib.mjs';

const how = env('E2E_SIGN_IN', 'password');
const displayName = env('E2E_DISPLAY_NAME', '');

await run('chat', async (t) => {
  const { page, step } = t;
  if (!signIn[how]) throw new Error(`E2E_SIGN_IN=${how}: no such way of signing in (${Object.keys(signIn)})`);
  step('open the page');
  await page.goto('/');
  await signIn[how](t);
  step('wait for the chat view');
  await waitSignedIn(page, displayName);

  step('start a new chat');
  await page.getByTestId('new-chat').click();
  const greeting = env('E2E_GREETING', '');
  if (greeting) await expectText(ui.messages(page).locator('.msg .content'), greeting, 'the greeting');
  await say(page, step, env('E2E_MESSAGE'), env('E2E_REPLY'));

  step('load the page again: the session cookie alone signs in');
  await page.goto('/');
  await waitSignedIn(page, displayName);
}, { allowConsole: [ALLOW_SIGNED_OUT] });

// env.mjs: an application that needs a key of the user (Server.SetEnvKeys,
// a required OPENAI_API_KEY) (cmd/chatd/browser_test.go,
// TestBrowserEnvKeys):
//   - without it the chat cannot start, and the page says which key is
//     missing, in words, with the settings drawer open at its form;
//   - the key entered there is kept in the browser, sent on hello, and
//     the chat starts: the application sees it; after a reload it is still
//     there, and a new chat gets it too.
//
// Environment: CHATD_URL, E2E_IDENTIFIER, E2E_PASSWORD, E2E_DISPLAY_NAME.

import { ALLOW_SIGNED_OUT, checkA11y, env, expectHidden, expectText, expectVisible, run, shot, signIn, ui, waitSignedIn } from './lib.mjs';

await run('env', async (t) => {
  const { page, step } = t;
  step('sign in: the chat needs a key');
  await page.goto('/');
  await signIn.password(t);
  await waitSignedIn(page, env('E2E_DISPLAY_NAME'));
  await expectText(page.getByTestId('closed'), 'This app needs your “OpenAI key” to start a chat', 'the message about the missing key');
  const form = page.getByTestId('env-form');
  await expectVisible(form, 'the form of the keys, in the settings drawer');
  await checkA11y(page, 'the form of the keys');
  await shot(page, 'env-form');

  step('enter the key: the chat starts with it');
  await form.locator('[data-testid="env-input"][data-key="OPENAI_API_KEY"]').fill('sk-test-1234');
  await form.getByTestId('env-save').click();
  await page.keyboard.press('Escape');
  await expectHidden(page.getByTestId('settings-drawer'), 'the settings drawer after Escape');
  await expectText(ui.messages(page).locator('.msg-assistant .content'), 'Your key ends in 1234.', 'the greeting that saw the key');
  await expectHidden(page.getByTestId('closed'), 'the message about the missing key, once given');

  step('reload: the key is still in the browser');
  await page.goto('/');
  await waitSignedIn(page, env('E2E_DISPLAY_NAME'));
  await expectText(ui.messages(page).locator('.msg-assistant .content'), 'Your key ends in 1234.', 'the greeting after a reload');
}, { allowConsole: [ALLOW_SIGNED_OUT] });

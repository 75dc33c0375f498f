// login-screen.mjs: the login screen's identity-provider buttons, with the
// server's GET /auth/config and the provider round trip answered by the
// browser itself (page.route), until the server has providers to offer:
//   - one link per provider, "Sign in with <display_name>", the name as
//     text (never HTML), to /auth/oauth/<name>/login?next=<path and query>;
//   - the password form too when methods has "password", else only links;
//   - after the round trip, which here logs in with E2E_IDENTIFIER and
//     E2E_PASSWORD to get the session cookie (as the server's callback
//     sets it) and redirects to next, the page shows the chat of the
//     signed-in user (E2E_DISPLAY_NAME).

import { ALLOW_SIGNED_OUT, env, expectHidden, expectVisible, run, ui, waitSignedIn } from './lib.mjs';

const hostile = '<img src=x onerror="window.__injected=1">Acme & Co';
const providers = [
  { name: 'acme', display_name: hostile },
  { name: 'corp', display_name: 'Corp SSO' },
];

function fulfillConfig(methods) {
  return (route) => route.fulfill({
    status: 200, contentType: 'application/json',
    body: JSON.stringify({ methods, requires_login: true, providers }),
  });
}

await run('login-screen', async ({ context, page, step }) => {
  const path = '/?from=e2e&x=a%20b';
  await page.route('**/auth/config', fulfillConfig(['password']));

  step('open the page with a password method and two providers');
  await page.goto(path);
  await expectVisible(ui.loginForm(page), 'the password form');
  const links = ui.providers(page).getByTestId('login-provider');
  await expectVisible(links.nth(1), 'the second provider button');
  const texts = await links.allTextContents();
  const want = providers.map((p) => `Sign in with ${p.display_name}`);
  if (JSON.stringify(texts) !== JSON.stringify(want)) throw new Error(`provider buttons ${JSON.stringify(texts)}, want ${JSON.stringify(want)}`);
  if (await ui.providers(page).locator('img').count() !== 0 || await page.evaluate(() => window.__injected)) {
    throw new Error('a display name was rendered as HTML');
  }
  const href = await links.first().getAttribute('href');
  const wantHref = `/auth/oauth/acme/login?${new URLSearchParams({ next: path })}`;
  if (href !== wantHref) throw new Error(`first button's href ${href}, want ${wantHref}`);
  await expectVisible(page.locator('#login-or'), 'the "or" between the buttons and the form');

  step('open the page with providers only');
  await page.unroute('**/auth/config');
  await page.route('**/auth/config', fulfillConfig(['oauth']));
  await page.goto(path);
  await expectVisible(ui.providerButton(page, 'Corp SSO'), 'the "Sign in with Corp SSO" button');
  await expectHidden(ui.loginForm(page), 'the password form of a server without passwords');

  step('click "Sign in with Corp SSO": a full-page navigation to the server');
  let asked = '';
  let failed;
  await page.route((u) => u.pathname === '/auth/oauth/corp/login', async (route) => {
    asked = route.request().url();
    try {
      // Stand-in for the provider and the server's callback: the session
      // cookie is set in the browser's jar, then a redirect to next.
      const r = await context.request.post('/auth/login', {
        data: { identifier: env('E2E_IDENTIFIER'), password: env('E2E_PASSWORD') },
      });
      if (!r.ok()) throw new Error(`POST /auth/login: ${r.status()} ${await r.text()}`);
      await route.fulfill({ status: 302, headers: { Location: new URL(asked).searchParams.get('next') } });
    } catch (e) {
      failed = e;
      await route.fulfill({ status: 500, contentType: 'text/plain', body: `stand-in provider: ${e.message}` });
    }
  });
  await ui.providerButton(page, 'Corp SSO').click();

  // Only the page loaded after the round trip can show the chat view: the
  // one the click left shows the login screen.
  step('back with only the cookie: the chat view, signed in');
  try {
    await waitSignedIn(page, env('E2E_DISPLAY_NAME', ''));
  } catch (e) {
    throw failed || e;
  }
  const at = new URL(page.url());
  if (at.pathname + at.search !== path) throw new Error(`back at ${page.url()}, want ${path}`);
  const went = new URL(asked);
  if (went.pathname !== '/auth/oauth/corp/login' || went.searchParams.get('next') !== path) {
    throw new Error(`the button went to ${asked}, want /auth/oauth/corp/login with next=${path}`);
  }
}, { allowConsole: [ALLOW_SIGNED_OUT] });

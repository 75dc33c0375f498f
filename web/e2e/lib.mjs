// Shared steps of the browser tests: launch Debian's chromium through
// playwright-core, report a failure with what the page showed, and the
// sign-in and chat steps the scripts are made of. The scripts are run by
// cmd/chatd/browser_test.go (runBrowserScript), which passes the server's
// address and the rest in the environment.

import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));

// Safety net of every wait: a wait ends as soon as what it waits for is
// there; this only bounds a broken run.
export const TIMEOUT = Number(process.env.E2E_TIMEOUT_MS || 20000);

export function env(name, fallback) {
  const v = process.env[name];
  if (v !== undefined && v !== '') return v;
  if (fallback !== undefined) return fallback;
  throw new Error(`environment variable ${name} is required`);
}

// run launches chromium, opens a page and runs body({ browser, context,
// page, base, step }); it exits 0 when body returns. On a failure it prints
// the error, the steps done, the page's URL, visible text, console and
// failed requests, saves a screenshot into a fresh temp dir and exits 1.
//
// opts.allowConsole lists regular expressions of console errors the script
// causes on purpose (a 401 of a wrong password, a refused socket while the
// server is down); any other console error or uncaught page error fails the
// run once body has returned.
export async function run(name, body, opts = {}) {
  const base = env('CHATD_URL').replace(/\/+$/, '');
  const log = [];
  const consoleErrors = [];
  const allowed = opts.allowConsole || [];
  const steps = [];
  const t0 = Date.now();
  const at = () => `+${((Date.now() - t0) / 1000).toFixed(2)}s`;
  const step = (what) => { steps.push(`${at()} ${what}`); console.log(`[${name} ${at()}] ${what}`); };
  let browser;
  let page;
  try {
    browser = await chromium.launch({
      executablePath: env('CHROMIUM', '/usr/bin/chromium'),
      headless: true,
      timeout: TIMEOUT,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const context = await browser.newContext({ baseURL: base });
    context.setDefaultTimeout(TIMEOUT);
    context.setDefaultNavigationTimeout(TIMEOUT);
    page = await context.newPage();
    const watch = (p) => {
      p.on('console', (m) => {
        const where = m.location() && m.location().url ? ` (${m.location().url})` : '';
        const line = `console.${m.type()}: ${m.text()}${where}`;
        log.push(line);
        if (m.type() === 'error' && !allowed.some((re) => re.test(line))) consoleErrors.push(line);
      });
      p.on('pageerror', (e) => { log.push(`page error: ${e.message}`); consoleErrors.push(`page error: ${e.message}`); });
      p.on('requestfailed', (r) => log.push(`request failed: ${r.method()} ${r.url()} ${r.failure()?.errorText || ''}`));
      p.on('response', (r) => { if (r.status() >= 400) log.push(`HTTP ${r.status()}: ${r.request().method()} ${r.url()}`); });
    };
    context.on('page', watch);
    watch(page);
    step('browser launched');
    await body({ browser, context, page, base, step });
    if (consoleErrors.length) throw new Error(`the console showed errors:\n  ${consoleErrors.join('\n  ')}`);
    console.log(`[${name} ${at()}] ok`);
    await browser.close();
    process.exit(0);
  } catch (err) {
    console.log(`[${name} ${at()}] FAILED: ${err && err.stack ? err.stack : err}`);
    console.log(`steps done:\n  ${steps.join('\n  ') || '(none)'}`);
    if (page && !page.isClosed()) {
      console.log(`page URL: ${page.url()}`);
      try {
        const text = await page.locator('body').innerText({ timeout: 2000 });
        console.log(`visible text:\n${text.replace(/^/gm, '  | ')}`);
      } catch (e) { console.log(`visible text: (unavailable: ${e.message})`); }
      try {
        const dir = mkdtempSync(join(tmpdir(), `chatd-e2e-${name}-`));
        const file = join(dir, 'failure.png');
        await page.screenshot({ path: file, fullPage: true, timeout: 5000 });
        console.log(`screenshot: ${file}`);
      } catch (e) { console.log(`screenshot: (failed: ${e.message})`); }
    }
    console.log(`browser log:\n  ${log.join('\n  ') || '(empty)'}`);
    if (browser) await browser.close().catch(() => {});
    process.exit(1);
  }
}

// expectVisible waits until locator is visible (the timeout is a safety
// net) and fails with what.
export async function expectVisible(locator, what) {
  try {
    await locator.waitFor({ state: 'visible' });
  } catch (e) {
    throw new Error(`${what}: not visible within ${TIMEOUT} ms`, { cause: e });
  }
}

export async function expectHidden(locator, what) {
  try {
    await locator.waitFor({ state: 'hidden' });
  } catch (e) {
    throw new Error(`${what}: still visible after ${TIMEOUT} ms`, { cause: e });
  }
}

// The page's parts, by the data-testid attributes of web/static/index.html
// and app.js.
export const ui = {
  loginForm: (page) => page.getByTestId('login-form'),
  providers: (page) => page.getByTestId('login-providers'),
  providerButton: (page, displayName) => page.getByRole('link', { name: `Sign in with ${displayName}`, exact: true }),
  messages: (page) => page.getByTestId('messages'),
  userName: (page) => page.getByTestId('user-name'),
  input: (page) => page.getByTestId('message-input'),
};

// signIn holds one way of signing in per key, chosen by E2E_SIGN_IN; each
// starts on the login screen and returns once it has done its part (the
// caller then waits for the chat view with waitSignedIn).
export const signIn = {
  // password fills the login form with E2E_IDENTIFIER and E2E_PASSWORD.
  async password({ page, step }) {
    await expectVisible(ui.loginForm(page), 'the password form');
    step('fill in the login form');
    await page.getByTestId('login-identifier').fill(env('E2E_IDENTIFIER'));
    await page.getByTestId('login-password').fill(env('E2E_PASSWORD'));
    await page.getByTestId('login-submit').click();
  },
  // provider clicks "Sign in with <E2E_PROVIDER>" (a display name): a
  // full-page navigation to the server's /auth/oauth/<name>/login, which
  // sends the browser to the identity provider. opts.atProvider, when
  // given, does what the provider's pages want (fill a form, approve);
  // then the provider redirects to the server's callback, which sets the
  // session cookie and redirects back to the page. The caller's
  // waitSignedIn waits for that page: the login screen the click left
  // never shows the chat view.
  async provider({ page, base, step }, opts = {}) {
    const name = env('E2E_PROVIDER');
    const button = ui.providerButton(page, name);
    await expectVisible(button, `the "Sign in with ${name}" button`);
    step(`click "Sign in with ${name}"`);
    await button.click();
    if (opts.atProvider) await opts.atProvider({ page, base, step });
  },
};

// waitSignedIn waits for the chat view of a signed-in user: the composer,
// no login form, and displayName (when given) in the top bar.
export async function waitSignedIn(page, displayName) {
  await expectVisible(ui.input(page), 'the message box of the chat view');
  await expectHidden(page.locator('#login-view'), 'the login screen');
  if (displayName) await expectText(ui.userName(page), displayName, 'the user name in the top bar');
}

// expectText waits until locator contains text.
export async function expectText(locator, text, what) {
  try {
    await locator.filter({ hasText: text }).first().waitFor({ state: 'visible' });
  } catch (e) {
    throw new Error(`${what}: ${JSON.stringify(text)} did not appear within ${TIMEOUT} ms`, { cause: e });
  }
}

// say sends text through the composer and waits for its echo and for a
// reply message whose content is exactly reply.
export async function say(page, step, text, reply) {
  step(`send ${JSON.stringify(text)}`);
  await ui.input(page).fill(text);
  await page.getByTestId('send').click();
  const msgs = ui.messages(page);
  await expectVisible(msgs.locator('.msg-user .content').getByText(text, { exact: true }).first(), `the echo of ${JSON.stringify(text)}`);
  step(`wait for the reply ${JSON.stringify(reply)}`);
  await expectVisible(msgs.locator('.msg-assistant .content').getByText(reply, { exact: true }).first(), `the reply ${JSON.stringify(reply)}`);
}

// The 401 of GET /auth/me on a page opened before signing in: how the page
// learns that nobody is signed in.
export const ALLOW_SIGNED_OUT = /Failed to load resource: the server responded with a status of 401 .*\/auth\/me\)$/;

// shot saves a screenshot of the page as web/e2e/screenshots/<name>.png
// (E2E_SCREENSHOTS overrides the folder; not committed), to look at.
export async function shot(page, name) {
  const dir = process.env.E2E_SCREENSHOTS || join(here, 'screenshots');
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`) });
}

// checkA11y runs axe-core in the page and fails on any serious or critical
// violation. axe is evaluated through the DevTools protocol, which the
// page's Content-Security-Policy does not restrict (a script tag would be
// refused, as it should be).
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
export async function checkA11y(page, what) {
  if (!(await page.evaluate(() => typeof window.axe !== 'undefined'))) await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    const r = await window.axe.run(document, { resultTypes: ['violations'] });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.html) }));
  });
  const bad = result.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  if (bad.length) {
    throw new Error(`axe-core: ${bad.length} serious or critical violations on ${what}:\n${bad.map((v) => `  ${v.impact} ${v.id}: ${v.help}\n    ${v.nodes.join('\n    ')}`).join('\n')}`);
  }
}

// control asks the Go test that runs this script to do something (stop
// or start the server, ...): it prints "@@ <what>" and waits for the test
// to answer with a line on stdin (runBrowserScriptControl).
let stdinLines;
export async function control(what) {
  if (!stdinLines) stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  console.log(`@@ ${what}`);
  const { value, done } = await stdinLines.next();
  if (done || value.trim() !== 'ok') throw new Error(`control ${what}: the test answered ${done ? 'nothing' : JSON.stringify(value)}`);
}

// messageText is the visible text of the content of every message that
// matches selector, in order.
export async function contents(page, selector) {
  return page.getByTestId('messages').locator(`${selector} .content`).allInnerTexts();
}

// Entry point of the browser UI (bundled into web/static/app.js).
import { render } from 'preact';
import { App } from './app';
import { store } from './store';
import { applyTheme } from './theme';

applyTheme();
const root = document.getElementById('root')!;
root.textContent = ''; // the page's "Loading…"
render(<App />, root);
store.init();
